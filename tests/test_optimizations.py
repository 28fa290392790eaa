"""The patch across the optimization knobs a diffusers user turns on (eager and compiled).

Each knob: the guarded clean output equals the raw pipeline with the same knob, the guarded flagged output
differs from the raw one and equals the eager patched image (bit for bit, or within the knob's own
rounding), and no hook is left behind. A combination safetext cannot patch is refused before anything
is generated, with an error naming the mode and the alternative.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import cpu_offload
from torch._dynamo.utils import counters

from safetext.errors import PatchError
from safetext.generator import SafeTextGenerator
from safetext.patching import find_denoiser
from safetext.patching.compiled import installed_points, remove_resident_points
from safetext.patching.hooks import active_owner
from safetext.policy.verdict import Action
from tests.test_generator import CLEAN, FLAGGED, WordSwapPolicy, hook_ids
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS, build_sd15

KWARGS = dict(TINY_CALL_KWARGS["sd15"], num_inference_steps=3)


def run(fn, prompt, kwargs=KWARGS):
    return fn(prompt, generator=torch.Generator().manual_seed(0), **kwargs)


def reference(name: str = "sd15", kwargs=KWARGS):
    """(raw clean, raw flagged, eager guarded flagged) images of a plain pipeline."""
    pipe = TINY_BUILDERS[name]()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    return run(pipe, CLEAN, kwargs).images, run(pipe, FLAGGED, kwargs).images, run(gen, FLAGGED, kwargs).images


def guarded_case(pipe, kwargs=KWARGS):
    """(raw clean, raw flagged, guarded clean, guarded flagged output) on ``pipe``; asserts no hook is left."""
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    before = hook_ids(pipe)
    flagged = run(gen, FLAGGED, kwargs)
    assert hook_ids(pipe) == before and active_owner() is None
    assert flagged.verdict.action is Action.NEUTRALIZE
    return run(pipe, CLEAN, kwargs).images, run(pipe, FLAGGED, kwargs).images, run(gen, CLEAN, kwargs).images, flagged


# -- offloading ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_model_cpu_offload_with_a_cpu_stand_in_patches_exactly(compiled):
    """diffusers' own ``enable_model_cpu_offload`` code path (accelerate's ``CpuOffload`` hooks moving each
    model to the execution device when called), with ``cpu:0`` standing in for the accelerator."""
    raw_clean_ref, _, eager = reference()
    pipe = build_sd15()
    pipe.enable_model_cpu_offload(device="cpu")
    assert type(pipe.unet._hf_hook).__name__ == "CpuOffload" and str(pipe._execution_device) == "cpu:0"
    if compiled:
        torch._dynamo.reset()
        pipe.unet.compile(backend="eager")
    raw_clean, raw_flagged, clean, flagged = guarded_case(pipe)
    assert torch.equal(raw_clean, raw_clean_ref) and torch.equal(clean, raw_clean)
    assert not torch.equal(flagged.images, raw_flagged) and torch.equal(flagged.images, eager)
    assert flagged.verdict.details["compile_mode"] == ("Module.compile" if compiled else None)
    if compiled:
        remove_resident_points(pipe.unet)


@pytest.mark.parametrize("name", ["sd15", "flux"])
def test_sequential_offload_hooks_on_the_denoiser_patch_exactly(name):
    """What ``enable_sequential_cpu_offload`` installs per component: ``accelerate.cpu_offload`` (an
    ``AlignDevicesHook`` on every submodule, weights kept on the meta device between calls and loaded for
    each forward). diffusers' ``enable_sequential_cpu_offload(device="cpu")`` fails on CPU in the raw
    pipeline itself (accelerate cannot move the CLIP text encoder's parameters to meta), so the hooks are
    applied to the denoiser by hand, the same way."""
    kwargs = dict(TINY_CALL_KWARGS[name], num_inference_steps=3)
    raw_clean_ref, _, eager = reference(name, kwargs)
    pipe = TINY_BUILDERS[name]()
    denoiser = find_denoiser(pipe)
    cpu_offload(denoiser, torch.device("cpu"), offload_buffers=True)
    assert {p.device.type for p in denoiser.parameters()} == {"meta"}
    raw_clean, raw_flagged, clean, flagged = guarded_case(pipe, kwargs)
    assert torch.equal(raw_clean, raw_clean_ref) and torch.equal(clean, raw_clean)
    assert not torch.equal(flagged.images, raw_flagged) and torch.equal(flagged.images, eager)
    assert {p.device.type for p in denoiser.parameters()} == {"meta"}  # offloaded again after the call


def test_compiled_sequentially_offloaded_denoiser_is_refused_before_generating():
    """Sequential offload replaces each projection's ``forward`` on the instance, so a compiled graph would
    never call the patch point: refused up front, with the mode and the alternatives named."""
    pipe = build_sd15()
    cpu_offload(pipe.unet, torch.device("cpu"), offload_buffers=True)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())  # eager: supported
    eager = run(gen, FLAGGED).images
    torch._dynamo.reset()
    pipe.unet.compile(backend="eager")
    encoded = []
    pipe.text_encoder.register_forward_pre_hook(lambda module, args: encoded.append(1))
    for prompt in (FLAGGED, CLEAN):
        with pytest.raises(PatchError) as info:
            run(gen, prompt)
        message = str(info.value)
        assert "(Module.compile)" in message and "AlignDevicesHook" in message
        assert "attn2.to_k" in message and "enable_model_cpu_offload()" in message and "uncompiled" in message
    assert encoded == [] and installed_points(pipe.unet) is None  # nothing generated, nothing installed
    with pytest.raises(PatchError, match="enable_group_offload"):
        SafeTextGenerator(pipe, policy=WordSwapPolicy())
    pipe.unet._compiled_call_impl = None  # back to eager: patched again
    assert torch.equal(run(gen, FLAGGED).images, eager)


# -- quantized K/V projections -----------------------------------------------------------------------------
def _quantize_text_kv(pipe) -> None:
    """torchao int8 weight-only quantization of the cross-attention K/V projections."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(pipe.unet, Int8WeightOnlyConfig(), filter_fn=lambda module, name: name.endswith(("attn2.to_k", "attn2.to_v")))


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_torchao_int8_kv_projections_patch_like_eager(compiled):
    raw_clean_ref, raw_flagged_ref, eager = reference()
    pipe = build_sd15()
    _quantize_text_kv(pipe)
    key = pipe.unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k")
    assert type(key.weight).__name__ == "Int8Tensor"
    quantized_eager = guarded_case(pipe)[3].images if compiled else None
    if compiled:
        torch._dynamo.reset()
        pipe.unet.compile(backend="eager")
    raw_clean, raw_flagged, clean, flagged = guarded_case(pipe)
    assert torch.equal(clean, raw_clean) and not torch.equal(flagged.images, raw_flagged)
    quantization_error = (flagged.images - eager).abs().max()
    patch_effect = (eager - raw_flagged_ref).abs().max()
    assert quantization_error < patch_effect / 10, (quantization_error, patch_effect)  # the same patch, int8 weights
    if compiled:
        assert flagged.verdict.details["compile_mode"] == "Module.compile"
        assert torch.equal(flagged.images, quantized_eager)  # eager backend: the eager patched image of this model
        remove_resident_points(pipe.unet)


# -- attention backends --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["native", "_native_math"])
def test_set_attention_backend_patches_like_eager(backend):
    kwargs = dict(TINY_CALL_KWARGS["flux"], num_inference_steps=3)
    _, _, eager = reference("flux", kwargs)
    pipe = TINY_BUILDERS["flux"]()
    pipe.transformer.set_attention_backend(backend)
    raw_clean, raw_flagged, clean, flagged = guarded_case(pipe, kwargs)
    assert torch.equal(clean, raw_clean) and not torch.equal(flagged.images, raw_flagged)
    torch.testing.assert_close(flagged.images, eager, atol=1e-5, rtol=0)  # the math kernel rounds differently


# -- regional compilation of the joint-attention transformers -------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_regional_compile_of_joint_transformers_patches_like_eager(name):
    """Flux: diffusers' ``compile_repeated_blocks``; SD3 declares no ``_repeated_blocks`` (diffusers refuses),
    so its joint blocks are compiled one by one, which is what ``compile_repeated_blocks`` does."""
    kwargs = dict(TINY_CALL_KWARGS[name], num_inference_steps=3)
    raw_clean_ref, _, eager = reference(name, kwargs)
    pipe = TINY_BUILDERS[name]()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    if name == "flux":
        pipe.transformer.compile_repeated_blocks(backend="eager")
    else:
        with pytest.raises(ValueError, match="_repeated_blocks"):
            pipe.transformer.compile_repeated_blocks(backend="eager")
        for block in pipe.transformer.transformer_blocks:
            block.compile(backend="eager")
    assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean_ref)
    flagged = run(gen, FLAGGED, kwargs)
    assert flagged.verdict.action is Action.NEUTRALIZE and flagged.verdict.details["compile_mode"] == "compile_repeated_blocks"
    assert torch.equal(flagged.images, eager) and not torch.equal(flagged.images, run(pipe, FLAGGED, kwargs).images)
    traced = counters["stats"]["unique_graphs"]
    for _ in range(3):
        assert torch.equal(run(gen, CLEAN, kwargs).images, raw_clean_ref)
        assert torch.equal(run(gen, FLAGGED, kwargs).images, eager)
    assert counters["stats"]["unique_graphs"] == traced
    remove_resident_points(pipe.transformer)


