"""KVPatch on every tiny pipeline: bit-identity where promised, only the mapped layers change, clean-up."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from peft import LoraConfig
from torch import nn

from safetext.errors import LayerMapError, PatchError
from safetext.patching import KVPatch, discover_text_layers, find_denoiser, record_denoiser_inputs, start_step_for
from safetext.patching.adapters.base import bias_from_padding_mask
from safetext.patching.hooks import active_owner
from tests.tiny_pipelines import TINY_CALL_KWARGS, build_sd15

PROMPT = 'A sign that says "hello"'
TARGET = 'A sign that says "world"'


def generate(pipe, kwargs, prompt=PROMPT, seed=0):
    return pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **kwargs).images


def patched(patch, kwargs, prompt=PROMPT, target=TARGET, seed=0):
    out, report = patch.generate(
        prompt=prompt, target_prompt=target, generator=torch.Generator().manual_seed(seed), **kwargs
    )
    return out.images, report


def hook_ids(pipe) -> dict:
    """Ids of every forward hook and pre-hook on every module of every component."""
    ids = {}
    for component_name, component in pipe.components.items():
        if isinstance(component, nn.Module):
            for name, module in component.named_modules():
                ids[(component_name, name)] = (tuple(module._forward_hooks), tuple(module._forward_pre_hooks))
    return ids


@pytest.fixture
def raw(tiny_pipe, tiny_call_kwargs):
    return generate(tiny_pipe, tiny_call_kwargs)


def test_start_step_is_exact_for_paper_fractions():
    assert start_step_for(0.08, 50) == 4  # SDXL: 0.08 * 50 is 4.000000000000001 in floating point
    assert start_step_for(2 / 28, 28) == 2  # SD3
    assert start_step_for(0.04, 50) == 2  # IF
    assert start_step_for(0.08, 20) == 2  # ceil(1.6)
    assert start_step_for(0.0, 20) == 0
    assert start_step_for(1.0, 20) == 20
    with pytest.raises(LayerMapError, match=r"start_fraction must be in \[0, 1\]"):
        KVPatch(build_sd15(), start_fraction=1.5)


def test_self_target_is_bit_identical_and_leaves_no_hooks(tiny_pipe, tiny_call_kwargs, raw):
    before = hook_ids(tiny_pipe)
    patch = KVPatch(tiny_pipe)
    images, report = patched(patch, tiny_call_kwargs, target=PROMPT)
    assert torch.equal(images, raw)
    assert report.patched_steps == report.total_steps == tiny_call_kwargs["num_inference_steps"]
    assert report.start_step == 0
    assert hook_ids(tiny_pipe) == before
    assert active_owner() is None


def test_other_target_changes_the_image(tiny_pipe, tiny_call_kwargs, raw):
    before = hook_ids(tiny_pipe)
    images, report = patched(KVPatch(tiny_pipe), tiny_call_kwargs)
    assert not torch.equal(images, raw)
    assert report.patched_prompts == (0,)
    assert hook_ids(tiny_pipe) == before


def test_start_past_the_last_step_is_bit_identical(tiny_pipe, tiny_call_kwargs, raw):
    images, report = patched(KVPatch(tiny_pipe, start_fraction=1.0), tiny_call_kwargs)
    assert torch.equal(images, raw)
    assert report.patched_steps == 0 and report.start_step == tiny_call_kwargs["num_inference_steps"]


def test_in_a_batch_only_the_patched_prompt_changes(tiny_pipe, tiny_call_kwargs):
    raw = generate(tiny_pipe, tiny_call_kwargs, prompt=[PROMPT, TARGET])
    kwargs = dict(tiny_call_kwargs, prompt=[PROMPT, TARGET], generator=torch.Generator().manual_seed(0))
    out, report = KVPatch(tiny_pipe).run(kwargs, {"prompt": [PROMPT, PROMPT]}, patched_prompts=[1])
    assert report.patched_prompts == (1,)
    assert torch.equal(out.images[0], raw[0])
    assert not torch.equal(out.images[1], raw[1])


def _observe_projections(pipe, layers):
    """Register observers of every text K/V projection; returns (records, handles). Records: name -> [outputs]."""
    denoiser = find_denoiser(pipe)
    records: dict[str, list[torch.Tensor]] = {}
    handles = []
    for layer in layers:
        for name in (layer.key, layer.value):
            records[name] = []
            handles.append(
                denoiser.get_submodule(name).register_forward_hook(
                    lambda m, a, o, n=name: records[n].append(o.detach().clone())
                )
            )
    return records, handles


def _run_observed(pipe, kwargs, layers, patch=None):
    """Two-prompt batch (so joint models patch with extra rows, one denoiser call per step); the patch,
    if any, targets prompt 1 only. Returns the K/V outputs of ``layers`` per denoiser call."""
    records, handles = _observe_projections(pipe, layers)  # observers run after the patch's prepended hooks
    call = dict(kwargs, prompt=[PROMPT, PROMPT], generator=torch.Generator().manual_seed(0))
    try:
        if patch is None:
            pipe(**call)
            report = None
        else:
            _, report = patch.run(call, {"prompt": [PROMPT, TARGET]}, patched_prompts=[1])
    finally:
        for handle in handles:
            handle.remove()
    return records, report


def test_only_the_mapped_layers_keys_and_values_change(tiny_pipe, tiny_call_kwargs):
    layers = discover_text_layers(tiny_pipe)
    mapped = layers[-1]
    patch = KVPatch(tiny_pipe, layers=[mapped.name])
    raw, _ = _run_observed(tiny_pipe, tiny_call_kwargs, layers)
    got, _ = _run_observed(tiny_pipe, tiny_call_kwargs, layers, patch)
    for layer in layers:
        for name in (layer.key, layer.value):
            rows = raw[name][0].shape[0]
            assert len(raw[name]) == len(got[name])
            if patch.adapter.strategy == "inject":
                # text K/V depend on the prompt only: unmapped layers are equal at every step; the mapped
                # layer differs in the patched prompt's conditional row only
                for before, after in zip(raw[name], got[name], strict=True):
                    if layer is mapped:
                        assert torch.equal(before[: rows - 1], after[: rows - 1]) and not torch.equal(
                            before[-1], after[-1]
                        )
                    else:
                        assert torch.equal(before, after), name
                continue
            first_raw, first_got = raw[name][0], got[name][0][:rows]
            assert torch.equal(first_raw[: rows - 1], first_got[: rows - 1]), name  # unpatched rows untouched
            if layer is not mapped:
                assert torch.equal(first_raw, first_got), name  # before the mapped layer nothing differs yet
            elif layer.text_prefix_only:
                tokens = 32  # Flux single-stream: only the text rows [:L_text] of to_k/to_v are swapped
                assert not torch.equal(first_raw[-1, :tokens], first_got[-1, :tokens])
                assert torch.equal(first_raw[-1, tokens:], first_got[-1, tokens:])
            else:
                assert not torch.equal(first_raw[-1], first_got[-1]), name


def test_start_fraction_patches_from_the_computed_step(tiny_pipe, tiny_call_kwargs):
    layers = discover_text_layers(tiny_pipe)
    patch = KVPatch(tiny_pipe, layers=[layers[-1].index], start_fraction=0.5)
    raw, _ = _run_observed(tiny_pipe, tiny_call_kwargs, layers[-1:])
    got, report = _run_observed(tiny_pipe, tiny_call_kwargs, layers[-1:], patch)
    assert (report.start_step, report.total_steps, report.patched_steps) == (2, 4, 2)
    assert report.layer_indices == (layers[-1].index,)
    key = layers[-1].key
    rows = raw[key][0].shape[0]
    assert len(raw[key]) == len(got[key]) == 4  # one denoiser call per step
    for step in range(2):  # steps 0 and 1 run unpatched: same latents, same K/V as the raw run
        assert torch.equal(raw[key][step], got[key][step])
    for step in range(2, 4):
        assert got[key][step].shape[0] == (rows if patch.adapter.strategy == "inject" else rows + 1)
        assert not torch.equal(raw[key][step][-1], got[key][step][rows - 1])


class _Boom(RuntimeError):
    pass


def test_exception_mid_generation_leaves_no_trace(tiny_pipe, tiny_call_kwargs, raw):
    before = hook_ids(tiny_pipe)
    denoiser = find_denoiser(tiny_pipe)
    calls = {"n": 0}

    def explode(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Boom("injected failure inside the denoiser")

    handle = denoiser.register_forward_pre_hook(explode, with_kwargs=True, prepend=True)
    try:
        with pytest.raises(_Boom):
            patched(KVPatch(tiny_pipe), tiny_call_kwargs)
    finally:
        handle.remove()
    assert hook_ids(tiny_pipe) == before
    assert active_owner() is None
    assert torch.equal(generate(tiny_pipe, tiny_call_kwargs), raw)
    images, _ = patched(KVPatch(tiny_pipe), tiny_call_kwargs, target=PROMPT)
    assert torch.equal(images, raw)


def _same_value(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # objects without a meaningful ==: identity was checked above
        return True


def test_recording_leaves_user_generator_scheduler_and_global_rng_alone(tiny_pipe, tiny_call_kwargs):
    generator = torch.Generator().manual_seed(7)
    global_state = torch.get_rng_state()
    scheduler_state = {k: v for k, v in vars(tiny_pipe.scheduler).items() if not k.startswith("_")}
    scheduler_values = {k: copy.deepcopy(v) for k, v in scheduler_state.items()}
    recorded = record_denoiser_inputs(
        tiny_pipe, find_denoiser(tiny_pipe), dict(tiny_call_kwargs, prompt=[PROMPT, TARGET], generator=generator)
    )
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(7).get_state())
    assert torch.equal(torch.get_rng_state(), global_state)
    for key, value in scheduler_state.items():
        current = getattr(tiny_pipe.scheduler, key)
        assert current is value, key  # no attribute of the shared scheduler was replaced
        assert _same_value(current, scheduler_values[key]), key  # ... nor written into
    assert recorded.total_steps == tiny_call_kwargs["num_inference_steps"]
    sample = recorded.inputs.get("sample", recorded.inputs.get("hidden_states"))
    assert sample.shape[0] == 2  # conditional rows only: the recording runs without guidance


def test_unknown_layer_names_are_refused_with_the_valid_list(tiny_pipe):
    with pytest.raises(LayerMapError) as info:
        KVPatch(tiny_pipe, layers=["not.a.layer"])
    assert "no text-attention layer 'not.a.layer'" in str(info.value)
    assert discover_text_layers(tiny_pipe)[0].name in str(info.value)


@pytest.mark.parametrize("tiny_pipe", ["pixart"], indirect=True)
def test_pixart_patched_layers_get_the_targets_padding_bias(tiny_pipe, tiny_call_kwargs):
    short, long = "a", 'a red sign that says "hello world" on a street'
    layers = discover_text_layers(tiny_pipe)
    denoiser = find_denoiser(tiny_pipe)
    seen: dict[str, list[torch.Tensor]] = {layer.name: [] for layer in layers}

    class RecordingProcessor:
        def __init__(self, inner, name):
            self.inner, self.name = inner, name

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
            seen[self.name].append(attention_mask.clone())
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)

    originals = {layer.name: denoiser.get_submodule(layer.name).processor for layer in layers}
    for layer in layers:
        denoiser.get_submodule(layer.name).set_processor(RecordingProcessor(originals[layer.name], layer.name))
    try:
        patched(KVPatch(tiny_pipe, layers=[layers[0].name]), tiny_call_kwargs, prompt=long, target=short)
    finally:
        for layer in layers:
            denoiser.get_submodule(layer.name).set_processor(originals[layer.name])
    recorded = record_denoiser_inputs(tiny_pipe, denoiser, dict(tiny_call_kwargs, prompt=short))
    target_bias = bias_from_padding_mask(recorded.inputs["encoder_attention_mask"], torch.float32)
    user = record_denoiser_inputs(tiny_pipe, denoiser, dict(tiny_call_kwargs, prompt=long)).inputs[
        "encoder_attention_mask"
    ]
    user_bias = bias_from_padding_mask(user, torch.float32)
    assert not torch.equal(target_bias, user_bias)  # the two prompts pad differently
    patched_bias, unpatched_bias = seen[layers[0].name][0], seen[layers[1].name][0]
    assert patched_bias.shape == unpatched_bias.shape == (2, 1, target_bias.shape[-1])  # [uncond | cond]
    assert torch.equal(patched_bias[1], target_bias[0])  # patched layer, conditional row: the target's padding
    assert torch.equal(unpatched_bias[1], user_bias[0])  # unpatched layer: the prompt's own padding
    assert torch.equal(patched_bias[0], unpatched_bias[0])  # unconditional row untouched


def test_lora_wrapped_projections_include_the_delta():
    pipe = build_sd15()  # a private pipeline: the shared ones must not keep adapters
    kwargs = TINY_CALL_KWARGS["sd15"]
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_k", "to_v"]))
    lora_raw = generate(pipe, kwargs)
    patch = KVPatch(pipe)
    images, report = patched(patch, kwargs, target=PROMPT)
    assert torch.equal(images, lora_raw)  # the target K/V went through the LoRA layers too
    assert report.lora_layers == tuple(layer.name for layer in discover_text_layers(pipe))
    assert not torch.equal(patched(patch, kwargs)[0], lora_raw)
    pipe.unet.disable_adapters()
    plain = generate(pipe, kwargs)
    assert not torch.equal(plain, lora_raw)  # the delta matters, and the hooked module follows its state
    images, _ = patched(patch, kwargs, target=PROMPT)
    assert torch.equal(images, plain)


@pytest.mark.parametrize("tiny_pipe", ["sd3", "pixart"], indirect=True)
def test_target_encoded_to_another_length_is_refused(tiny_pipe, tiny_call_kwargs):
    kwargs = dict(tiny_call_kwargs, prompt=PROMPT, generator=torch.Generator().manual_seed(0))
    with pytest.raises(PatchError, match="pad prompts to a fixed length"):
        KVPatch(tiny_pipe).run(kwargs, {"prompt": TARGET, "max_sequence_length": 16})
    with pytest.raises(PatchError, match="out of range"):
        KVPatch(tiny_pipe).run(kwargs, {"prompt": TARGET}, patched_prompts=[1])


def _denoiser_batches(pipe, run) -> list[int]:
    """Rows of every denoiser forward made by ``run()``, seen by the first text layer's key projection
    (after the patch has appended its rows; the recording stops before any layer runs)."""
    first = find_denoiser(pipe).get_submodule(discover_text_layers(pipe)[0].key)
    sizes: list[int] = []

    def observe(module, args):
        sizes.append(int(args[0].shape[0]))

    handle = first.register_forward_pre_hook(observe)
    try:
        run()
    finally:
        handle.remove()
    return sizes


@pytest.mark.parametrize("tiny_pipe", ["flux"], indirect=True)
def test_one_row_joint_call_patches_with_one_extra_row_in_the_same_call(tiny_pipe, tiny_call_kwargs, raw):
    steps = tiny_call_kwargs["num_inference_steps"]
    patch = KVPatch(tiny_pipe, start_fraction=0.5)
    raw_sizes = _denoiser_batches(tiny_pipe, lambda: generate(tiny_pipe, tiny_call_kwargs))
    images = []
    sizes = _denoiser_batches(tiny_pipe, lambda: images.append(patched(patch, tiny_call_kwargs)))
    (image, report), = images
    assert raw_sizes == [1] * steps
    # one forward per step: unpatched steps keep their single row, patched ones carry the target's as a second row
    assert sizes == [1] * report.start_step + [2] * (steps - report.start_step) and report.start_step == steps // 2
    assert not torch.equal(image, raw)
    self_sizes = _denoiser_batches(tiny_pipe, lambda: images.append(patched(patch, tiny_call_kwargs, target=PROMPT)))
    assert self_sizes == [1] * steps  # the target is the prompt itself: nothing to swap, no extra row
    assert torch.equal(images[-1][0], raw)


@pytest.mark.parametrize("tiny_pipe", ["sd3"], indirect=True)
def test_self_target_runs_no_extra_rows_under_cfg(tiny_pipe, tiny_call_kwargs, raw):
    patch = KVPatch(tiny_pipe)
    images = []
    steps = tiny_call_kwargs["num_inference_steps"]
    sizes = _denoiser_batches(tiny_pipe, lambda: images.append(patched(patch, tiny_call_kwargs, target=PROMPT)))
    assert sizes == [2] * steps and torch.equal(images[0][0], raw)  # [uncond | cond], no target row
    sizes = _denoiser_batches(tiny_pipe, lambda: images.append(patched(patch, tiny_call_kwargs)))
    assert sizes == [3] * steps and not torch.equal(images[1][0], raw)


def test_row_replacement_concatenates_only_for_the_last_rows():
    from safetext.patching.session import _replace_rows, tail_start

    assert tail_start([2, 3], 4) == 2 and tail_start([3], 4) == 3
    assert tail_start([2], 4) is None and tail_start([3, 2], 4) is None and tail_start([0, 1], 4) is None
    tensor, values = torch.randn(4, 5, 3), torch.randn(2, 5, 3)
    rows = torch.tensor([2, 3])
    expected = tensor.index_copy(0, rows, values)
    assert torch.equal(_replace_rows(tensor, rows, values, tail_start([2, 3], 4)), expected)
    assert torch.equal(_replace_rows(tensor, torch.tensor([0, 1]), values, None), tensor.index_copy(0, torch.tensor([0, 1]), values))
