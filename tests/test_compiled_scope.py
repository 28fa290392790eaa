"""Compiled callables the pipeline reaches through the denoiser's own attributes.

Besides ``torch.compile(pipe.unet)``, ``pipe.unet.compile()`` and regional compilation, users compile

* the denoiser's ``forward``: ``unet.forward = torch.compile(unet.forward)``;
* a submodule out of place and assign it back: ``unet.down_blocks[1] = torch.compile(unet.down_blocks[1])``;
* the attention modules, each wrapped in an ``OptimizedModule`` where its parent holds it.

Each gets a router in front of its compiled call, as regional compilation does: clean requests run the
user's compiled callable (the graph the compiled raw pipeline runs: no graph of their own), flagged
requests a flagged variant compiled with the user's options. Default-run tests use the dynamo frontend
with the ``eager`` backend (which decides whether a patch point is traced); the full eager comparison runs
the assigned-back block by default and the other two modes with the slow tests, as does the inductor
comparison against an identical pipeline compiled without safetext.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from safetext.errors import PatchError, PatchNotAppliedError
from safetext.generator import SafeTextGenerator
from safetext.patching import discover_text_layers, find_denoiser
from safetext.patching.compiled import installed_points, remove_resident_points
from safetext.patching.layer_map import denoiser_structure
from safetext.patching.hooks import active_owner
from safetext.policy.verdict import Action
from tests.test_compiled import graphs, run
from tests.test_generator import CLEAN, FLAGGED, WordSwapPolicy, hook_ids
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS

MODES = ("compiled forward", "compiled block assigned back", "compiled attention modules")
EXPECTED_MODE = {
    "compiled forward": "compiled forward",
    "compiled block assigned back": "compile_repeated_blocks",
    "compiled attention modules": "compile_repeated_blocks",
}


def kwargs_for(name: str) -> dict:
    return dict(TINY_CALL_KWARGS[name], num_inference_steps=3)


def compile_as(pipe, mode: str, backend: str = "eager") -> list[tuple[nn.Module, str, object]]:
    """Compile ``pipe``'s UNet the way ``mode`` names; returns (owner, attribute, the user's compiled object)."""
    unet = pipe.unet
    if mode == "compiled forward":
        unet.forward = torch.compile(unet.forward, backend=backend)
        return [(unet, "forward", vars(unet)["forward"])]
    if mode == "compiled block assigned back":  # the block of the last text layer (up_blocks[1] on SD1.5)
        blocks, index = discover_text_layers(pipe)[-1].name.split(".")[:2]
        blocks = getattr(unet, blocks)
        blocks[int(index)] = torch.compile(blocks[int(index)], backend=backend)
        return [(blocks, index, blocks[int(index)])]
    compiled = []
    for layer in discover_text_layers(pipe):
        parent_name, _, attribute = layer.name.rpartition(".")
        parent = unet.get_submodule(parent_name)
        setattr(parent, attribute, torch.compile(getattr(parent, attribute), backend=backend))
        compiled.append((parent, attribute, getattr(parent, attribute)))
    return compiled


def user_objects(compiled) -> list[object]:
    """What the user's attributes hold now (the ``forward`` function, or the ``OptimizedModule`` child)."""
    return [vars(owner)[name] if name == "forward" else owner._modules[name] for owner, name, _ in compiled]


def compiled_projections(pipe, compiled) -> list[nn.Module]:
    """The text K/V projections the user's compiled callables run."""
    denoiser = find_denoiser(pipe)
    names = [name for layer in discover_text_layers(pipe) for name in (layer.key, layer.value)]
    projections = [denoiser.get_submodule(name) for name in names]
    roots = [owner if attribute == "forward" else owner._modules[attribute] for owner, attribute, _ in compiled]
    inside = {id(module) for root in roots for module in root.modules()}
    assert inside & {id(module) for module in projections}
    return [module for module in projections if id(module) in inside]


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("compiled forward", marks=pytest.mark.slow),
        "compiled block assigned back",
        pytest.param("compiled attention modules", marks=pytest.mark.slow),
    ],
)
def test_clean_runs_the_users_compiled_callable_and_flagged_patches_like_eager(mode):
    pipe, twin = TINY_BUILDERS["sd15"](), TINY_BUILDERS["sd15"]()
    kwargs = kwargs_for("sd15")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())  # created before compiling, as a server would
    names = [layer.name for layer in discover_text_layers(pipe)]
    eager_flagged, raw_flagged = run(gen, FLAGGED, kwargs).images, run(pipe, FLAGGED, kwargs).images
    torch._dynamo.reset()
    compiled = compile_as(pipe, mode)
    compile_as(twin, mode)
    before = hook_ids(pipe)
    compiled_raw = run(twin, CLEAN, kwargs).images
    raw_graphs = graphs()
    clean = run(gen, CLEAN, kwargs)
    assert clean.verdict.action is Action.ALLOW and torch.equal(clean.images, compiled_raw)
    assert graphs() == raw_graphs  # the twin's graphs serve the clean request: no patch point traced into them
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE
    assert flagged.verdict.details["compile_mode"] == EXPECTED_MODE[mode]
    assert flagged.verdict.details["acted_steps"] == {name: {"key": 3, "value": 3} for name in names}
    assert not torch.equal(flagged.images, raw_flagged) and torch.equal(flagged.images, eager_flagged)
    resident = hook_ids(pipe)  # the denoiser's step hooks, installed once; nothing per request
    traced = graphs()
    for _ in range(4):
        assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, eager_flagged)
    assert graphs() == traced  # alternating requests after warm-up: no recompilation (20 in the slow test)
    # the projections inside the user's compiled callables carry no patch point (eager ones outside may)
    assert all(type(module) is nn.Linear for module in compiled_projections(pipe, compiled))
    assert hook_ids(pipe) == resident and active_owner() is None
    assert torch.equal(run(pipe, CLEAN, kwargs).images, compiled_raw)
    remove_resident_points(find_denoiser(pipe))
    assert installed_points(find_denoiser(pipe)) is None and hook_ids(pipe) == before
    assert user_objects(compiled) == [user for _, _, user in compiled]  # the user's compiled callables, restored
    assert torch.equal(run(pipe, CLEAN, kwargs).images, compiled_raw)


