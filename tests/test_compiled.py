"""The patch under torch.compile, and the invariant that a neutralize verdict means the patch acted.

Compiled tests run the dynamo frontend with the ``eager`` / ``aot_eager`` backends (what decides whether
a hook is called is dynamo's tracing, not the kernels); the inductor comparison is marked slow.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from safetext.errors import PatchNotAppliedError
from safetext.generator import SafeTextGenerator
from safetext.patching import KVPatch, LayerMap, discover_text_layers, find_denoiser
from safetext.patching.compiled import installed_points, remove_resident_points
from safetext.patching.hooks import active_owner
from safetext.policy import load_policy
from safetext.policy.verdict import Action
from safetext.verify import ImageVerifier
from tests.test_generator import CLEAN, FLAGGED, WordSwapPolicy, hook_ids
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS, build_sd15, build_tiny_glyph

KWARGS = dict(TINY_CALL_KWARGS["sd15"], num_inference_steps=3)


def run(fn, prompt, kwargs=KWARGS, seed=0):
    return fn(prompt, generator=torch.Generator().manual_seed(seed), **kwargs)


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


class DirectProjections:
    """An attention processor that computes K/V with ``to_k.forward`` / ``to_v.forward``: same numbers as the
    default processor, but the projections' hooks never run (as with a fused kernel or a compiled graph)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query, key, value = attn.to_q(hidden_states), attn.to_k.forward(context), attn.to_v.forward(context)
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


# -- the invariant -----------------------------------------------------------------------------------------
def test_a_hook_that_never_fires_is_refused_and_leaves_no_trace():
    pipe = build_sd15()
    layers = discover_text_layers(pipe)
    bypassed = layers[1]
    raw = run(pipe, CLEAN).images
    before = hook_ids(pipe)
    attention = find_denoiser(pipe).get_submodule(bypassed.name)
    default = attention.processor
    attention.set_processor(DirectProjections())
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy(), layer_map=LayerMap.for_model(pipe, [0, 1], 0.0))
    with pytest.raises(PatchNotAppliedError) as info:
        run(gen, FLAGGED)
    message = str(info.value)
    assert f"{bypassed.key} at steps [0, 1, 2]" in message and f"{bypassed.value} at steps [0, 1, 2]" in message
    assert layers[0].key not in message  # the layer whose hooks fired is not blamed
    assert hook_ids(pipe) == before and active_owner() is None
    assert torch.equal(run(gen, CLEAN).images, run(pipe, CLEAN).images)
    # the same map on the unmodified model acts at every step, and says so
    attention.set_processor(default)
    assert torch.equal(run(pipe, CLEAN).images, raw)
    out = run(gen, FLAGGED)
    assert out.verdict.action is Action.NEUTRALIZE
    assert out.verdict.details["acted_steps"] == {layer.name: {"key": 3, "value": 3} for layer in layers[:2]}


def test_a_layer_the_forward_never_calls_is_refused():
    pipe = build_sd15()
    block = find_denoiser(pipe).up_blocks[1]
    block.attentions.append(copy.deepcopy(block.attentions[0]))  # registered, but the block zips resnets with attentions
    unused = discover_text_layers(pipe)[-1]
    assert unused.name == "up_blocks.1.attentions.2.transformer_blocks.0.attn2"
    with pytest.raises(PatchNotAppliedError, match=rf"{unused.key} at steps \[0, 1, 2\]"):
        KVPatch(pipe, layers=[unused.name]).generate(
            prompt=FLAGGED, target_prompt=CLEAN, generator=torch.Generator().manual_seed(0), **KWARGS
        )


