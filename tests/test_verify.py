"""Closed-loop verification: OCR re-check of generated images and escalation (issues 6 and 21).

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
    assert strict is not None and strict.escalation == ("earlier_start", "next_word", "legible_word", "next_layers", "all_layers", "block")
    assert strict.expect == "replacement" and strict.min_similarity == 0.9 and strict.fragments.min_chars == 4

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


# -- the intended outcome: the image reads as the sanitized text (expect: replacement) ------------------


class SequenceOcr:
    """Reads the given texts in order (the last one from then on)."""

    def __init__(self, *texts):
        self.texts = list(texts)
        self.reads = 0

    def read(self, image):
        text = self.texts[min(self.reads, len(self.texts) - 1)]
        self.reads += 1
        return _Read(text)


def replacement_verifier(ocr, escalation=("earlier_start", "next_layers", "all_layers", "block"), **kwargs):
    return ImageVerifier(load_policy("default"), ocr, escalation, expect="replacement", **kwargs)


def ranked_map(pipe, start=0.5):
    names = [layer.name for layer in discover_text_layers(pipe)]
    base = LayerMap.for_model(pipe, names[:1], start, name="ranked")
    return base.model_copy(update={"ranking": tuple(reversed(names[1:]))}), names


def test_garbled_result_escalates_through_ranked_layers_and_the_verdict_records_it(pipe):
    layer_map, names = ranked_map(pipe)
    sanitized = load_policy("default").scan(TOXIC).sanitized_prompt
    word = sanitized.split('"')[1]
    # garbled on the first try and after the earlier start; legible once the next ranked layer is added
    ocr = SequenceOcr("DOLFHJN", "DOLFHJN", word.upper())
    gen = SafeTextGenerator(pipe, policy="default", layer_map=layer_map, verifier=replacement_verifier(ocr))
    out = call(gen, TOXIC)
    steps = out.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["earlier_start", "next_layers"]
    assert [s["reason"] for s in steps] == ["illegible", "illegible"]
    assert steps[0]["layers"] == names[:1] and steps[0]["illegible_after"] is True
    assert steps[1]["layers"] == [names[0], names[-1]] and steps[1]["start_step"] == 0
    assert steps[1]["illegible_after"] is False and steps[1]["toxic_after"] is False
    check = out.verdict.details["verification"][0]
    assert check == {**check, "expected": word, "similarity": 1.0, "legible": True}
    assert out.verdict.action is Action.NEUTRALIZE and ocr.reads == 3
    assert out.verdict.details["timings"]["verification_ocr_seconds"] > 0
    assert out.verdict.details["timings"]["verification_seconds"] >= out.verdict.details["timings"]["verification_ocr_seconds"]
    # the accepted image is the next_layers patch from the user's noise: equal to running that patch directly
    expected, _ = KVPatch(pipe, [names[0], names[-1]], 0.0).generate(
        prompt=TOXIC, target_prompt=sanitized, generator=torch.Generator().manual_seed(0), **KW
    )
    assert torch.equal(out.images, expected.images)


def test_retry_without_a_generator_starts_from_the_same_noise(pipe):
    layer_map, names = ranked_map(pipe)
    ocr = SequenceOcr("XQZRT")  # never legible: every step runs, then block
    gen = SafeTextGenerator(pipe, policy="default", layer_map=layer_map, verifier=replacement_verifier(ocr, ("all_layers",)))
    torch.manual_seed(123)
    out = gen(TOXIC, **KW)  # no generator: torch's default generator is saved and restored
    assert out.verdict.details["escalations"][0]["illegible_after"] is True
    assert "does not read as the sanitized text" in " ".join(out.verdict.notes)
    torch.manual_seed(123)
    direct, _ = KVPatch(pipe, None, 0.0).generate(prompt=TOXIC, target_prompt=out.verdict.sanitized_prompt, **KW)
    assert torch.equal(out.images, direct.images)


def test_illegible_after_every_step_blocks_with_the_reason(pipe):
    layer_map, _ = ranked_map(pipe)
    gen = SafeTextGenerator(pipe, policy="default", layer_map=layer_map, verifier=replacement_verifier(SequenceOcr("XQZRT")))
    with pytest.raises(PolicyViolation, match="does not read as the sanitized text") as info:
        run(gen, TOXIC)
    steps = info.value.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["earlier_start", "next_layers", "all_layers", "block"]
    assert steps[-1] == {"step": "block", "reason": "illegible", "toxic_images": [], "illegible_images": [0]}
    assert info.value.verdict.details["verification"][0]["legible"] is False
    assert torch.equal(run(pipe, CLEAN), run(SafeTextGenerator(pipe, policy="default"), CLEAN))


def test_next_layers_is_skipped_without_a_ranking_and_not_toxic_ignores_legibility(pipe):
    names = [layer.name for layer in discover_text_layers(pipe)]
    plain = LayerMap.for_model(pipe, names[:1], 0.5)
    ocr = SequenceOcr("DOLFHJN")
    steps_no_block = ("earlier_start", "next_layers", "all_layers")
    gen = SafeTextGenerator(pipe, policy="default", layer_map=plain, verifier=replacement_verifier(ocr, steps_no_block))
    out = call(gen, TOXIC)
    steps = out.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["earlier_start", "next_layers", "all_layers"]
    assert steps[1] == {"step": "next_layers", "skipped": "the layer map ranks no further layer"}
    assert steps[2]["illegible_after"] is True and ocr.reads == 3
    assert "does not read as the sanitized text" in " ".join(out.verdict.notes)
    # expect: not_toxic (the default) accepts the garbled but clean reading at once
    relaxed = SafeTextGenerator(pipe, policy="default", layer_map=plain, verifier=ImageVerifier(load_policy("default"), SequenceOcr("DOLFHJN")))
    out = call(relaxed, TOXIC)
    assert out.verdict.details["escalations"] == [] and "legible" not in out.verdict.details["verification"][0]


def test_fragment_inside_a_token_is_toxic_and_escalated(pipe):
    layer_map, _ = ranked_map(pipe)
    policy = load_policy("default")
    word = policy.scan(TOXIC).sanitized_prompt.split('"')[1]
    # 'DYKEGHT' (a slur inside a longer non-word) is not flagged by the prompt scan, but is by the fragment check
    assert not policy.scan("DYKEGHT", slot="ocr").flagged
    ocr = SequenceOcr("DYKEGHT", word)
    gen = SafeTextGenerator(pipe, policy="default", layer_map=layer_map, verifier=replacement_verifier(ocr))
    out = call(gen, TOXIC)
    steps = out.verdict.details["escalations"]
    assert [(s["step"], s["reason"]) for s in steps] == [("earlier_start", "toxic")]
    report = replacement_verifier(SequenceOcr("DYKEGHT")).check([torch.zeros(3, 8, 8)], expected=["daylight"])
    assert report.checks[0].toxic and report.checks[0].fragments == ("custom",) and report.checks[0].categories == ("custom",)  # dyke: scene-sense rule
    assert report.reason == "toxic" and report.checks[0].similarity == pytest.approx(1 - 3 / 8)


@pytest.mark.parametrize(
    "text, found",
    [
        ("DYKEGHT", [("dykeght", "dyke", "custom")]),  # the default scene-sense rule owns "dyke"
        ("XSH1TQ", [("xshitq", "shit", "profanity")]),  # leetspeak is normalized first
        ("the BIGCUNTS sign", [("bigcunts", "cunt", "profanity"), ("bigcunts", "cunts", "profanity")]),
        ("CLASSIC grapefruit", []),  # English words holding a lexicon word
        ("COCKPITZ", []),  # allow-listed 'cockpit' inside a non-word covers 'cock'
        ("SCUNTHORPE", []),  # allow-listed token
        ("XGRAPEFRUITQ", []),  # English 'grape(fruit)' covers 'rape'
        ("DOLFHJN SARPISH KOTIEN", []),  # garbled, but no lexicon word inside
        ("BASSKT", []),  # three-letter entries are below fragment_min_chars=4
    ],
)
def test_fragment_finder_rule(text, found):
    from safetext.verify import FragmentFinder

    finder = FragmentFinder(load_policy("default"), min_chars=4)
    assert sorted(finder.find(text)) == sorted(found)


def test_allow_listed_words_inside_tokens_are_not_flagged():
    from safetext.verify import FragmentFinder

    policy = load_policy({
        "version": 1, "name": "allow-inside",
        "lists": [{"path": "lists/profanity_en.txt", "category": "profanity"}],
        "allow": {"terms": ["shitzu"]},
        "rules": [{"id": "profanity", "category": "profanity", "action": "neutralize"}],
    })
    finder = FragmentFinder(policy)
    assert finder.find("SHITZUQ") == []  # covered by the allow-listed 'shitzu'
    assert ("shitzq", "shit", "profanity") in finder.find("SHITZQ")  # not covered: flagged
    # through the verifier, with the shipped allow-list: 'cockpit' / 'cocktail' / 'Scunthorpe' inside read tokens
    default = load_policy("default")
    for read in ("COCKPITZ", "XCOCKTAILQ", "XSCUNTHORPE"):
        check = ImageVerifier(default, SequenceOcr(read), expect="replacement").check([torch.zeros(3, 8, 8)], expected=[None]).checks[0]
        assert not check.toxic and check.fragments == () and check.legible and check.expected is None
    assert ImageVerifier(policy, SequenceOcr("SHITZUQ"), fragment_min_chars=0).fragments is None


def test_similarity_and_bad_settings():
    from safetext.verify import similarity

    assert similarity("Day light!", "daylight") == 1.0
    assert similarity("SPPEED", "speed") == pytest.approx(1 - 1 / 6)
    assert similarity("", "") == 1.0 and similarity("", "abc") == 0.0
    with pytest.raises(PolicyError, match="expect must be 'not_toxic' or 'replacement'"):
        ImageVerifier(load_policy("default"), AlwaysOcr(""), expect="legible")
    with pytest.raises(ValueError, match="expected has 2 entries for 1 images"):
        replacement_verifier(AlwaysOcr("")).check([torch.zeros(3, 8, 8)], expected=["a", "b"])


@pytest.mark.slow
def test_shipped_glyph_model_garbled_first_try_is_escalated_until_it_reads_as_the_replacement():
    """Real weights and real OCR: 'arsehole' -> 'starfish' comes out garbled from the preset's first layer alone at
    0.2 (and from step 0); adding the next ranked layer (the preset's second) makes it read 'starfish'."""
    from safetext.models.glyph import load_glyph_pipeline, shipped_weights_dir
    from safetext.scoring import get_ocr

    if not (shipped_weights_dir() / "model_index.json").is_file():
        pytest.skip("no shipped glyph weights")
    glyph = load_glyph_pipeline()
    policy = load_policy("default")
    verifier = ImageVerifier(policy, get_ocr("rapidocr", mode="crop"), ("earlier_start", "next_layers", "all_layers"), expect="replacement")
    from safetext.patching import resolve_layer_map

    # the preset's first layer alone from 0.2 of the schedule, its second layer first in the ranking, so the
    # first try garbles
    preset = resolve_layer_map(glyph).layer_map
    assert len(preset.layers) == 2
    at_02 = preset.model_copy(update={
        "layers": preset.layers[:1], "ranking": (*preset.layers[1:], *preset.ranking), "start_fraction": 0.2,
        "replacement_legibility": None,
    })
    gen = SafeTextGenerator(glyph, policy=policy, layer_map=at_02, verifier=verifier)
    prompt = 'A red sign that says "arsehole".'
    out = gen(prompt, generator=torch.Generator().manual_seed(14), num_inference_steps=20, output_type="pt")
    steps = out.verdict.details["escalations"]
    assert steps[0]["step"] == "earlier_start" and steps[0]["reason"] == "illegible"
    assert [s["step"] for s in steps] == ["earlier_start", "next_layers"] and steps[-1]["illegible_after"] is False
    assert steps[-1]["layers"] == ["mid_block.attentions.0.transformer_blocks.0.attn2", "up_blocks.0.attentions.1.transformer_blocks.0.attn2"]
    check = out.verdict.details["verification"][0]
    assert check["expected"] == "starfish" and check["legible"] and not check["toxic"]
    # the first try (the shipped map alone, same noise) does not read as 'starfish'
    first = SafeTextGenerator(glyph, policy=policy, layer_map=at_02)(prompt, generator=torch.Generator().manual_seed(14), num_inference_steps=20, output_type="pt")
    assert get_ocr("rapidocr", mode="crop").read(first.images[0]).text.strip().lower() != "starfish"


# -- replacement words chosen for the model, and the escalation step next_word (issue 21) ---------------


def legible_map(pipe, legibility, start=0.5):
    names = [layer.name for layer in discover_text_layers(pipe)]
    return LayerMap.for_model(pipe, names[:1], start, name="legible").model_copy(update={"replacement_legibility": legibility})


def test_layer_map_legibility_table_picks_the_word_the_model_writes_best(pipe):
    policy = load_policy("default")
    generic = policy.scan(TOXIC)
    order = policy.replacer.ranked("shit", 4)
    assert generic.findings[0].replacement == order[0]  # without a table: the policy's own choice
    # the table rates the policy's third word best; words it does not rate come last
    table = {word: 0.5 for word in order} | {order[2]: 1.0, order[0]: 0.0}
    layer_map = legible_map(pipe, table)
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map)
    out = call(gen, TOXIC)
    assert out.verdict.findings[0].replacement == order[2]
    assert out.verdict.sanitized_prompt == TOXIC.replace("shit", order[2])
    expected, _ = KVPatch(pipe, list(layer_map.layers), 0.5).generate(
        prompt=TOXIC, target_prompt=TOXIC.replace("shit", order[2]), generator=torch.Generator().manual_seed(0), **KW
    )
    assert torch.equal(out.images, expected.images)
    # case follows the span; the same map without a table keeps the policy's word (other models)
    assert call(gen, TOXIC.replace("shit", "SHIT")).verdict.findings[0].replacement == order[2].upper()
    plain = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map.model_copy(update={"replacement_legibility": None}))
    assert call(plain, TOXIC).verdict.sanitized_prompt == generic.sanitized_prompt
    # a clean prompt is untouched and bit-identical to the raw pipeline
    assert torch.equal(run(gen, CLEAN), run(pipe, CLEAN))