class FunctionalProjections:
    """An attention processor computing K/V with ``F.linear`` on the projections' weights (as a fused kernel
    does): the numbers of the default processor, but no projection module, hence no patch point, ever runs."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        key = F.linear(context, attn.to_k.weight, attn.to_k.bias)
        value = F.linear(context, attn.to_v.weight, attn.to_v.bias)
        query, key, value = (attn.head_to_batch_dim(t) for t in (attn.to_q(hidden_states), key, value))
        out = attn.batch_to_head_dim(torch.bmm(attn.get_attention_scores(query, key, attention_mask), value))
        return attn.to_out[1](attn.to_out[0](out))


@pytest.mark.parametrize("mode", MODES)
def test_a_bypassed_projection_under_each_mode_is_refused(mode):
    """The invariant holds on every routed mode: a mapped layer whose projections never run withholds the image."""
    pipe = TINY_BUILDERS["sd15"]()
    kwargs = kwargs_for("sd15")
    layers = discover_text_layers(pipe)
    bypassed = layers[-1]  # in up_blocks.1: inside the compiled block of the second mode
    find_denoiser(pipe).get_submodule(bypassed.name).set_processor(FunctionalProjections())
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    compile_as(pipe, mode)
    raw_clean = run(pipe, CLEAN, kwargs).images
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    with pytest.raises(PatchNotAppliedError) as info:
        run(gen, FLAGGED, kwargs)
    message = str(info.value)
    assert f"{bypassed.key} at steps [0, 1, 2]" in message and f"{bypassed.value} at steps [0, 1, 2]" in message
    assert layers[0].key not in message  # the layers whose points acted are not blamed
    assert active_owner() is None
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    remove_resident_points(find_denoiser(pipe))


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_inductor_clean_is_bit_identical_to_compiled_raw(mode):
    """Inductor: clean guarded == an identical pipeline compiled the same way without safetext (torch.equal),
    flagged == eager guarded within 1e-4 (images in [0, 1]) and changed, no recompilation."""
    pipe, twin = TINY_BUILDERS["sdxl"](), TINY_BUILDERS["sdxl"]()
    kwargs = kwargs_for("sdxl")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager_flagged, raw_flagged = run(gen, FLAGGED, kwargs).images, run(pipe, FLAGGED, kwargs).images
    torch._dynamo.reset()
    compile_as(pipe, mode, backend="inductor")
    compile_as(twin, mode, backend="inductor")
    compiled_raw = run(twin, CLEAN, kwargs).images
    assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE
    assert (flagged.images - raw_flagged).abs().max() > 1e-3
    torch.testing.assert_close(flagged.images, eager_flagged, atol=1e-4, rtol=0)
    traced = graphs()
    for _ in range(10):
        assert torch.equal(run(gen, CLEAN, kwargs).images, compiled_raw)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, flagged.images)
    assert graphs() == traced
    remove_resident_points(find_denoiser(pipe))


def test_a_projection_compiled_on_its_own_is_refused_before_generating():
    """``attn.to_k = torch.compile(attn.to_k)``: its graph holds the plain projection, which no router can stand in
    front of; the request is refused before the pipeline runs, naming the projection and the alternative."""
    pipe = TINY_BUILDERS["sd15"]()
    kwargs = kwargs_for("sd15")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    layer = discover_text_layers(pipe)[0]
    attention = find_denoiser(pipe).get_submodule(layer.name)
    torch._dynamo.reset()
    attention.to_k = torch.compile(attention.to_k, backend="eager")
    raw_clean = run(pipe, CLEAN, kwargs).images
    calls = []
    pipe.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(PatchError, match=rf"{layer.key} is a torch.compile wrapper .* Compile the attention module"):
        run(gen, FLAGGED, kwargs)
    assert not calls and active_owner() is None  # refused before the denoiser ran
    assert installed_points(find_denoiser(pipe)) is None
    with pytest.raises(PatchError, match="compiled on its own"):
        run(gen, CLEAN, kwargs)  # clean requests too: the points are checked before every request
    assert not calls and torch.equal(run(pipe, CLEAN, kwargs).images, raw_clean)


@pytest.mark.parametrize("mode", MODES[1:])
def test_compiled_submodules_keep_the_model_structure_a_layer_map_matches(mode):
    """A submodule compiled out of place adds an ``_orig_mod`` level to the module names: the structure a layer map
    is fingerprinted with, and the text layers' names and indices, stay those of the uncompiled model."""
    pipe = TINY_BUILDERS["sd15"]()
    structure, layers = denoiser_structure(pipe), discover_text_layers(pipe)
    compile_as(pipe, mode)
    assert any("_orig_mod" in name for name, _ in pipe.unet.named_modules())
    assert denoiser_structure(pipe) == structure
    assert discover_text_layers(pipe) == layers