# -- fullgraph and CUDA graphs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["Module.compile", pytest.param("compile_repeated_blocks", marks=pytest.mark.slow)])
def test_fullgraph_compile_patches_exactly(mode):
    """The patch points are one opaque operator and the denoiser-level hooks run outside the graph:
    ``fullgraph=True`` (no graph break allowed) traces."""
    _, _, eager = reference()
    pipe = build_sd15()
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    torch._dynamo.reset()
    if mode == "Module.compile":
        pipe.unet.compile(backend="eager", fullgraph=True)
    else:
        pipe.unet.compile_repeated_blocks(backend="eager", fullgraph=True)
    flagged = run(gen, FLAGGED)
    assert flagged.verdict.details["compile_mode"] == mode and torch.equal(flagged.images, eager)
    remove_resident_points(pipe.unet)


def test_patch_operators_are_kept_out_of_cuda_graphs():
    """``mode="reduce-overhead"`` replays CUDA graphs without running Python: the operators carry the
    ``cudagraph_unsafe`` tag, so inductor runs them between graph partitions (or skips CUDA graphs for
    the graph) instead of baking one request's rows into a replay."""
    from torch._inductor.utils import get_first_incompatible_cudagraph_node

    for op in (torch.ops.safetext.kv_projection.default, torch.ops.safetext.attention_bias.default):
        assert torch.Tag.cudagraph_unsafe in op.tags

    def projected(x, layer):
        return torch.ops.safetext.kv_projection(x * 2, layer, 0) + 1

    graph = torch.fx.experimental.proxy_tensor.make_fx(projected)(torch.ones(2, 3), torch.tensor(0))
    node = get_first_incompatible_cudagraph_node(graph)
    assert node is not None and node.target is torch.ops.safetext.kv_projection.default