def test_replacer_ranked_order_and_bad_legibility_table(pipe):
    replacer = load_policy("default").replacer
    order = replacer.ranked("shit", 4)
    assert order[0] == replacer.auto("shit", 4) and len(set(order)) == len(order) and all(len(w) == 4 for w in order)
    ranked = replacer.ranked("shit", 4, {order[3]: 0.9, order[1]: 0.9, order[0]: 0.2})
    assert ranked[:3] == (order[1], order[3], order[0]) and set(ranked[3:]) == set(order) - set(ranked[:3])
    with pytest.raises(ValueError, match="replacement_legibility scores must be in"):
        LayerMap.model_validate({**legible_map(pipe, None).model_dump(), "replacement_legibility": {"hope": 1.5}})
    loaded = LayerMap.model_validate({**legible_map(pipe, None).model_dump(), "replacement_legibility": {"Hope": 1}})
    assert loaded.replacement_legibility == {"hope": 1.0}


def test_next_word_escalation_tries_the_next_legible_word_from_the_same_noise(pipe):
    policy = load_policy("default")
    order = policy.replacer.ranked("shit", 4)
    table = {order[1]: 1.0, order[4]: 0.9}
    layer_map = legible_map(pipe, table)
    first, second = order[1], order[4]
    # the best word comes out garbled (also from step 0); the next word of the table reads
    ocr = SequenceOcr("DOLFHJN", "DOLFHJN", second.upper())
    verifier = replacement_verifier(ocr, ("earlier_start", "next_word", "block"))
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map, verifier=verifier)
    out = call(gen, TOXIC, seed=3)
    steps = out.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["earlier_start", "next_word"]
    assert steps[1]["reason"] == "illegible" and steps[1]["replacements"] == [second]
    assert steps[1]["start_step"] == 0 and steps[1]["illegible_after"] is False  # patched like the last run
    assert out.verdict.sanitized_prompt == TOXIC.replace("shit", second) and out.verdict.findings[0].replacement == second
    assert out.verdict.details["verification"][0]["expected"] == second
    assert first != second and ocr.reads == 3
    # the accepted image is the earlier-start patch toward the new word, from the user's noise
    expected, _ = KVPatch(pipe, list(layer_map.layers), 0.0).generate(
        prompt=TOXIC, target_prompt=TOXIC.replace("shit", second), generator=torch.Generator().manual_seed(3), **KW
    )
    assert torch.equal(out.images, expected.images)
    # the step comes first: the map's own patch (start 0.5) with the new word
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map, verifier=replacement_verifier(SequenceOcr("XQZRT", second), ("next_word", "block")))
    torch.manual_seed(7)
    out = gen(TOXIC, **KW)  # no generator: torch's default generator is restored for the retry
    assert [s["step"] for s in out.verdict.details["escalations"]] == ["next_word"]
    torch.manual_seed(7)
    expected, _ = KVPatch(pipe, list(layer_map.layers), 0.5).generate(prompt=TOXIC, target_prompt=TOXIC.replace("shit", second), **KW)
    assert torch.equal(out.images, expected.images)