def test_no_patched_step_escalates_to_an_earlier_start_when_the_policy_verifies():
    pipe = build_tiny_glyph()
    kwargs = dict(num_inference_steps=3, output_type="pt")
    policy = load_policy("default")

    class ReadsNothing:
        def read(self, image):
            return type("Read", (), {"text": ""})()

    late = LayerMap.for_model(pipe, [0], 1.0, name="late")
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=late, verifier=ImageVerifier(policy, ReadsNothing()))
    out = run(gen, 'A red sign that says "shit".', kwargs)
    assert out.verdict.action is Action.NEUTRALIZE
    escalation = out.verdict.details["escalations"][0]
    assert (escalation["step"], escalation["reason"], escalation["start_step"]) == ("earlier_start", "patch_not_applied", 0)
    assert out.verdict.details["patched_steps"] == 3 and out.verdict.details["start_step"] == 0
    direct, _ = KVPatch(pipe, late.layers, 0.0).generate(
        prompt='A red sign that says "shit".', target_prompt=out.verdict.sanitized_prompt,
        generator=torch.Generator().manual_seed(0), **kwargs,
    )
    assert torch.equal(out.images, direct.images)
    with pytest.raises(PatchNotAppliedError, match="no denoising step would be patched"):
        run(SafeTextGenerator(pipe, policy=policy, layer_map=late), 'A red sign that says "shit".', kwargs)


# -- compiled denoisers --------------------------------------------------------------------------------------
def _compile(pipe, mode: str, backend: str = "eager") -> None:
    if mode == "torch.compile":
        pipe.unet = torch.compile(pipe.unet, backend=backend)
    elif mode == "Module.compile":
        pipe.unet.compile(backend=backend)
    else:
        pipe.unet.compile_repeated_blocks(backend=backend)


@pytest.mark.parametrize(
    "mode",
    [
        "Module.compile",
        pytest.param("torch.compile", marks=pytest.mark.slow),
        pytest.param("compile_repeated_blocks", marks=pytest.mark.slow),
    ],
)
def test_compiled_sd15_patches_like_eager_with_one_graph_for_clean_and_flagged(mode):
    pipe = build_sd15()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    raw_clean, raw_flagged = run(pipe, CLEAN).images, run(pipe, FLAGGED).images
    eager_flagged = run(gen, FLAGGED).images
    assert not torch.equal(eager_flagged, raw_flagged)
    torch._dynamo.reset()
    _compile(pipe, mode)
    clean = run(gen, CLEAN)  # the first call traces, with the resident patch points in place
    assert torch.equal(clean.images, raw_clean) and clean.verdict.action is Action.ALLOW
    flagged = run(gen, FLAGGED)
    assert flagged.verdict.action is Action.NEUTRALIZE and flagged.verdict.details["compile_mode"] == mode
    assert all(counts == {"key": 3, "value": 3} for counts in flagged.verdict.details["acted_steps"].values())
    assert torch.equal(flagged.images, eager_flagged)  # eager/dynamo backends: no kernel differs
    traced = graphs()
    for _ in range(10):
        assert torch.equal(run(gen, CLEAN).images, raw_clean)
        assert torch.equal(run(gen, FLAGGED).images, eager_flagged)
    assert graphs() == traced  # 20 alternating calls after warm-up: no recompilation
    assert torch.equal(run(pipe, CLEAN).images, raw_clean)  # the raw compiled pipeline: dormant points
    remove_resident_points(find_denoiser(pipe))


def test_in_place_compile_reproducer_with_aot_autograd():
    """The reported case: ``pipe.unet.compile()`` used to return the unguarded image with a neutralize verdict."""
    pipe = build_sd15()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    raw_flagged, eager_flagged = run(pipe, FLAGGED).images, run(gen, FLAGGED).images
    torch._dynamo.reset()
    pipe.unet.compile(backend="aot_eager")
    out = run(gen, FLAGGED)
    assert out.verdict.action is Action.NEUTRALIZE and not torch.equal(out.images, raw_flagged)
    assert torch.equal(out.images, eager_flagged)
    remove_resident_points(find_denoiser(pipe))


