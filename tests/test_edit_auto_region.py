"""``edit_text(region="auto")``: the edit region found from the original run's cross-attention to the word."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from safetext.edit import RegionError, edit_text
from safetext.edit.attention import (
    WordAttention,
    attention_box,
    attention_probabilities,
    attention_taps,
    fit_text_length,
    text_token_positions,
)
from safetext.edit.cli import register
from safetext.patching.hooks import installed
from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS, build_tiny_glyph

PROMPT = 'A red sign that says "stop".'
STEPS = {"num_inference_steps": 3}


@pytest.fixture(scope="module")
def glyph():
    return build_tiny_glyph()


def _decoded(pipe, prompt: str, positions: list[int]) -> str:
    ids = pipe.tokenizer(prompt).input_ids
    return pipe.tokenizer.decode([ids[p] for p in positions]).replace(" ", "")


def test_text_tokens_are_the_word_in_every_tokenizer(glyph):
    positions = text_token_positions(glyph, PROMPT, "stop")  # byte-level: one token per letter
    assert len(positions) == 4 and _decoded(glyph, PROMPT, positions) == "stop"
    sd = TINY_BUILDERS["sd15"]()
    assert _decoded(sd, "a sign that says stop here", text_token_positions(sd, "a sign that says stop here", "stop")) == "stop"
    pixart = TINY_BUILDERS["pixart"]()
    assert _decoded(pixart, PROMPT, text_token_positions(pixart, PROMPT, "stop")).lower() == "stop"
    sd3 = TINY_BUILDERS["sd3"]()  # CLIP tokens, then T5 tokens after the CLIP length
    positions = text_token_positions(sd3, "a sign that says stop here", "stop")
    clip = [p for p in positions if p < sd3.tokenizer_max_length]
    t5 = [p - sd3.tokenizer_max_length for p in positions if p >= sd3.tokenizer_max_length]
    assert clip and t5 and _decoded(sd3, "a sign that says stop here", clip) == "stop"
    t5_ids = sd3.tokenizer_3("a sign that says stop here").input_ids
    assert sd3.tokenizer_3.decode([t5_ids[p] for p in t5]).replace(" ", "").lower() == "stop"
    # case-insensitive like the edit's own text replacement
    assert text_token_positions(glyph, 'A sign that says "STOP".', "stop") == text_token_positions(glyph, 'A sign that says "STOP".', "STOP")


def _reference_word_attention(pipe, name: str, prompt: str, positions: list[int], kwargs: dict) -> list[torch.Tensor]:
    """Per call: diffusers' own ``get_attention_scores`` on the layer's inputs, conditional row, word columns."""
    attention = pipe.unet.get_submodule(name) if hasattr(pipe, "unet") else pipe.transformer.get_submodule(name)
    maps = []

    def hook(module, args, kw):
        hidden = args[0]
        text = kw.get("encoder_hidden_states")
        mask = kw.get("attention_mask")
        query = module.head_to_batch_dim(module.to_q(hidden[-1:]))
        key = module.head_to_batch_dim(module.to_k(module.norm_encoder_hidden_states(text[-1:]) if module.norm_cross else text[-1:]))
        prepared = None if mask is None else module.prepare_attention_mask(mask[-1:], key.shape[1], 1)
        probabilities = module.get_attention_scores(query, key, prepared)  # (heads, positions, tokens)
        maps.append(probabilities[..., positions].sum(-1).mean(0))

    handle = attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        handle.remove()
    return maps


@pytest.mark.parametrize("name", ["sd15", "pixart"])
def test_recorded_attention_matches_diffusers_attention_scores(name):
    pipe = TINY_BUILDERS[name]()
    kwargs = {**TINY_CALL_KWARGS[name], "num_inference_steps": 2}
    prompt = "a sign that says stop here"
    positions = text_token_positions(pipe, prompt, "stop")
    layers = attention_taps(pipe)
    recorder = WordAttention(layers, positions)
    with installed(recorder, recorder.register):
        pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs)
    layer = layers[0].name
    reference = _reference_word_attention(pipe, layer, prompt, positions, kwargs)
    assert recorder.calls[layer] == len(reference) == 2  # one call per step
    torch.testing.assert_close(recorder.sums[layer], sum(reference), rtol=1e-4, atol=1e-6)
    assert set(recorder.sums) == {taps.name for taps in layers}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in pipe.components["unet" if name == "sd15" else "transformer"].modules())


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


@pytest.mark.parametrize("name", ["sd15", "pixart", "if", "sd3", "sd3-qk-norm"])
def test_attention_probabilities_rebuild_the_layers_output(name):
    """Probabilities times the layer's values, through its output projection, give the layer's own output.

    The values are laid out as the diffusers processors do (IF: text before image; SD3: image before text),
    independently of the taps, so a wrong key order moves the word's columns and fails here.
    """
    qk_norm = name.endswith("-qk-norm")
    name = name.removesuffix("-qk-norm")
    pipe = TINY_BUILDERS[name]()
    if qk_norm:  # SD3.5-style RMS norms on queries and keys of both streams
        from diffusers import SD3Transformer2DModel

        torch.manual_seed(0)
        config = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
        pipe.transformer = SD3Transformer2DModel(**{**config, "qk_norm": "rms_norm"}).eval()
        assert pipe.transformer.transformer_blocks[0].attn.norm_added_k is not None
        for module in pipe.transformer.modules():  # non-trivial norm weights
            if type(module).__name__ == "RMSNorm" and getattr(module, "weight", None) is not None:
                torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    kwargs = {**TINY_CALL_KWARGS[name], "num_inference_steps": 2}
    taps = attention_taps(pipe)[-1]
    attention = taps.attention
    seen: dict = {}
    modules = {"query": attention.to_q, "text_key": taps.text_key, "image_key": taps.image_key,
               "text_value": attention.add_v_proj if taps.text_key is not attention.to_k else attention.to_v,
               "image_value": attention.to_v if taps.image_key is not None else None}
    handles = [m.register_forward_hook(lambda _m, _a, out, key=key: seen.__setitem__(key, out[-1:].detach()))
               for key, m in modules.items() if m is not None]
    handles.append(attention.register_forward_hook(
        lambda _m, args, kw, out: seen.update(inputs=(args, kw), output=out), with_kwargs=True))
    try:
        pipe("a sign that says stop", generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    args, kw = seen["inputs"]
    mask = kw.get("attention_mask")
    probabilities = attention_probabilities(taps, seen["query"], seen["text_key"], seen.get("image_key"), mask)
    heads = int(attention.heads)
    values = _heads(seen["text_value"], heads)
    if taps.image_key is not None:
        image_values = _heads(seen["image_value"], heads)
        values = torch.cat([values, image_values] if name == "if" else [image_values, values], dim=2)
    mixed = (probabilities @ values[0]).transpose(0, 1).reshape(probabilities.shape[1], -1)  # (queries, heads * dim)
    rebuilt = attention.to_out[0](mixed)
    output = seen["output"]
    if name == "sd3":
        expected = output[0][-1]  # the image stream's output
    elif name == "if":
        residual = (args[0] if args else kw["hidden_states"])[-1]
        rebuilt, expected = rebuilt.transpose(0, 1).reshape(residual.shape) + residual, output[-1]
    else:
        expected = output[-1]
    assert probabilities.shape[-1] == values.shape[2] and torch.allclose(probabilities.sum(-1), torch.ones(()))
    torch.testing.assert_close(rebuilt, expected, rtol=1e-4, atol=1e-5)


def test_auto_region_edit_keeps_the_outside_of_its_box(glyph, monkeypatch):
    # random weights spread their attention over the whole image: a high threshold makes a box smaller than it
    monkeypatch.setattr("safetext.edit.attention.AUTO_REGION_THRESHOLD", 0.9)
    layers = [0, 3]
    plain = glyph(PROMPT, generator=torch.Generator().manual_seed(4), output_type="np", **STEPS).images[0]
    result = edit_text(glyph, PROMPT, "stop", "go", layers=layers, seed=4, ocr=None, region="auto", **STEPS)
    region = result.metrics["region"]
    assert region["kind"] == "auto" and region["threshold"] == 0.9
    top, left, bottom, right = region["box"]
    assert 0 <= top < bottom <= 16 and 0 <= left < right <= 32 and (bottom - top) * (right - left) < 16 * 32
    # the attention recording leaves the original untouched; outside the box the edit is the original
    assert torch.equal(result.original, torch.from_numpy(plain).permute(2, 0, 1))
    keep = torch.ones(16, 32, dtype=torch.bool)
    keep[top:bottom, left:right] = False
    assert torch.equal(result.edited[:, keep], result.original[:, keep])
    assert not torch.equal(result.edited, result.original)
    boxed = edit_text(glyph, PROMPT, "stop", "go", layers=layers, seed=4, ocr=None, region=(top, left, bottom, right), **STEPS)
    assert torch.equal(boxed.edited, result.edited)  # "auto" is exactly that box
    same = edit_text(glyph, PROMPT, "stop", "stop", layers=layers, seed=4, ocr=None, region="auto", **STEPS)
    assert torch.equal(same.edited, same.original)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in glyph.unet.modules())


@pytest.mark.parametrize("name", ["sd15", "pixart", "if", "sd3"])
def test_auto_region_is_a_box_on_every_latent_family(name, monkeypatch):
    monkeypatch.setattr("safetext.edit.attention.AUTO_REGION_THRESHOLD", 0.9)
    pipe = TINY_BUILDERS[name]()
    kwargs = {k: v for k, v in TINY_CALL_KWARGS[name].items() if k != "output_type"}
    kwargs["num_inference_steps"] = 2
    args = ("a sign that says stop here", "stop", "go")
    auto = edit_text(pipe, *args, layers=[0], seed=1, ocr=None, region="auto", **kwargs)
    box = auto.metrics["region"]["box"]
    assert auto.metrics["region"]["kind"] == "auto" and 0 <= box[0] < box[2] <= 32 and 0 <= box[1] < box[3] <= 32
    boxed = edit_text(pipe, *args, layers=[0], seed=1, ocr=None, region=tuple(box), **kwargs)
    plain = edit_text(pipe, *args, layers=[0], seed=1, ocr=None, **kwargs)
    assert torch.equal(auto.edited, boxed.edited) and torch.equal(auto.original, plain.original)


def test_auto_region_finds_the_word_on_the_sign_of_the_shipped_model():
    from safetext.models.glyph import load_glyph_pipeline

    pipe = load_glyph_pipeline()
    pipe.set_progress_bar_config(disable=True)
    top, left, bottom, right = pipe.sign_box()  # (20, 16, 44, 112) on the 64 x 128 scene
    centre = ((top + bottom) / 2, (left + right) / 2)
    for seed, (word, target) in enumerate([("lodge", "monkeys"), ("steam", "metal"), ("flavor", "gas")]):
        prompt = f'A blue sign that says "{word}".'
        box = edit_text(pipe, prompt, word, target, seed=seed, ocr=None, region="auto", num_inference_steps=20).metrics["region"]["box"]
        # inside the sign (give or take its 1-2 px outline), centred on it like the word, and a real share of it
        assert box[0] >= top - 2 and box[1] >= left - 2 and box[2] <= bottom + 2 and box[3] <= right + 2, (word, box)
        assert abs((box[0] + box[2]) / 2 - centre[0]) <= 4 and abs((box[1] + box[3]) / 2 - centre[1]) <= 8, (word, box)
        assert (box[2] - box[0]) * (box[3] - box[1]) >= 0.25 * (bottom - top) * (right - left), (word, box)


def test_attention_box_threshold():
    attention_map = torch.zeros(8, 10)
    attention_map[2:5, 3:7] = 1.0
    attention_map[5, 7] = attention_map[6, 8] = 0.2  # diagonal neighbours: connected to the peak's region
    attention_map[0, 0] = 0.5  # a stray spot, not connected
    assert attention_box(attention_map, 0.3) == (2, 3, 5, 7)
    assert attention_box(attention_map, 0.1) == (2, 3, 7, 9)
    large = torch.zeros(600, 300)  # area-averaged by 3 before the search, box scaled back
    large[300:330, 90:210] = 1.0
    large[10, 10] = 5.0  # one pixel: averaged down below the block's mean
    assert attention_box(large, 0.5) == (300, 90, 330, 210)
    with pytest.raises(RegionError, match="threshold must be in \\(0, 1\\]"):
        attention_box(attention_map, 0.0)
    with pytest.raises(RegionError, match="recorded no cross-attention"):
        WordAttention([], [0]).combined_map(8, 10)


def test_a_longer_target_widens_the_box_about_its_centre():
    assert fit_text_length((20, 40, 40, 90), "lodge", "monkeys", 128) == (20, 30, 40, 100)  # 50 px -> 70 px
    assert fit_text_length((20, 40, 40, 90), "lodge", "go", 128) == (20, 40, 40, 90)  # shorter: unchanged
    assert fit_text_length((20, 10, 40, 60), "ab", "abcdef", 128) == (20, 0, 40, 110)  # clipped at the edges
    assert fit_text_length((20, 40, 40, 90), " stop ", "stops", 128) == (20, 33, 40, 97)  # surrounding spaces ignored


def test_auto_region_on_packed_latents_is_refused_before_generating():
    pipe = TINY_BUILDERS["flux"]()
    kwargs = {k: v for k, v in TINY_CALL_KWARGS["flux"].items() if k != "output_type"}
    with pytest.raises(RegionError, match="its latents are packed, which region blending cannot reach; it works on unet_cross, pixart, added_kv, sd3_joint"):
        edit_text(pipe, "a sign that says stop", "stop", "go", layers=[0], seed=1, ocr=None, region="auto", **kwargs)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in pipe.transformer.modules())


def test_auto_region_refuses_text_the_tokenizer_drops(glyph):
    long_prompt = "x" * glyph.tokenizer.model_max_length + " stop"
    with pytest.raises(RegionError, match="adds no token to the prompt"):
        edit_text(glyph, long_prompt, "stop", "go", layers=[0], ocr=None, region="auto", **STEPS)


def test_cli_region_auto(glyph, tmp_path, capsys):
    from safetext.models.glyph import save_glyph_pipeline

    model = tmp_path / "model"
    save_glyph_pipeline(glyph, model, fp16=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["edit", PROMPT, "--from", "stop", "--to", "go", "--model", str(model), "--steps", "2",
                              "--no-ocr", "--region", "auto", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    region = json.loads((tmp_path / "out" / "metrics.json").read_text())["region"]
    assert region["kind"] == "auto"
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["region"] == region


def test_region_mask_cannot_make_an_auto_region_before_the_run(glyph):
    from safetext.edit.region import region_mask

    with pytest.raises(RegionError, match="found from the original run's attention, inside edit_text"):
        region_mask(glyph, "auto", 16, 32)


def test_word_attention_in_head_chunks_equals_all_heads_at_once(monkeypatch):
    pipe = TINY_BUILDERS["sd3"]()
    kwargs = {**TINY_CALL_KWARGS["sd3"], "num_inference_steps": 2}
    positions = text_token_positions(pipe, "a sign that says stop here", "stop")
    assert int(pipe.transformer.transformer_blocks[0].attn.heads) > 1

    def record() -> dict:
        recorder = WordAttention(attention_taps(pipe), positions)
        with installed(recorder, recorder.register):
            pipe("a sign that says stop here", generator=torch.Generator().manual_seed(0), **kwargs)
        return recorder.sums

    whole = record()
    monkeypatch.setattr("safetext.edit.attention.WORD_ATTENTION_CHUNK", 1)  # one head at a time
    chunked = record()
    assert whole.keys() == chunked.keys()
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-5, atol=1e-7)

