"""Joint-attention early exit: the target rows leave after the last mapped block.

On SD3, SD3.5 (dual-attention blocks) and Flux the target prompt runs as extra batch rows; after the block
of the last mapped layer those rows are cut from the streams and from every per-row input of the later
blocks and the output norm. The user's rows must come out as on the full path: bit for bit when the
call has two rows or more, within ``ONE_ROW_ATOL`` when it has one (a one-row matmul runs another
kernel than a two-row one, so the full path's one-row call differs from its two-row call in the last
bits of float32; measured here: 5e-7).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import SD3Transformer2DModel
from diffusers.models.transformers.transformer_sd3 import JointTransformerBlock

from safetext.generator import SafeTextGenerator
from safetext.patching import KVPatch, LayerMap, find_denoiser
from safetext.patching.hooks import active_owner
from safetext.policy.verdict import Action
from tests.test_generator import WordSwapPolicy, hook_ids
from tests.tiny_pipelines import TINY_CALL_KWARGS, build_flux, build_sd3

FLAGGED = 'A sign that says "damn"'
SANITIZED = 'A sign that says "world"'
OTHER = "a red house"
ONE_ROW_ATOL = 1e-5


def build_sd35():
    """The tiny SD3 pipeline with an SD3.5-medium-style transformer: dual attention in blocks 0-1, RMS qk-norm."""
    pipe = build_sd3()
    config = dict(pipe.transformer.config)
    config.update(num_layers=3, dual_attention_layers=(0, 1), qk_norm="rms_norm")
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        pipe.transformer = SD3Transformer2DModel(**config).eval().requires_grad_(False)
    return pipe


BUILDERS = {"sd3": build_sd3, "sd35": build_sd35, "flux": build_flux}


def built(name: str):
    """A tiny pipeline that has run once (transformers adds its output-capturing hooks on the first run)."""
    pipe = BUILDERS[name]()
    run_raw(pipe, call_kwargs(name, cfg=False), [OTHER])
    return pipe


@pytest.fixture(scope="module", params=list(BUILDERS))
def family(request):
    return request.param, built(request.param)


def call_kwargs(name: str, cfg: bool) -> dict:
    base = "flux" if name == "flux" else "sd3"
    kwargs = dict(TINY_CALL_KWARGS[base])
    if name == "flux":  # guidance-distilled: CFG is true CFG, a second call with the negative prompt
        kwargs.update(true_cfg_scale=2.0 if cfg else 1.0, negative_prompt="blurry" if cfg else None)
    else:
        kwargs["guidance_scale"] = 5.0 if cfg else 1.0
    return kwargs


def later_block(pipe):
    """The block right after block 0 (the exit block with the map ``[0]``)."""
    denoiser = find_denoiser(pipe)
    return denoiser.transformer_blocks[1] if len(denoiser.transformer_blocks) > 1 else denoiser.single_transformer_blocks[0]


def run_patch(pipe, kwargs, prompts, patched_prompts, early_exit):
    """Patched images, report and the row counts the block after the exit saw, per denoiser call."""
    patch = KVPatch(pipe, [0], 0.25, early_exit=early_exit)
    targets = [SANITIZED if index in patched_prompts else prompt for index, prompt in enumerate(prompts)]
    rows: list[int] = []
    handle = later_block(pipe).register_forward_pre_hook(
        lambda module, args, kw: rows.append(int(kw["hidden_states"].shape[0])), with_kwargs=True
    )
    try:
        out, report = patch.run(
            dict(kwargs, prompt=prompts, generator=torch.Generator().manual_seed(0)), {"prompt": targets}, patched_prompts
        )
    finally:
        handle.remove()
    return out.images, report, rows


@pytest.mark.parametrize("cfg", [True, False], ids=["cfg", "no-cfg"])
@pytest.mark.parametrize("prompts", [[FLAGGED], [FLAGGED, OTHER]], ids=["1-prompt", "2-prompts"])
def test_early_exit_equals_the_full_path_for_the_original_rows(family, prompts, cfg):
    name, pipe = family
    kwargs = call_kwargs(name, cfg)
    before = hook_ids(pipe)
    fast, report, fast_rows = run_patch(pipe, kwargs, prompts, [0], early_exit=True)
    full, full_report, full_rows = run_patch(pipe, kwargs, prompts, [0], early_exit=False)
    assert hook_ids(pipe) == before and active_owner() is None
    denoiser = find_denoiser(pipe)
    blocks = len(denoiser.transformer_blocks) + len(getattr(denoiser, "single_transformer_blocks", ()))
    patched_steps = report.total_steps - report.start_step
    assert report.early_exit == {"used": True, "block": "transformer_blocks.0", "blocks_after": blocks - 1, "steps": patched_steps}
    assert full_report.early_exit == {"used": False, "fallback": "turned off (KVPatch(early_exit=False))"}
    # rows the block after the exit sees per denoiser call of the patched steps: the user's only with the exit,
    # one target row more without it (Flux's true CFG runs the negative prompt as a second, unpatched call)
    rows = len(prompts) * (2 if cfg and name != "flux" else 1)
    calls = 2 if name == "flux" and cfg else 1
    assert fast_rows[-calls * patched_steps :] == [rows] * calls * patched_steps
    assert full_rows[-calls * patched_steps :] == ([rows + 1] + [rows] * (calls - 1)) * patched_steps
    assert not torch.equal(fast, run_raw(pipe, kwargs, prompts))  # the patch changed the image
    if rows >= 2:
        assert torch.equal(fast, full)
    else:
        torch.testing.assert_close(fast, full, atol=ONE_ROW_ATOL, rtol=0)


def run_raw(pipe, kwargs, prompts):
    return pipe(**kwargs, prompt=prompts, generator=torch.Generator().manual_seed(0)).images


class MaskedBlock(JointTransformerBlock):
    """A block whose forward takes an input the early exit does not know (a newer diffusers, say)."""

    def forward(self, hidden_states, encoder_hidden_states, temb, joint_attention_kwargs=None, attention_mask=None):
        return super().forward(hidden_states, encoder_hidden_states, temb, joint_attention_kwargs)


@pytest.fixture
def sd3_unknown_block():
    pipe = build_sd3()
    block = pipe.transformer.transformer_blocks[1]
    block.__class__ = MaskedBlock
    return pipe


def test_unknown_block_signature_falls_back_to_the_full_path_with_a_note(sd3_unknown_block):
    pipe = sd3_unknown_block
    kwargs = call_kwargs("sd3", cfg=True)
    images, report, rows = run_patch(pipe, kwargs, [FLAGGED], [0], early_exit=True)
    full, _, _ = run_patch(pipe, kwargs, [FLAGGED], [0], early_exit=False)
    assert torch.equal(images, full)
    assert report.early_exit["used"] is False
    assert "transformer_blocks.1 (MaskedBlock)" in report.early_exit["fallback"]
    assert "attention_mask" in report.early_exit["fallback"]
    assert rows[-1] == 3  # [uncond | cond | target]: the target row ran through the last block

    layer_map = LayerMap.for_model(pipe, ["transformer_blocks.0.attn"], 0.25, name="sd3-block0")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy(), layer_map=layer_map)
    out = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
    assert out.verdict.action is Action.NEUTRALIZE
    assert out.verdict.details["early_exit"]["used"] is False
    assert any(note.startswith("target rows ran through every block (no early exit): transformer_blocks.1") for note in out.verdict.notes)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_no_hook_outlives_an_exception_raised_after_the_exit(name):
    pipe = built(name)
    kwargs = call_kwargs(name, cfg=False)
    raw_clean = run_raw(pipe, kwargs, [OTHER])
    before = hook_ids(pipe)
    block = later_block(pipe)
    seen: list[int] = []

    def failing(**inputs):
        seen.append(int(inputs["hidden_states"].shape[0]))
        raise RuntimeError("block failed after the exit")

    block.forward = failing  # the instance attribute shadows the class's forward
    try:
        with pytest.raises(RuntimeError, match="block failed after the exit"):
            KVPatch(pipe, [0], 0.0).generate(
                prompt=FLAGGED, target_prompt=SANITIZED, generator=torch.Generator().manual_seed(0), **kwargs
            )
    finally:
        del block.forward
    assert seen == [1]  # it failed on the user's row alone: the target row had left at the exit
    assert hook_ids(pipe) == before and active_owner() is None
    assert torch.equal(run_raw(pipe, kwargs, [OTHER]), raw_clean)
    images, report, _ = run_patch(pipe, kwargs, [FLAGGED], [0], early_exit=True)  # the next patched call works
    assert report.early_exit["used"] is True


def test_clean_prompts_stay_bit_identical_with_the_exit_map(family):
    name, pipe = family
    kwargs = call_kwargs(name, cfg=True)
    raw = run_raw(pipe, kwargs, [OTHER])
    layer_map = LayerMap.for_model(pipe, ["transformer_blocks.0.attn"], 0.25, name="block0")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy(), layer_map=layer_map)
    out = gen(OTHER, generator=torch.Generator().manual_seed(0), **kwargs)
    assert out.verdict.action is Action.ALLOW and torch.equal(out.images, raw)
    flagged = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
    assert flagged.verdict.details["early_exit"]["used"] is True
    assert flagged.verdict.details["identity_swap"] is False
    assert torch.equal(gen(OTHER, generator=torch.Generator().manual_seed(0), **kwargs).images, raw)


# The flagged word after 100 words: past CLIP's 77 tokens and the T5 encoder's max_sequence_length (32 here).
TRUNCATED = "a " * 100 + '"damn"'


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_identity_swap_is_reported_not_silent(name):
    pipe = BUILDERS[name]()
    kwargs = call_kwargs(name, cfg=True)
    raw = run_raw(pipe, kwargs, [TRUNCATED])
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    out = gen(TRUNCATED, generator=torch.Generator().manual_seed(0), **kwargs)
    details = out.verdict.details
    assert out.verdict.action is Action.NEUTRALIZE
    assert details["identity_swap"] is True and details["identity_steps"] == details["patched_steps"] > 0
    assert any("reaches the denoiser exactly as the prompt does" in note for note in out.verdict.notes)
    # no keys/values differed: the image is the raw one, which is also the sanitized prompt's image
    assert torch.equal(out.images, raw)
    assert torch.equal(raw, run_raw(pipe, kwargs, [TRUNCATED.replace("damn", "world")]))
    flagged = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
    assert flagged.verdict.details["identity_swap"] is False and flagged.verdict.details["identity_steps"] == 0
    assert not any("reaches the denoiser exactly" in note for note in flagged.verdict.notes)


def test_a_diffusers_cache_hook_turns_the_exit_off():
    from diffusers import FirstBlockCacheConfig

    pipe = built("flux")
    kwargs = dict(call_kwargs("flux", cfg=False), num_inference_steps=3)
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.5))
    try:
        _, report, _ = run_patch(pipe, kwargs, [FLAGGED], [0], early_exit=True)
    finally:
        pipe.transformer.disable_cache()
    assert report.early_exit["used"] is False and "cache hook" in report.early_exit["fallback"]
    _, report, _ = run_patch(pipe, kwargs, [FLAGGED], [0], early_exit=True)
    assert report.early_exit["used"] is True  # the cache removed, the exit is back


# -- compiled denoisers: the exit through the resident exit points ------------------------------------------
def _compile_blocks(pipe, name: str) -> None:
    """Regional compilation: Flux through diffusers' ``compile_repeated_blocks``; SD3 declares no
    ``_repeated_blocks``, so its blocks are compiled one by one (what ``compile_repeated_blocks`` does)."""
    if name == "flux":
        pipe.transformer.compile_repeated_blocks(backend="eager")
    else:
        for block in pipe.transformer.transformer_blocks:
            block.compile(backend="eager")


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_early_exit_runs_on_regionally_compiled_blocks(name):
    """The loop over the blocks runs eagerly: the exit points cut the target rows after the last mapped
    block (the later blocks see the user's rows only), the image equals the eager guarded one, and
    alternating clean/flagged requests compile no new graph."""
    from torch._dynamo.utils import counters

    from safetext.patching.compiled import remove_resident_points

    pipe = BUILDERS[name]()
    kwargs = call_kwargs(name, cfg=True)
    layer_map = LayerMap.for_model(pipe, ["transformer_blocks.0.attn"], 0.25, name="block0")
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy(), layer_map=layer_map)
    raw_clean = run_raw(pipe, kwargs, [OTHER])
    eager = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
    assert eager.verdict.details["early_exit"]["used"] is True
    torch._dynamo.reset()
    _compile_blocks(pipe, name)
    rows: list[int] = []
    handle = later_block(pipe).register_forward_pre_hook(
        lambda module, args, kw: rows.append(int(kw["hidden_states"].shape[0])), with_kwargs=True
    )
    try:
        assert torch.equal(gen(OTHER, generator=torch.Generator().manual_seed(0), **kwargs).images, raw_clean)
        rows.clear()
        flagged = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
        details = flagged.verdict.details
        assert flagged.verdict.action is Action.NEUTRALIZE and details["compile_mode"] == "compile_repeated_blocks"
        assert details["early_exit"] == eager.verdict.details["early_exit"]  # used, same block, every patched step
        assert torch.equal(flagged.images, eager.images)
        # the block after the exit saw the user's rows only ([uncond | cond]; Flux's true CFG: two one-row calls)
        assert rows and set(rows) == ({1} if name == "flux" else {2})
        traced = counters["stats"]["unique_graphs"]
        for _ in range(3):
            assert torch.equal(gen(OTHER, generator=torch.Generator().manual_seed(0), **kwargs).images, raw_clean)
            again = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
            assert torch.equal(again.images, eager.images) and again.verdict.details["early_exit"]["used"] is True
        assert counters["stats"]["unique_graphs"] == traced
        assert torch.equal(run_raw(pipe, kwargs, [OTHER]), raw_clean)  # exit points dormant outside a request
    finally:
        handle.remove()
        remove_resident_points(pipe.transformer)
    assert all(vars(block).get("_compiled_call_impl") is None or not hasattr(block._compiled_call_impl, "_safetext_inner")
               for block in pipe.transformer.transformer_blocks)


def test_whole_module_compile_keeps_the_full_path_with_its_reason():
    from safetext.patching.compiled import remove_resident_points

    pipe = BUILDERS["sd3"]()
    kwargs = call_kwargs("sd3", cfg=True)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    eager = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs).images
    torch._dynamo.reset()
    denoiser = pipe.transformer
    pipe.transformer = torch.compile(denoiser, backend="eager")
    try:
        flagged = gen(FLAGGED, generator=torch.Generator().manual_seed(0), **kwargs)
        exit_info = flagged.verdict.details["early_exit"]
        assert exit_info["used"] is False and "compiled as a whole (torch.compile)" in exit_info["fallback"]
        assert "compile_repeated_blocks()" in exit_info["fallback"]
        assert torch.equal(flagged.images, eager)
        # no exit point inside the compiled graph: the blocks carry no hook of safetext's
        assert all(not block._forward_hooks and not block._forward_pre_hooks for block in denoiser.transformer_blocks)
    finally:
        remove_resident_points(denoiser)