def test_compiled_and_run_before_safetext_retraces_with_the_patch_points():
    """A graph traced without safetext (this pipeline's, or another instance's of the same model) is not reused."""
    pipe, other = build_sd15(), build_sd15()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager_flagged = run(gen, FLAGGED).images
    torch._dynamo.reset()
    other.unet.compile(backend="eager")
    pipe.unet.compile(backend="eager")
    raw_clean = run(other, CLEAN).images  # one graph, traced without safetext
    assert torch.equal(run(pipe, CLEAN).images, raw_clean)  # this pipeline, too, before safetext is involved
    flagged = run(gen, FLAGGED)
    assert flagged.verdict.action is Action.NEUTRALIZE and torch.equal(flagged.images, eager_flagged)
    assert torch.equal(run(gen, CLEAN).images, raw_clean) and torch.equal(run(other, CLEAN).images, raw_clean)
    denoiser = find_denoiser(pipe)
    key = denoiser.get_submodule(discover_text_layers(pipe)[0].key)
    assert type(key).__name__ == "Linear" and isinstance(key, torch.nn.Linear)
    assert set(key.state_dict()) == {"weight", "bias"} or set(key.state_dict()) == {"weight"}
    remove_resident_points(denoiser)
    assert type(key) is torch.nn.Linear and installed_points(denoiser) is None


def test_an_undetected_compiled_module_bypassing_hooks_is_refused(monkeypatch):
    """Were a compile mode missed by the detection, the per-call hooks would be skipped by the compiled graph:
    the invariant withholds the image."""
    import safetext.patching.kv_patch as kv_patch

    monkeypatch.setattr(kv_patch, "compile_mode", lambda *args: None)
    pipe = build_sd15()
    torch._dynamo.reset()
    pipe.unet.compile(backend="eager")
    raw_clean = run(pipe, CLEAN).images
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    with pytest.raises(PatchNotAppliedError, match="never replaced the text keys/values"):
        run(gen, FLAGGED)
    assert active_owner() is None
    assert torch.equal(run(gen, CLEAN).images, raw_clean)
    assert installed_points(find_denoiser(pipe)) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd3", "pixart"])
def test_compiled_transformers_patch_like_eager(name):
    pipe = TINY_BUILDERS[name]()
    kwargs = dict(TINY_CALL_KWARGS[name], num_inference_steps=3)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    raw_clean, eager_flagged = run(pipe, CLEAN, kwargs).images, run(gen, FLAGGED, kwargs).images
    torch._dynamo.reset()
    pipe.transformer = torch.compile(pipe.transformer, backend="eager")
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE and torch.equal(flagged.images, eager_flagged)
    traced = graphs()  # extra_rows families traced one more graph for the batch with target rows, once
    for _ in range(3):
        assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, eager_flagged)
    assert graphs() == traced
    remove_resident_points(find_denoiser(pipe))


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"mode": "reduce-overhead"}], ids=["default", "reduce-overhead"])
def test_inductor_sd15_matches_eager_within_tolerance(options):
    """Inductor (the default backend): flagged equals the eager guarded image within 1e-4 (images in [0, 1];
    inductor's kernels round differently from eager), clean is bit-identical to an identical pipeline
    compiled without safetext, and 20 alternating requests compile no graph. On CPU ``reduce-overhead``
    has no CUDA graphs to replay; the operators are kept out of them on CUDA (``cudagraph_unsafe``)."""
    pipe, twin = build_sd15(), build_sd15()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager_flagged, raw_flagged = run(gen, FLAGGED).images, run(pipe, FLAGGED).images
    torch._dynamo.reset()
    pipe.unet.compile(**options)
    twin.unet.compile(**options)  # the compiled raw pipeline, without safetext
    compiled_raw = run(twin, CLEAN).images
    assert torch.equal(run(gen, CLEAN).images, compiled_raw)
    flagged = run(gen, FLAGGED)
    assert flagged.verdict.action is Action.NEUTRALIZE and flagged.verdict.details["compile_mode"] == "Module.compile"
    assert (flagged.images - raw_flagged).abs().max() > 1e-2  # the patch changed the image
    torch.testing.assert_close(flagged.images, eager_flagged, atol=1e-4, rtol=0)
    traced = graphs()
    for _ in range(10):
        assert torch.equal(run(gen, CLEAN).images, compiled_raw)
        assert torch.equal(run(gen, FLAGGED).images, flagged.images)
    assert graphs() == traced
    remove_resident_points(find_denoiser(pipe))


