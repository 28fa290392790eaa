"""SafeTextGenerator on every tiny pipeline: clean = untouched pipeline, flagged = patched, verdicts, errors."""

from __future__ import annotations

import re
import threading
import traceback

import pytest
import torch
from torch import nn

from safetext.errors import (
    LayerMapError,
    PatchError,
    PatchNotAppliedError,
    PolicyError,
    PolicyViolation,
    UnsupportedArchitectureError,
)
from safetext.generator import SafeTextGenerator
from safetext.patching import LayerMap, find_denoiser
from safetext.patching.hooks import active_owner
from safetext.policy.verdict import Action, Finding, Verdict
from tests.tiny_pipelines import TINY_CALL_KWARGS, build_sd15

CLEAN = 'A sign that says "hello"'
FLAGGED = 'A sign that says "damn"'
SANITIZED = 'A sign that says "world"'


class WordSwapPolicy:
    """A minimal policy: neutralizes a few words (swapping in a benign one) and blocks others."""

    name = "word-swap-test"

    def __init__(self, swaps=None, blocked=("forbidden",)):
        self.swaps = swaps or {"damn": "world", "heck": "hello"}
        self.blocked = set(blocked)

    def scan(self, text: str, slot: str = "prompt") -> Verdict:
        findings = []
        for match in re.finditer(r"[A-Za-z]+", text):
            word = match.group(0).lower()
            if word in self.swaps or word in self.blocked:
                action = Action.BLOCK if word in self.blocked else Action.NEUTRALIZE
                findings.append(
                    Finding(
                        rule_id="blocked" if action is Action.BLOCK else "swap",
                        category="profanity",
                        text=match.group(0),
                        start=match.start(),
                        end=match.end(),
                        normalized=word,
                        score=1.0,
                        backend="test",
                        action=action,
                        replacement=self.swaps.get(word),
                        slot=slot,
                    )
                )
        sanitized = text
        for finding in reversed(findings):
            if finding.replacement is not None:
                sanitized = sanitized[: finding.start] + finding.replacement + sanitized[finding.end :]
        action = max((f.action for f in findings), key=lambda a: a.severity, default=Action.ALLOW)
        return Verdict(
            action=action, prompt=text, sanitized_prompt=sanitized, findings=tuple(findings), policy=self.name
        )


