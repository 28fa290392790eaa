"""The tiny test pipelines: offline, fp32/CPU, deterministic, prompt-sensitive, with the expected layout."""

from __future__ import annotations

import os
import re

import pytest
import torch

from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS
from tests.tiny_tokenizers import COMMON_WORDS, build_clip_tokenizer, build_t5_tokenizer

PROMPT = 'A sign that says "hello"'
OTHER_PROMPT = 'A sign that says "world"'

# Text key projections of each denoiser in forward order, with the sequence length each one sees:
# the text tokens (77 CLIP, 32 T5, 77 + 32 for SD3) or, for Flux single-stream blocks, text + 64 image tokens.
# The value projection sits beside each (``to_v`` / ``add_v_proj``). The patching code targets these.
EXPECTED_TEXT_KEYS = {
    "sd15": [
        ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("mid_block.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k", 77),
    ],
    "sdxl": [
        ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", 77),
        ("mid_block.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("mid_block.attentions.0.transformer_blocks.1.attn2.to_k", 77),
        ("up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", 77),
        ("up_blocks.0.attentions.0.transformer_blocks.1.attn2.to_k", 77),
        ("up_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k", 77),
        ("up_blocks.0.attentions.1.transformer_blocks.1.attn2.to_k", 77),
    ],
    "sd3": [("transformer_blocks.0.attn.add_k_proj", 77 + 32), ("transformer_blocks.1.attn.add_k_proj", 77 + 32)],
    "if": [
        ("down_blocks.1.attentions.0.add_k_proj", 77),
        ("mid_block.attentions.0.add_k_proj", 77),
        ("up_blocks.0.attentions.0.add_k_proj", 77),
        ("up_blocks.0.attentions.1.add_k_proj", 77),
    ],
    "pixart": [("transformer_blocks.0.attn2.to_k", 32), ("transformer_blocks.1.attn2.to_k", 32)],
    "flux": [("transformer_blocks.0.attn.add_k_proj", 32), ("single_transformer_blocks.0.attn.to_k", 32 + 64)],
}
TEXT_KEY_PATTERN = re.compile(r"(attn2\.to_k|add_k_proj|^single_transformer_blocks\.\d+\.attn\.to_k)$")


def _denoiser(pipe) -> torch.nn.Module:
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def _generate(pipe, kwargs: dict, prompt=PROMPT, seed: int = 0) -> torch.Tensor:
    return pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_every_architecture_has_call_kwargs():
    assert set(TINY_CALL_KWARGS) == set(TINY_BUILDERS) == set(EXPECTED_TEXT_KEYS)
    for name, kwargs in TINY_CALL_KWARGS.items():
        assert kwargs["num_inference_steps"] <= 4, name
        assert kwargs["guidance_scale"] > 1, name


def test_pipeline_is_offline_fp32_cpu_eval(tiny_pipe):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    modules = {name: c for name, c in tiny_pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert "vae" in modules or "unet" in modules
    for name, module in modules.items():
        params = list(module.parameters())
        assert params, name
        assert {p.dtype for p in params} == {torch.float32}, name
        assert {p.device.type for p in params} == {"cpu"}, name
        assert not module.training, name
        assert not any(p.requires_grad for p in params), name
    assert sum(p.numel() for p in _denoiser(tiny_pipe).parameters()) < 500_000


def test_text_key_projections_in_forward_order(tiny_pipe, tiny_pipe_name, tiny_call_kwargs):
    denoiser = _denoiser(tiny_pipe)
    expected = EXPECTED_TEXT_KEYS[tiny_pipe_name]
    text_keys = [name for name, module in denoiser.named_modules() if TEXT_KEY_PATTERN.search(name)]
    assert sorted(text_keys) == sorted(name for name, _ in expected)
    calls = []
    handles = []
    for name, _ in expected:
        value_name = name.replace("to_k", "to_v").replace("add_k_proj", "add_v_proj")
        assert isinstance(denoiser.get_submodule(value_name), torch.nn.Linear)
        handles.append(
            denoiser.get_submodule(name).register_forward_hook(
                lambda module, args, output, name=name: calls.append((name, args[0].shape[1]))
            )
        )
    try:
        _generate(tiny_pipe, {**tiny_call_kwargs, "num_inference_steps": 2})
    finally:
        for handle in handles:
            handle.remove()
    assert calls == expected * 2  # one denoiser forward per step, CFG rows batched


def test_same_seed_is_bit_identical(tiny_pipe, tiny_call_kwargs):
    first = _generate(tiny_pipe, tiny_call_kwargs)
    second = _generate(tiny_pipe, tiny_call_kwargs)
    assert first.shape == (1, 3, tiny_call_kwargs["height"], tiny_call_kwargs["width"])
    assert first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert not torch.equal(first, _generate(tiny_pipe, tiny_call_kwargs, seed=1))


def test_different_prompts_give_different_images(tiny_pipe, tiny_call_kwargs):
    hello = _generate(tiny_pipe, tiny_call_kwargs)
    world = _generate(tiny_pipe, tiny_call_kwargs, prompt=OTHER_PROMPT)
    assert (hello - world).abs().mean() > 1e-4


def test_denoiser_runs_once_per_step_with_guidance_batch(tiny_pipe, tiny_pipe_name, tiny_call_kwargs):
    batch_sizes = []
    handle = _denoiser(tiny_pipe).register_forward_pre_hook(
        lambda module, args, kwargs: batch_sizes.append(
            (kwargs.get("sample") if "sample" in kwargs else kwargs.get("hidden_states", args[0] if args else None)).shape[0]
        ),
        with_kwargs=True,
    )
    try:
        images = _generate(tiny_pipe, tiny_call_kwargs, prompt=[PROMPT, OTHER_PROMPT])
    finally:
        handle.remove()
    assert images.shape[0] == 2
    # Flux is guidance-distilled: guidance_scale is an embedding, so no unconditional rows.
    rows_per_prompt = 1 if tiny_pipe_name == "flux" else 2
    assert batch_sizes == [2 * rows_per_prompt] * tiny_call_kwargs["num_inference_steps"]


@pytest.mark.parametrize("name", sorted(TINY_BUILDERS))
def test_builders_are_deterministic(name):
    rng_state = torch.random.get_rng_state()
    first = TINY_BUILDERS[name]()
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    torch.manual_seed(123)
    second = TINY_BUILDERS[name]()
    for component, module in first.components.items():
        if isinstance(module, torch.nn.Module):
            other = second.components[component].state_dict()
            for key, tensor in module.state_dict().items():
                assert torch.equal(tensor, other[key]), f"{name}.{component}.{key}"


def test_clip_tokenizer_encodes_any_ascii_without_unknowns():
    tokenizer = build_clip_tokenizer()
    assert tokenizer.model_max_length == 77
    assert len(tokenizer) < 1000
    for word in COMMON_WORDS:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    text = "".join(chr(code) for code in range(32, 127))
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer(PROMPT).input_ids != tokenizer(OTHER_PROMPT).input_ids
    assert tokenizer("fuck").input_ids != tokenizer("duck").input_ids


def test_t5_tokenizer_encodes_ascii_and_ends_with_eos():
    tokenizer = build_t5_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.tokenize("a sign that says") == ["▁a", "▁sign", "▁that", "▁says"]
    ids = tokenizer("".join(chr(code) for code in range(33, 127)) + " xyz").input_ids
    assert tokenizer.unk_token_id not in ids
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer(PROMPT).input_ids != tokenizer(OTHER_PROMPT).input_ids