# -- optimization knobs (eager) --------------------------------------------------------------------------------
def _knob_case(pipe, kwargs):
    """(raw clean, raw flagged, guarded clean, guarded flagged) images and the guarded flagged verdict."""
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    before = hook_ids(pipe)
    guarded = run(gen, FLAGGED, kwargs)
    assert hook_ids(pipe) == before and active_owner() is None  # no hook left behind
    return run(pipe, CLEAN, kwargs).images, run(pipe, FLAGGED, kwargs).images, run(gen, CLEAN, kwargs).images, guarded


def test_group_offloading_cpu_to_cpu_patches_exactly_like_eager():
    kwargs = KWARGS
    reference = _knob_case(build_sd15(), kwargs)
    pipe = build_sd15()
    pipe.unet.enable_group_offload(
        onload_device=torch.device("cpu"), offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1
    )
    raw_clean, raw_flagged, clean, flagged = _knob_case(pipe, kwargs)
    assert torch.equal(clean, raw_clean) and torch.equal(raw_clean, reference[0])
    assert flagged.verdict.action is Action.NEUTRALIZE and not torch.equal(flagged.images, raw_flagged)
    assert torch.equal(flagged.images, reference[3].images)


def test_layerwise_fp8_casting_patches_like_eager_within_the_casting_error():
    kwargs = KWARGS
    eager_clean, eager_raw_flagged, _, eager = _knob_case(build_sd15(), kwargs)
    pipe = build_sd15()
    pipe.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    raw_clean, raw_flagged, clean, flagged = _knob_case(pipe, kwargs)
    assert torch.equal(clean, raw_clean)
    assert flagged.verdict.action is Action.NEUTRALIZE and not torch.equal(flagged.images, raw_flagged)
    casting_error = (flagged.images - eager.images).abs().max()
    patch_effect = (eager.images - eager_raw_flagged).abs().max()
    assert casting_error < patch_effect / 2, (casting_error, patch_effect)  # the same patch, up to fp8 rounding


def test_fused_lora_patches_like_unfused():
    from peft import LoraConfig

    images = {}
    for fused in (False, True):
        pipe = build_sd15()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_k", "to_v"]))
        if fused:
            pipe.fuse_lora(components=["unet"])
        raw_clean, raw_flagged, clean, flagged = _knob_case(pipe, KWARGS)
        assert torch.equal(clean, raw_clean) and not torch.equal(flagged.images, raw_flagged)
        images[fused] = (raw_clean, flagged.images)
    torch.testing.assert_close(images[True][0], images[False][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(images[True][1], images[False][1], atol=1e-5, rtol=0)


def test_first_block_cache_on_flux_patches_and_skipped_steps_are_not_gaps():
    from diffusers import FirstBlockCacheConfig

    kwargs = dict(TINY_CALL_KWARGS["flux"], num_inference_steps=6)
    eager_clean, eager_raw_flagged, _, eager = _knob_case(TINY_BUILDERS["flux"](), kwargs)
    pipe = TINY_BUILDERS["flux"]()
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.5))  # skips the second block after step 0
    raw_clean, raw_flagged, clean, flagged = _knob_case(pipe, kwargs)
    assert torch.equal(clean, raw_clean)
    assert flagged.verdict.action is Action.NEUTRALIZE and not torch.equal(flagged.images, raw_flagged)
    acted = flagged.verdict.details["acted_steps"]
    assert acted["transformer_blocks.0.attn"] == {"key": 6, "value": 6}
    assert acted["single_transformer_blocks.0.attn"] == {"key": 1, "value": 1}  # the cache reuses step 0's output
    cache_error = (raw_flagged - eager_raw_flagged).abs().max()
    assert 0 < cache_error and (flagged.images - eager.images).abs().max() <= 2 * cache_error