def hook_ids(pipe) -> dict:
    """Forward hook and pre-hook ids of every module of every component.

    Take it after the pipeline has run once: transformers registers its own output-capturing hooks on
    text encoders the first time hidden states are requested, and keeps them.
    """
    return {
        (c, n): (tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
        for c, comp in pipe.components.items()
        if isinstance(comp, nn.Module)
        for n, m in comp.named_modules()
    }


def run(fn, prompt, kwargs, seed=0, **extra):
    return fn(prompt, generator=torch.Generator().manual_seed(seed), **kwargs, **extra)


@pytest.fixture
def gen(tiny_pipe):
    return SafeTextGenerator(tiny_pipe, policy=WordSwapPolicy())


def test_clean_prompt_runs_the_untouched_pipeline(tiny_pipe, tiny_call_kwargs, gen):
    raw = run(tiny_pipe, CLEAN, tiny_call_kwargs).images
    before = hook_ids(tiny_pipe)
    calls = []
    probe = find_denoiser(tiny_pipe).register_forward_pre_hook(lambda m, a: calls.append(len(m._forward_pre_hooks)))
    try:
        out = run(gen, CLEAN, tiny_call_kwargs)
    finally:
        probe.remove()
    assert set(calls) == {1}  # only the probe itself: no safetext hook was registered
    assert torch.equal(out.images, raw)
    assert out.verdict.action is Action.ALLOW and out.verdict.findings == ()
    assert set(out.verdict.details) == {"timings"}
    assert hook_ids(tiny_pipe) == before


def test_flagged_prompt_is_patched_toward_the_sanitized_prompt(tiny_pipe, tiny_pipe_name, tiny_call_kwargs, gen):
    raw = run(tiny_pipe, FLAGGED, tiny_call_kwargs).images
    before = hook_ids(tiny_pipe)
    out = run(gen, FLAGGED, tiny_call_kwargs)
    assert not torch.equal(out.images, raw)
    verdict = out.verdict
    assert verdict.action is Action.NEUTRALIZE and verdict.sanitized_prompt == SANITIZED
    details = verdict.details
    assert details["layers"] == [layer.name for layer in gen.resolved.layers]
    assert details["layer_map_source"] == "fallback" and details["layer_map"] == "all-text-layers"
    assert details["family"] == gen.patch.adapter.family
    assert (details["start_step"], details["total_steps"], details["patched_steps"]) == (0, 4, 4)
    assert details["patched_prompts"] == [0]
    assert set(details["timings"]) == {"scan_seconds", "patch_overhead_seconds", "generation_seconds"}
    assert any("no layer map for" in note for note in verdict.notes)
    assert hook_ids(tiny_pipe) == before
    # the same patch with the pipeline's own prompt as target reproduces the raw image exactly
    same = SafeTextGenerator(tiny_pipe, policy=WordSwapPolicy({"damn": "damn"}))
    assert torch.equal(run(same, FLAGGED, tiny_call_kwargs).images, raw)


def test_start_past_the_last_step_is_refused_before_generating(tiny_pipe, tiny_call_kwargs):
    """Zero patched steps never end in a neutralize verdict: the request fails before the denoiser runs."""
    layer_map = LayerMap.for_model(tiny_pipe, [0], 1.0, name="late")
    gen = SafeTextGenerator(tiny_pipe, policy=WordSwapPolicy(), layer_map=layer_map)
    reference = run(tiny_pipe, CLEAN, tiny_call_kwargs).images
    calls = []
    probe = find_denoiser(tiny_pipe).register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        with pytest.raises(PatchNotAppliedError, match=r"no denoising step would be patched: .* step 4 .* 4-step run"):
            run(gen, FLAGGED, tiny_call_kwargs)
    finally:
        probe.remove()
    assert calls == []
    assert torch.equal(run(gen, CLEAN, tiny_call_kwargs).images, reference)


def test_batch_patches_only_the_flagged_prompt(tiny_pipe, tiny_call_kwargs, gen):
    out = run(gen, [CLEAN, FLAGGED], tiny_call_kwargs)
    raw = run(tiny_pipe, [CLEAN, FLAGGED], tiny_call_kwargs).images
    assert torch.equal(out.images[0], raw[0])
    assert not torch.equal(out.images[1], raw[1])
    verdict = out.verdict
    assert verdict.action is Action.NEUTRALIZE and verdict.details["patched_prompts"] == [1]
    assert [f.slot for f in verdict.findings] == ["prompt[1]"]
    assert [p["action"] for p in verdict.details["prompts"]] == ["allow", "neutralize"]


@pytest.mark.parametrize("tiny_pipe", ["sd15"], indirect=True)
def test_positional_prompt_tuple_output_and_images_per_prompt(tiny_pipe, tiny_call_kwargs, gen):
    out = gen(FLAGGED, generator=torch.Generator().manual_seed(0), return_dict=False, **tiny_call_kwargs)
    assert isinstance(out, tuple) and out.verdict.action is Action.NEUTRALIZE
    assert torch.equal(out[0], run(gen, FLAGGED, tiny_call_kwargs).images)
    two = run(gen, [CLEAN, FLAGGED], tiny_call_kwargs, num_images_per_prompt=2)
    raw = run(tiny_pipe, [CLEAN, FLAGGED], tiny_call_kwargs, num_images_per_prompt=2).images
    assert (
        torch.equal(two.images[:2], raw[:2])
        and not torch.equal(two.images[2], raw[2])
        and not torch.equal(two.images[3], raw[3])
    )


@pytest.mark.parametrize("tiny_pipe", ["sdxl"], indirect=True)
def test_every_prompt_slot_is_guarded(tiny_pipe, tiny_call_kwargs, gen):
    assert gen.prompt_slots == ("prompt", "prompt_2")
    out = run(gen, CLEAN, tiny_call_kwargs, prompt_2=FLAGGED)
    assert out.verdict.action is Action.NEUTRALIZE
    assert [f.slot for f in out.verdict.findings] == ["prompt_2"]
    assert out.verdict.details["sanitized_prompts"] == {"prompt": CLEAN, "prompt_2": SANITIZED}
    assert not torch.equal(out.images, run(tiny_pipe, CLEAN, tiny_call_kwargs, prompt_2=FLAGGED).images)
    # negative prompts steer away from content and are not rendered: not scanned
    clean = run(gen, CLEAN, tiny_call_kwargs, negative_prompt=FLAGGED)
    assert clean.verdict.action is Action.ALLOW
    assert torch.equal(clean.images, run(tiny_pipe, CLEAN, tiny_call_kwargs, negative_prompt=FLAGGED).images)


@pytest.mark.parametrize("tiny_pipe", ["sd15"], indirect=True)
def test_block_raises_policy_violation_with_the_verdict(tiny_pipe, tiny_call_kwargs, gen):
    run(tiny_pipe, CLEAN, tiny_call_kwargs)
    before = hook_ids(tiny_pipe)
    with pytest.raises(PolicyViolation) as info:
        run(gen, [CLEAN, 'A sign that says "forbidden"'], tiny_call_kwargs)
    assert info.value.verdict.action is Action.BLOCK
    assert "blocked by policy 'word-swap-test' (rule(s): blocked)" in str(info.value)
    assert [f.slot for f in info.value.verdict.findings] == ["prompt[1]"]
    assert hook_ids(tiny_pipe) == before


@pytest.mark.parametrize("tiny_pipe", ["sd15"], indirect=True)
def test_prompt_embeds_are_refused_unless_allowed(tiny_pipe, tiny_call_kwargs, gen):
    embeds, negative = tiny_pipe.encode_prompt(CLEAN, "cpu", 1, True)
    with pytest.raises(PolicyError, match="prompt_embeds passed: precomputed prompt embeddings cannot be scanned"):
        gen(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            generator=torch.Generator().manual_seed(0),
            **tiny_call_kwargs,
        )
    allowing = SafeTextGenerator(tiny_pipe, policy=WordSwapPolicy(), allow_prompt_embeds=True)
    out = allowing(
        prompt_embeds=embeds,
        negative_prompt_embeds=negative,
        generator=torch.Generator().manual_seed(0),
        **tiny_call_kwargs,
    )
    raw = tiny_pipe(
        prompt_embeds=embeds,
        negative_prompt_embeds=negative,
        generator=torch.Generator().manual_seed(0),
        **tiny_call_kwargs,
    )
    assert torch.equal(out.images, raw.images)
    assert out.verdict.action is Action.ALLOW and "not scanned" in out.verdict.notes[0]
    with pytest.raises(PolicyError, match="`prompt` must be a string or a list of strings"):
        gen(prompt=3, **tiny_call_kwargs)


@pytest.mark.parametrize("tiny_pipe", ["sd15"], indirect=True)
def test_exception_mid_generation_then_clean_call_is_bit_identical(tiny_pipe, tiny_call_kwargs, gen):
    reference = run(tiny_pipe, CLEAN, tiny_call_kwargs).images
    before = hook_ids(tiny_pipe)
    seen = {"calls": 0}

    def fail_on_second_step(module, args):
        seen["calls"] += 1
        if seen["calls"] == 2:
            raise RuntimeError("injected failure inside the denoiser")

    handle = find_denoiser(tiny_pipe).mid_block.register_forward_pre_hook(fail_on_second_step)
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            run(gen, FLAGGED, tiny_call_kwargs)
    finally:
        handle.remove()
    assert hook_ids(tiny_pipe) == before and active_owner() is None
    assert torch.equal(run(gen, CLEAN, tiny_call_kwargs).images, reference)
    assert torch.equal(run(tiny_pipe, CLEAN, tiny_call_kwargs).images, reference)



def interleave_clean_and_flagged(gen, kwargs: dict, calls: int, run_call) -> dict[str, list]:
    """Two threads call ``gen`` ``calls`` times each, one with CLEAN and one with FLAGGED, started
    together at every call (a barrier); the images per prompt and any tracebacks (``errors``)."""
    barrier = threading.Barrier(2)
    results: dict[str, list] = {"clean": [], "flagged": [], "errors": []}

    def worker(prompt: str, key: str) -> None:
        try:
            for _ in range(calls):
                barrier.wait()
                results[key].append(run_call(gen, prompt, kwargs).images)
        except Exception:  # surfaced by the caller's assertion, with its traceback
            results["errors"].append(traceback.format_exc())
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(CLEAN, "clean")),
        threading.Thread(target=worker, args=(FLAGGED, "flagged")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results

class LockedTokenizer:
    """Serializes every call into a shared tokenizer.

    transformers 5 fast tokenizers mutate their padding/truncation settings on every call, so two
    threads tokenizing at once can get each other's padding (huggingface/transformers#47085): the
    diffusers pipeline itself is then not thread-safe, with or without safetext. The thread test
    guards the tokenizer so that it measures what safetext adds.
    """

    def __init__(self, inner):
        self._inner, self._lock = inner, threading.RLock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._inner(*args, **kwargs)

    def __getattr__(self, name):
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def locked(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


def test_two_threads_share_one_pipeline():
    """One flagged and one clean request at a time on one pipeline, 20 rounds: no cross-talk."""
    pipe = build_sd15()
    object.__setattr__(pipe, "tokenizer", LockedTokenizer(pipe.tokenizer))
    kwargs = dict(TINY_CALL_KWARGS["sd15"], num_inference_steps=2)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())
    clean_reference = run(pipe, CLEAN, kwargs).images
    flagged_reference = run(gen, FLAGGED, kwargs).images
    assert not torch.equal(flagged_reference, run(pipe, FLAGGED, kwargs).images)
    before = hook_ids(pipe)
    results = interleave_clean_and_flagged(gen, kwargs, 20, run)
    assert not results["errors"], results["errors"][0]
    assert len(results["clean"]) == len(results["flagged"]) == 20
    assert all(torch.equal(images, clean_reference) for images in results["clean"])
    assert all(torch.equal(images, flagged_reference) for images in results["flagged"])
    assert hook_ids(pipe) == before


def test_constructor_errors():
    pipe = build_sd15()
    with pytest.raises(LayerMapError, match="strict=True"):
        SafeTextGenerator(pipe, policy=WordSwapPolicy(), strict=True)
    with pytest.raises(LayerMapError, match="no text-attention layer 'up_blocks.9.attn2'"):
        SafeTextGenerator(
            pipe,
            policy=WordSwapPolicy(),
            layer_map=LayerMap.for_model(pipe, [0], 0.0).model_copy(update={"layers": ("up_blocks.9.attn2",)}),
        )
    with pytest.raises(PolicyError, match="policy must be a Policy"):
        SafeTextGenerator(pipe, policy=42)

    class NotADiffusersPipeline:
        def __init__(self):
            self.unet = nn.Linear(2, 2)

        def __call__(self, prompt):
            return prompt

    with pytest.raises(UnsupportedArchitectureError, match="Supported denoisers"):
        SafeTextGenerator(NotADiffusersPipeline(), policy=WordSwapPolicy())
    pipe.unet.fuse_qkv_projections()
    try:
        with pytest.raises(PatchError, match="unfuse_qkv_projections"):
            SafeTextGenerator(pipe, policy=WordSwapPolicy())
    finally:
        pipe.unet.unfuse_qkv_projections()


def test_default_policy_end_to_end():
    pipe = build_sd15()
    kwargs = TINY_CALL_KWARGS["sd15"]
    gen = SafeTextGenerator(pipe)  # the shipped default policy
    out = run(gen, 'A sign that says "shit"', kwargs)
    assert out.verdict.policy == "default" and out.verdict.action is Action.NEUTRALIZE
    assert "shit" not in out.verdict.sanitized_prompt
    assert not torch.equal(out.images, run(pipe, 'A sign that says "shit"', kwargs).images)
    assert torch.equal(run(gen, CLEAN, kwargs).images, run(pipe, CLEAN, kwargs).images)
