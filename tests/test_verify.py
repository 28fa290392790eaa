"""Closed-loop verification: OCR re-check of generated images and escalation (issue 6, part 1).

A random-weight model writes nothing legible, so the OCR here is a deterministic stand-in that "reads"
a toxic word exactly when the image is the unguarded rendering of the toxic prompt — which is what a
real OCR would see when the patch was ineffective.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from prometheus_client import CollectorRegistry

from safetext.errors import PolicyError, PolicyViolation
from safetext.generator import SafeTextGenerator
from safetext.patching import KVPatch, LayerMap, discover_text_layers
from safetext.policy import load_policy
from safetext.policy.verdict import Action
from safetext.telemetry import SafetextMetrics
from safetext.verify import ImageVerifier
from tests.tiny_pipelines import build_tiny_glyph

TOXIC = 'A red sign that says "shit".'
CLEAN = 'A red sign that says "hello".'
KW = dict(num_inference_steps=3, output_type="pt")


@dataclass
class _Read:
    text: str


class ImageLookupOcr:
    """Reads `word` on images bit-equal to one of `toxic_images`, 'peace' on anything else."""

    def __init__(self, toxic_images, word="shit"):
        self.toxic_images = list(toxic_images)
        self.word = word
        self.reads = 0

    def read(self, image):
        self.reads += 1
        return _Read(self.word if any(torch.equal(image, t) for t in self.toxic_images) else "peace")


class AlwaysOcr:
    def __init__(self, text):
        self.text = text

    def read(self, image):
        return _Read(self.text)


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


def call(fn, prompt, seed=0):
    return fn(prompt, generator=torch.Generator().manual_seed(seed), **KW)


def run(fn, prompt, seed=0):
    return call(fn, prompt, seed).images


def test_ineffective_patch_is_caught_and_escalated_to_an_earlier_start(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)][:2]
    # patches the last of the 3 steps only; the OCR stand-in reads the toxic word on exactly that image
    ineffective = LayerMap.for_model(pipe, layers, 0.6, name="too-late")
    raw = run(pipe, TOXIC)
    weak = call(SafeTextGenerator(pipe, policy="default", layer_map=ineffective), TOXIC)
    assert weak.verdict.details["patched_steps"] == 1
    ocr = ImageLookupOcr([weak.images[0]])
    gen = SafeTextGenerator(pipe, policy="default", layer_map=ineffective, verifier=ImageVerifier(load_policy("default"), ocr))
    out = call(gen, TOXIC)
    steps = out.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["earlier_start"]
    assert steps[0]["start_step"] == 0 and steps[0]["toxic_after"] is False and steps[0]["layers"] == layers
    # the re-run starts from the same noise as the user's call: equal to patching from step 0 directly
    expected, _ = KVPatch(pipe, layers, 0.0).generate(prompt=TOXIC, target_prompt=out.verdict.sanitized_prompt, generator=torch.Generator().manual_seed(0), **KW)
    assert torch.equal(out.images, expected.images)
    assert not torch.equal(out.images, raw)
    assert out.verdict.details["verification"][0]["toxic"] is False
    assert ocr.reads == 2


def test_escalation_runs_every_step_then_blocks_and_counts_metrics(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)][:1]
    metrics = SafetextMetrics(CollectorRegistry())
    gen = SafeTextGenerator(
        pipe, policy="default", layer_map=LayerMap.for_model(pipe, layers, 0.5), metrics=metrics,
        verifier=ImageVerifier(load_policy("default"), AlwaysOcr("SHIT")),
    )
    with pytest.raises(PolicyViolation, match="still visible in the generated image") as info:
        run(gen, TOXIC)
    verdict = info.value.verdict
    assert verdict.action is Action.BLOCK
    assert [s["step"] for s in verdict.details["escalations"]] == ["earlier_start", "all_layers", "block"]
    assert verdict.details["escalations"][1]["layers"] == [layer.name for layer in discover_text_layers(pipe)]
    assert verdict.details["verification"][0]["categories"] == ["profanity"]
    assert "SHIT" not in verdict.to_json()  # the text read is hashed, not stored
    for step in ("earlier_start", "all_layers", "block"):
        assert metrics.registry.get_sample_value("safetext_escalations_total", {"step": step}) == 1.0
    assert metrics.registry.get_sample_value("safetext_requests_total", {"decision": "block"}) == 1.0
    # after the refusal, the next clean call is bit-identical to the raw pipeline (no hooks left behind)
    gen.verifier = ImageVerifier(load_policy("default"), AlwaysOcr("hello"))
    assert torch.equal(run(gen, CLEAN), run(pipe, CLEAN))


def test_allowed_prompt_with_toxic_text_in_the_image_goes_straight_to_block(pipe):
    gen = SafeTextGenerator(pipe, policy="default", verifier=ImageVerifier(load_policy("default"), AlwaysOcr("fuck")))
    with pytest.raises(PolicyViolation) as info:
        run(gen, CLEAN)
    assert [s["step"] for s in info.value.verdict.details["escalations"]] == ["block"]


def test_clean_image_passes_unchanged_and_check_allowed_off_skips_ocr(pipe):
    ocr = ImageLookupOcr([])
    gen = SafeTextGenerator(pipe, policy="default", verifier=ImageVerifier(load_policy("default"), ocr))
    out = call(gen, CLEAN)
    assert torch.equal(out.images, run(pipe, CLEAN))
    assert out.verdict.details["escalations"] == [] and ocr.reads == 1
    quiet = SafeTextGenerator(pipe, policy="default", verifier=ImageVerifier(load_policy("default"), ocr, check_allowed=False))
    run(quiet, CLEAN)
    assert ocr.reads == 1


def test_policy_switches_verification_and_latent_output_is_refused():
    from safetext.verify import output_images

    assert ImageVerifier.from_policy(load_policy("default")) is None
    strict = ImageVerifier.from_policy(load_policy("strict"))
    assert strict is not None and strict.escalation == ("earlier_start", "all_layers", "block")

    class LatentOutput:
        images = torch.zeros(1, 4, 8, 8, 2)  # not an image batch

    with pytest.raises(PolicyError, match="output_type='pil', 'np' or 'pt'"):
        output_images(LatentOutput())
    assert len(output_images(type("Out", (), {"images": torch.zeros(2, 3, 8, 8)})())) == 2


def test_ineffective_patch_with_block_only_escalation_refuses(pipe):
    layers = [layer.name for layer in discover_text_layers(pipe)][:2]
    ineffective = LayerMap.for_model(pipe, layers, 0.6, name="too-late")
    weak = call(SafeTextGenerator(pipe, policy="default", layer_map=ineffective), TOXIC).images
    ocr = ImageLookupOcr([weak[0]])  # reads the toxic word only on the weakly patched rendering
    gen = SafeTextGenerator(pipe, policy="default", layer_map=ineffective, verifier=ImageVerifier(load_policy("default"), ocr, escalation=("block",)))
    with pytest.raises(PolicyViolation) as info:
        call(gen, TOXIC)
    assert info.value.verdict.action is Action.BLOCK
    assert [s["step"] for s in info.value.verdict.details["escalations"]] == ["block"]
    assert info.value.verdict.details["patched_steps"] == 1  # the map patched the last step only