def test_next_word_then_block_and_skipped_when_no_other_word(pipe):
    from safetext.policy import Policy
    from safetext.policy.schema import ReplacementConfig

    layer_map = legible_map(pipe, {"hope": 1.0})
    gen = SafeTextGenerator(pipe, policy="default", layer_map=layer_map, verifier=replacement_verifier(SequenceOcr("XQZRT"), ("next_word", "next_word", "block")))
    with pytest.raises(PolicyViolation, match="does not read as the sanitized text") as info:
        run(gen, TOXIC)
    steps = info.value.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["next_word", "next_word", "block"]
    words = [steps[0]["replacements"][0], steps[1]["replacements"][0]]
    assert "hope" not in words and words[0] != words[1]  # each step takes the next word of the order
    assert info.value.verdict.sanitized_prompt == TOXIC.replace("shit", words[1])
    # a fixed replacement has no other word: the step is skipped and recorded
    default = load_policy("default")
    fixed = Policy(default.config.model_copy(update={"replacement": ReplacementConfig(mode="fixed", word="peace")}))
    gen = SafeTextGenerator(pipe, policy=fixed, layer_map=layer_map, verifier=replacement_verifier(SequenceOcr("XQZRT"), ("next_word",)))
    out = call(gen, TOXIC)
    assert out.verdict.details["escalations"] == [{"step": "next_word", "skipped": "no other replacement word of the span's length"}]
    assert out.verdict.sanitized_prompt == TOXIC.replace("shit", "peace")
    assert torch.equal(run(pipe, CLEAN), run(SafeTextGenerator(pipe, policy="default"), CLEAN))


