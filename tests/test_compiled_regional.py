"""Regional compilation: clean requests run the compiled raw graphs, flagged requests a cached flagged variant.

With ``compile_repeated_blocks()`` or ``block.compile()`` the user's blocks keep their compiled calls and no
patch point; a request with a patch active runs each block's flagged variant (the block's shallow copy
with the patch points, compiled with the user's options, traced once). Inductor tests compare against an
identical pipeline compiled the same way without safetext.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safetext.generator import SafeTextGenerator
from safetext.patching import discover_text_layers, find_denoiser
from safetext.patching.compiled import installed_points, remove_resident_points
from safetext.patching.hooks import active_owner
from safetext.policy.verdict import Action
from tests.test_compiled import graphs, run
from tests.test_generator import CLEAN, FLAGGED, LockedTokenizer, WordSwapPolicy, hook_ids, interleave_clean_and_flagged
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS, build_tiny_glyph

BUILDERS = {**TINY_BUILDERS, "glyph": build_tiny_glyph}
GLYPH_KWARGS = {"height": 32, "width": 32, "output_type": "pt"}


def kwargs_for(name: str) -> dict:
    return dict(GLYPH_KWARGS if name == "glyph" else TINY_CALL_KWARGS[name], num_inference_steps=3)


def compile_blocks(pipe, backend: str = "inductor") -> str:
    """``compile_repeated_blocks()`` where the model declares its blocks; each block's ``compile()`` otherwise
    (SD3 declares no ``_repeated_blocks``). Returns which of the two ran."""
    denoiser = find_denoiser(pipe)
    if getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(backend=backend)
        return "compile_repeated_blocks"
    for block in denoiser.transformer_blocks:
        block.compile(backend=backend)
    return "block.compile()"


def text_projections(pipe) -> list[nn.Module]:
    denoiser = find_denoiser(pipe)
    return [denoiser.get_submodule(name) for layer in discover_text_layers(pipe) for name in (layer.key, layer.value)]


def compiled_calls(pipe) -> dict[str, object]:
    return {
        name: vars(module)["_compiled_call_impl"]
        for name, module in find_denoiser(pipe).named_modules()
        if vars(module).get("_compiled_call_impl") is not None
    }


def check_clean_is_compiled_raw(name: str) -> None:
    """Clean guarded == the twin compiled raw (torch.equal); flagged == eager guarded within 1e-4 and changed;
    20 alternating requests compile no graph; the user's projections stay plain modules."""
    pipe, twin = BUILDERS[name](), BUILDERS[name]()
    kwargs = kwargs_for(name)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager_flagged, raw_flagged = run(gen, FLAGGED, kwargs).images, run(pipe, FLAGGED, kwargs).images
    torch._dynamo.reset()
    compile_blocks(pipe)
    compile_blocks(twin)
    compiled_raw = run(twin, CLEAN, kwargs).images
    clean = run(gen, CLEAN, kwargs)
    assert clean.verdict.action is Action.ALLOW
    assert torch.equal(clean.images, compiled_raw), (clean.images - compiled_raw).abs().max()
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE
    assert flagged.verdict.details["compile_mode"] == "compile_repeated_blocks"
    assert (flagged.images - raw_flagged).abs().max() > 1e-3  # the patch changed the image
    torch.testing.assert_close(flagged.images, eager_flagged, atol=1e-4, rtol=0)
    traced = graphs()
    for _ in range(10):
        assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, flagged.images)
    assert graphs() == traced  # no recompilation across 20 alternating requests
    # the user's modules are what the raw pipeline runs: no patch point on them
    assert all(type(module) is nn.Linear for module in text_projections(pipe))
    assert torch.equal(run(pipe, CLEAN, kwargs).images, compiled_raw)
    remove_resident_points(find_denoiser(pipe))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sdxl", "sd15", "glyph", "sd3", "flux"])
def test_regional_inductor_clean_is_bit_identical_to_compiled_raw(name):
    check_clean_is_compiled_raw(name)


def test_clean_requests_reuse_the_compiled_raw_graphs():
    """Clean guarded requests run the very graphs dynamo compiled for an identical pipeline without safetext
    (no graph of their own), flagged ones the flagged variants, traced once for all the blocks of a kind
    (the layer index is a tensor input, not a constant the compiler specializes on)."""
    pipe, twin = BUILDERS["sdxl"](), BUILDERS["sdxl"]()
    kwargs = kwargs_for("sdxl")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager_flagged = run(gen, FLAGGED, kwargs).images
    torch._dynamo.reset()
    compile_blocks(pipe, backend="eager")
    compile_blocks(twin, backend="eager")
    compiled_raw = run(twin, CLEAN, kwargs).images
    raw_graphs = graphs()
    assert raw_graphs > 0
    assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
    assert graphs() == raw_graphs  # the raw pipeline's graphs serve the clean request
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE and torch.equal(flagged.images, eager_flagged)
    assert graphs() <= 2 * raw_graphs  # one flagged variant graph per compiled graph, not one per layer
    traced = graphs()
    for _ in range(10):
        assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, eager_flagged)
    assert graphs() == traced
    assert all(type(module) is nn.Linear for module in text_projections(pipe))
    remove_resident_points(find_denoiser(pipe))


def test_concurrent_clean_and_flagged_requests_each_run_their_own_graph():
    """The clean/flagged choice comes from the calling context: two threads, one clean and one flagged,
    interleave on one regionally compiled pipeline and each gets its own image every time."""
    pipe = BUILDERS["sd15"]()  # a scheduler without per-call state (SDXL's Euler counts its steps)
    object.__setattr__(pipe, "tokenizer", LockedTokenizer(pipe.tokenizer))
    kwargs = kwargs_for("sd15")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    compile_blocks(pipe, backend="eager")
    clean_reference, flagged_reference = run(gen, CLEAN, kwargs).images, run(gen, FLAGGED, kwargs).images
    assert not torch.equal(clean_reference, flagged_reference)
    before, traced = hook_ids(pipe), graphs()
    results = interleave_clean_and_flagged(gen, kwargs, 4, run)
    assert not results["errors"], results["errors"][0]
    assert len(results["clean"]) == len(results["flagged"]) == 4
    assert all(torch.equal(images, clean_reference) for images in results["clean"])
    assert all(torch.equal(images, flagged_reference) for images in results["flagged"])
    assert hook_ids(pipe) == before and graphs() == traced
    remove_resident_points(find_denoiser(pipe))


def test_a_failed_flagged_request_leaves_the_compiled_blocks_as_they_were():
    """A flagged request that raises mid-generation leaves no hook and no active patch; the next clean call
    runs the user's compiled blocks (bit-identical), and removing the points restores their compiled calls."""
    pipe = BUILDERS["sdxl"]()
    kwargs = kwargs_for("sdxl")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    compile_blocks(pipe, backend="eager")
    user_calls = compiled_calls(pipe)
    raw_clean = run(pipe, CLEAN, kwargs).images
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    routed = compiled_calls(pipe)
    assert all(routed[name] is not call for name, call in user_calls.items())  # routers in front of them
    before = hook_ids(pipe)

    def fail(pipe, step, timestep, callback_kwargs):
        if step == 1:
            raise RuntimeError("interrupted at step 1")
        return callback_kwargs

    with pytest.raises(RuntimeError, match="interrupted at step 1"):
        run(gen, FLAGGED, {**kwargs, "callback_on_step_end": fail})
    assert active_owner() is None and hook_ids(pipe) == before
    assert compiled_calls(pipe) == routed
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    assert run(gen, FLAGGED, kwargs).verdict.action is Action.NEUTRALIZE
    remove_resident_points(find_denoiser(pipe))
    assert installed_points(find_denoiser(pipe)) is None
    assert all(compiled_calls(pipe)[name] is call for name, call in user_calls.items())
    assert all(type(module) is nn.Linear for module in text_projections(pipe))


@pytest.mark.slow
def test_a_module_replaced_after_compiling_gets_a_new_flagged_variant():
    """A text projection replaced after the first request (a LoRA wrapper, say) is picked up: the flagged
    variant is rebuilt around the new module and the patch acts on it."""
    pipe = BUILDERS["sdxl"]()
    kwargs = kwargs_for("sdxl")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    compile_blocks(pipe, backend="eager")
    first = run(gen, FLAGGED, kwargs)
    assert first.verdict.action is Action.NEUTRALIZE
    layer = discover_text_layers(pipe)[0]
    attention = find_denoiser(pipe).get_submodule(layer.name)
    old = attention.to_k
    new = nn.Linear(old.in_features, old.out_features, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.copy_(old.weight * 1.5)
    attention.to_k = new
    raw_clean = run(pipe, CLEAN, kwargs).images
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    again = run(gen, FLAGGED, kwargs)
    assert again.verdict.action is Action.NEUTRALIZE
    assert again.verdict.details["acted_steps"][layer.name] == {"key": 3, "value": 3}
    assert not torch.equal(again.images, first.images)  # the new weights are in the flagged variant
    assert type(attention.to_k) is nn.Linear
    remove_resident_points(find_denoiser(pipe))