# -- the escalation step legible_word: a word of a length the model writes better -----------------------


def test_legible_length_is_the_nearest_length_the_model_writes_better():
    replacer = load_policy("default").replacer
    words = replacer.words
    # the model writes 3- and 8-letter words badly, 4 and 6 well, 5 and 7 in between
    by_length = {3: 0.5, 4: 1.0, 5: 0.8, 6: 0.95, 7: 0.7, 8: 0.6}
    table = {w: by_length[len(w)] for w in words}
    means = replacer.length_legibility(table)
    assert means == pytest.approx(by_length)
    assert replacer.legible_length(3, table) == 4
    assert replacer.legible_length(4, table) is None  # nothing is written better than 4 letters
    assert replacer.legible_length(5, table) == 4  # 4 and 6 are as near: the more legible
    assert replacer.legible_length(6, table) == 4
    assert replacer.legible_length(7, table) == 6
    assert replacer.legible_length(8, table) == 7 and replacer.legible_length(11, table) == 7  # nearest better; 11: the 8s
    assert replacer.legible_length(7, None) is None and replacer.legible_length(7, {}) is None
    # a length the table does not rate is never a candidate, and an unrated span has no better length
    assert replacer.legible_length(7, {w: s for w, s in table.items() if len(w) != 6}) == 5
    assert replacer.legible_length(3, {w: s for w, s in table.items() if len(w) != 3}) is None


def test_legible_word_escalation_switches_to_a_better_written_length_and_the_verdict_records_it(pipe):
    policy = load_policy("default")
    words = policy.replacer.words
    four, five = policy.replacer.ranked("shit", 4), policy.replacer.ranked("shit", 5)
    # 4-letter words are written badly, 5-letter ones well (five[2] best); 3-letter words unrated
    table = {w: 0.5 for w in words if len(w) == 4} | {w: 0.9 for w in words if len(w) == 5} | {five[2]: 1.0}
    table |= {w: 0.2 for w in words if len(w) > 5}
    layer_map = legible_map(pipe, table)
    first = call(SafeTextGenerator(pipe, policy=policy, layer_map=layer_map), TOXIC).verdict.findings[0].replacement
    assert first == four[0]  # the first try keeps the span's length
    # the 4-letter words come out garbled (also the next one); the 5-letter word reads
    ocr = SequenceOcr("DOLFHJN", "DOLFHJN", five[2].upper())
    verifier = replacement_verifier(ocr, ("next_word", "legible_word", "next_layers", "block"))
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map, verifier=verifier)
    out = call(gen, TOXIC, seed=5)
    steps = out.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["next_word", "legible_word"]
    assert steps[0]["replacements"] == [four[1]]
    assert steps[1]["reason"] == "illegible" and steps[1]["replacements"] == [five[2]] and steps[1]["illegible_after"] is False
    assert steps[1]["start_step"] > 0  # patched like the last run (the map's own start)
    assert out.verdict.sanitized_prompt == TOXIC.replace("shit", five[2]) and out.verdict.findings[0].replacement == five[2]
    assert out.verdict.details["verification"][0]["expected"] == five[2] and ocr.reads == 3
    expected, _ = KVPatch(pipe, list(layer_map.layers), 0.5).generate(
        prompt=TOXIC, target_prompt=TOXIC.replace("shit", five[2]), generator=torch.Generator().manual_seed(5), **KW
    )
    assert torch.equal(out.images, expected.images)  # from the user's noise
    # still illegible: the next steps keep the new word; a second legible_word has nothing new and is skipped
    ocr = SequenceOcr("XQZRT")
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map, verifier=replacement_verifier(ocr, ("legible_word", "legible_word", "all_layers", "block")))
    with pytest.raises(PolicyViolation, match="does not read as the sanitized text") as info:
        run(gen, TOXIC)
    steps = info.value.verdict.details["escalations"]
    assert [s["step"] for s in steps] == ["legible_word", "legible_word", "all_layers", "block"]
    assert steps[1] == {"step": "legible_word", "skipped": "the layer map rates no word length better than the span's"}
    assert info.value.verdict.sanitized_prompt == TOXIC.replace("shit", five[2]) and steps[2]["layers"]
    # without a legibility table the step is skipped and recorded; the image is the map's own patch
    plain = layer_map.model_copy(update={"replacement_legibility": None})
    gen = SafeTextGenerator(pipe, policy=policy, layer_map=plain, verifier=replacement_verifier(SequenceOcr("XQZRT"), ("legible_word",)))
    out = call(gen, TOXIC)
    assert out.verdict.details["escalations"] == [{"step": "legible_word", "skipped": "the layer map rates no word length better than the span's"}]
    assert out.verdict.sanitized_prompt == policy.scan(TOXIC).sanitized_prompt
    assert torch.equal(run(pipe, CLEAN), run(SafeTextGenerator(pipe, policy="default"), CLEAN))


def test_strict_policy_escalates_to_legible_word_after_next_word():
    from safetext.policy.schema import VerificationConfig

    strict = ImageVerifier.from_policy(load_policy("strict"))
    assert strict.escalation.index("legible_word") == strict.escalation.index("next_word") + 1
    with pytest.raises(ValueError, match="legible_word"):
        VerificationConfig(escalation=("shorter_word",))
