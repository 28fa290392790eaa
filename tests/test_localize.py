"""Localization mechanics on a tiny random-weight glyph pipeline.

Random weights write no readable text, so most tests score with the deterministic
``ImageDistanceScorer`` (movement toward the unpatched target image); the OCR scorer's arithmetic is
tested with a stub OCR and once with real OCR on a rendered sign.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image

from safetext.errors import LayerMapError
from safetext.localize import (
    CandidateScore,
    ImageDistanceScorer,
    LocalizationError,
    OcrMovementScorer,
    PairScore,
    PatchCandidate,
    PatchSweep,
    SweepReferences,
    default_budget,
    glyph_prompt_pairs,
    grow_layer_set,
    localize_layers,
    pair_words,
    parameter_share,
    patch_search,
    prompt_pairs,
    search_start_fraction,
    sweep_single_layers,
    verify_layer_map,
)
from safetext.localize.cli import main as localize_main
from safetext.models.glyph import save_glyph_pipeline
from safetext.patching.layer_map import LayerMap
from safetext.patching.layers import discover_text_layers
from safetext.scoring import OcrResult
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY = TINY_GLYPH_CONFIG
STEPS = {"num_inference_steps": 3}


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


@pytest.fixture(scope="module")
def pairs():
    return glyph_prompt_pairs(4, seed=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pipe):
    directory = tmp_path_factory.mktemp("tiny-glyph")
    save_glyph_pipeline(pipe, directory, fp16=False)
    return directory


def _localize(pipe, pairs, **options):
    options = {"scorer": ImageDistanceScorer(), "call_kwargs": STEPS, "progress": False, **options}
    return localize_layers(pipe, pairs, **options)


# -- prompt pairs -------------------------------------------------------------------------------------
def test_prompt_pairs_are_deterministic_distinct_and_respect_exclusions():
    first = prompt_pairs(6, words=["cat", "dog", "sun", "red", "map", "pen"], seed=3)
    assert first == prompt_pairs(6, words=["cat", "dog", "sun", "red", "map", "pen"], seed=3)
    assert [pair.seed for pair in first] == [3, 4, 5, 6, 7, 8]
    assert all(pair.source_text != pair.target_text for pair in first)
    assert first[0].source_prompt == f'A sign that says "{first[0].source_text}".'
    held_out = glyph_prompt_pairs(5, seed=1, exclude=pair_words(glyph_prompt_pairs(5, seed=0)))
    assert pair_words(held_out).isdisjoint(pair_words(glyph_prompt_pairs(5, seed=0)))
    colors = [pair.source_prompt.split()[1] for pair in held_out]
    assert colors == [pair.target_prompt.split()[1] for pair in held_out]  # same sign colour within a pair
    with pytest.raises(LocalizationError, match="positive int"):
        prompt_pairs(0)
    with pytest.raises(LocalizationError, match=r"\{word\}"):
        prompt_pairs(2, template="A sign")
    with pytest.raises(LocalizationError, match="at least 2 distinct words"):
        prompt_pairs(2, words=["cat", "dog"], exclude=["dog"])
    with pytest.raises(LocalizationError, match="unknown glyph word split 'rare'"):
        glyph_prompt_pairs(2, split="rare")


def test_same_length_pairs_match_lengths_and_stay_distinct_and_deterministic():
    pairs = glyph_prompt_pairs(40, seed=5, same_length=True)
    assert pairs == glyph_prompt_pairs(40, seed=5, same_length=True)
    assert all(len(p.source_text) == len(p.target_text) and p.source_text != p.target_text for p in pairs)
    assert len({p.source_text for p in pairs}) == 40  # no word repeats while the pool lasts
    mixed = glyph_prompt_pairs(40, seed=5)
    assert any(len(p.source_text) != len(p.target_text) for p in mixed)  # the default does not match lengths
    with pytest.raises(LocalizationError, match="two words of the same length"):
        from safetext.localize.pairs import _draw

        _draw(["cat", "horse"], 1, 0, same_length=True)


# -- scorers ------------------------------------------------------------------------------------------
class _StubOcr:
    def __init__(self, texts):
        self.texts = list(texts)

    def read_many(self, images):
        return [OcrResult(text, 1.0) for text in self.texts[: len(images)]]


def _references(count: int) -> SweepReferences:
    pairs = tuple(prompt_pairs(count, words=["cat", "dog"], seed=0))
    images = tuple(torch.full((3, 16, 32), 0.5) for _ in range(count))
    return SweepReferences(pairs, images, images)


def test_ocr_scorer_movement_is_target_f1_minus_source_f1_mapped_to_unit_interval():
    references = _references(3)
    targets = [pair.target_text for pair in references.pairs]
    sources = [pair.source_text for pair in references.pairs]
    scorer = OcrMovementScorer(_StubOcr([targets[0].upper() + "!", sources[1], ""]))
    scores = scorer.score(list(references.source_images), references)
    assert [score.movement for score in scores] == [1.0, 0.0, 0.5]
    assert [score.flipped for score in scores] == [True, False, False]
    assert scores[0].target_f1 == 1.0 and scores[0].source_f1 == 0.0 and scores[0].text == targets[0].upper() + "!"
    assert all(score.similarity == pytest.approx(1.0) for score in scores)


def test_ocr_scorer_reads_a_rendered_sign():
    pytest.importorskip("rapidocr")
    from safetext.models.glyph.data import render_sign

    pair = prompt_pairs(1, words=["cat", "dog"], seed=0)[0]
    source, target = render_sign(pair.source_text, "red"), render_sign(pair.target_text, "red")
    references = SweepReferences((pair,), (source,), (target,))
    (score,) = OcrMovementScorer().score([target], references)
    assert score.flipped and score.movement == 1.0 and score.text.lower() == pair.target_text
    assert score.similarity < 0.99  # the target sign differs from the source sign


def test_image_distance_scorer_is_zero_at_source_and_one_at_target():
    pair = prompt_pairs(1, words=["cat", "dog"], seed=0)[0]
    source, target = torch.zeros(3, 16, 32), torch.ones(3, 16, 32)
    references = SweepReferences((pair, pair), (source, source), (target, target))
    at_source, at_target = ImageDistanceScorer().score([source, target], references)
    assert (at_source.movement, at_source.flipped, at_source.similarity) == (0.0, False, pytest.approx(1.0))
    assert (at_target.movement, at_target.flipped) == (1.0, True)


# -- the sweep ----------------------------------------------------------------------------------------
def test_single_layer_sweep_patches_each_layer_in_exactly_one_pipeline_call(pipe, pairs):
    layers = discover_text_layers(pipe)
    unet_calls: list[tuple[int, frozenset[int]]] = []

    def observe(module, args, kwargs):
        hooked = frozenset(
            layer.index for layer in layers if len(pipe.unet.get_submodule(layer.key)._forward_hooks) > 0
        )
        unet_calls.append((int(args[0].shape[0]), hooked))

    handle = pipe.unet.register_forward_pre_hook(observe, with_kwargs=True)
    try:
        sweep = PatchSweep(pipe, pairs, ImageDistanceScorer(), call_kwargs=STEPS, progress=False)
        scores = sweep_single_layers(sweep)
    finally:
        handle.remove()
    patched = [(batch, hooked) for batch, hooked in unet_calls if hooked]
    assert all(len(hooked) == 1 for _, hooked in patched)
    # Every layer is hooked during exactly one pipeline call: STEPS denoiser calls in a row.
    runs = [hooked for i, (_, hooked) in enumerate(patched) if i == 0 or patched[i - 1][1] != hooked]
    assert sorted(next(iter(hooked)) for hooked in runs) == [layer.index for layer in layers]
    assert len(patched) == len(layers) * STEPS["num_inference_steps"]
    assert {batch for batch, _ in patched} == {2 * len(pairs)}  # all pairs in one CFG batch
    assert sweep.pipeline_calls == 2 + len(layers) and dict(sweep.patched_calls) == {l.index: 1 for l in layers}
    assert [score.candidate.layers for score in scores.values()] == [(layer.index,) for layer in layers]
    assert all(score.pairs == len(pairs) for score in scores.values())
    assert not any(pipe.unet.get_submodule(layer.key)._forward_hooks for layer in layers)


def test_patching_every_layer_from_step_zero_reproduces_the_target_image(pipe, pairs):
    sweep = PatchSweep(pipe, pairs, ImageDistanceScorer(), call_kwargs=STEPS, progress=False)
    every = PatchCandidate(tuple(range(len(sweep.layers))))
    scores = patch_search(sweep, [every, every.starting_at(1.0)])
    assert scores[every].movement == 1.0 and scores[every].flip_rate == 1.0
    assert scores[every.starting_at(1.0)].movement == 0.0 and scores[every.starting_at(1.0)].similarity == pytest.approx(1.0)
    source, target = sweep.reference_scores()
    assert (source.movement, target.movement) == (0.0, 1.0)


def test_patch_search_accepts_names_and_indices_and_rejects_unknown_layers(pipe, pairs):
    sweep = PatchSweep(pipe, pairs[:2], ImageDistanceScorer(), call_kwargs=STEPS, progress=False)
    name = sweep.layers[2].name
    scores = patch_search(sweep, [name, [0, name]])
    assert [candidate.layers for candidate in scores] == [(2,), (0, 2)]
    with pytest.raises(LayerMapError, match="no text-attention layer 99"):
        patch_search(sweep, [99])
    with pytest.raises(LocalizationError, match="call_kwargs may not set generator, prompt"):
        PatchSweep(pipe, pairs, call_kwargs={"prompt": "x", "generator": None})


# -- search stages on synthetic scores ------------------------------------------------------------------
def pipe_layers(pipe):
    return discover_text_layers(pipe)


class _SyntheticSweep:
    """A sweep whose scores are a fixed function of the layer set (tests the search logic alone)."""

    def __init__(self, layers, effects, flips_by_start=None):
        self.layers = layers
        self.effects = effects  # layer -> (movement gain, similarity loss)
        self.flips_by_start = flips_by_start or {}
        self.evaluated: list[PatchCandidate] = []

    def _score(self, candidate):
        movement = min(1.0, 0.1 + sum(self.effects.get(i, (0.0, 0.0))[0] for i in candidate.layers))
        similarity = 1.0 - sum(self.effects.get(i, (0.0, 0.0))[1] for i in candidate.layers)
        flip, move_drop = self.flips_by_start.get(candidate.start_fraction, (movement, 0.0))
        pair = PairScore(movement=movement - move_drop, flipped=False, similarity=similarity)
        score = CandidateScore.of(candidate, [pair])
        return CandidateScore(candidate, score.label, score.movement, flip, similarity, None, score.per_pair)

    def reference_scores(self):
        pair = PairScore(movement=0.1, flipped=False, similarity=1.0)
        return CandidateScore.of(None, [pair], "source"), CandidateScore.of(None, [pair], "target")

    def evaluate(self, candidates, desc=""):
        self.evaluated.extend(candidates)
        return {candidate: self._score(candidate) for candidate in candidates}


def test_growth_prefers_text_moved_per_similarity_lost_and_stops_below_min_gain(pipe):
    # Layer 3 moves the text most but costs 0.30 SSIM, so 2 and then 5 are more efficient; 3 comes third
    # (gain 0.30, movement capped at 1.0), after which layer 0 adds nothing: growth stops below min_gain.
    sweep = _SyntheticSweep(pipe_layers(pipe), {2: (0.40, 0.02), 3: (0.50, 0.30), 5: (0.20, 0.01), 0: (0.01, 0.0)})
    growth = grow_layer_set(sweep, budget=4, min_gain=0.05)
    assert growth.layers == (2, 3, 5)
    assert [step.added for step in growth.steps] == [2, 5, 3]
    assert growth.stop_reason == "min_gain" and growth.converged
    assert growth.steps[0].efficiency == pytest.approx(0.40 / 0.1)  # loss 0.02 is floored at 0.1
    assert growth.steps[1].gain == pytest.approx(0.20)


def test_growth_respects_budget_and_falls_back_when_nothing_moves(pipe):
    sweep = _SyntheticSweep(pipe_layers(pipe), {2: (0.40, 0.02), 5: (0.20, 0.01), 6: (0.30, 0.01)})
    limited = grow_layer_set(sweep, budget=2, min_gain=0.05)
    assert limited.layers == (2, 6) and limited.stop_reason == "budget"
    assert all(len(candidate.layers) <= 2 for candidate in sweep.evaluated)
    stuck = grow_layer_set(_SyntheticSweep(pipe_layers(pipe), {4: (0.01, 0.0), 1: (0.015, 0.0)}), budget=3, min_gain=0.05)
    assert stuck.layers == (1,) and not stuck.converged and stuck.stop_reason == "no_layer_moves_text"
    assert grow_layer_set(sweep, min_gain=0.05).layers == (2,)  # default budget: 25% of 7 layers -> 1
    assert [default_budget(n) for n in (4, 7, 22, 70)] == [1, 1, 5, 17]
    with pytest.raises(LocalizationError, match=r"budget must be an int in 1\.\.7"):
        grow_layer_set(sweep, budget=8)


def test_start_search_picks_latest_start_within_tolerance_of_the_best(pipe):
    flips = {0.0: (0.95, 0.0), 0.1: (0.94, 0.0), 0.2: (0.91, 0.01), 0.3: (0.80, 0.02), 0.4: (0.96, 0.30), 0.5: (0.1, 0.5)}
    start = search_start_fraction(_SyntheticSweep(pipe_layers(pipe), {2: (0.8, 0.05)}, flips), (2,), tolerance=0.05)
    # 0.4 keeps the flip rate but loses 0.30 movement; 0.3 loses 0.16 flip rate -> 0.2 is the latest kept.
    assert start.start_fraction == 0.2 and start.score.candidate == PatchCandidate((2,), 0.2)
    assert [score.candidate.start_fraction for score in start.scores] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    with pytest.raises(LocalizationError, match="fractions must be"):
        search_start_fraction(_SyntheticSweep(pipe_layers(pipe), {}), (2,), fractions=[1.5])


# -- the whole localization -----------------------------------------------------------------------------
def test_localize_writes_map_report_chart_and_parameter_share(pipe, pairs, tmp_path):
    backend = matplotlib.get_backend()
    result = _localize(pipe, pairs, budget=2, out_dir=tmp_path, name="tiny")
    assert matplotlib.get_backend() == backend
    assert len(result.layer_map.layers) <= 2 and result.layer_map.name == "tiny"
    assert LayerMap.load(tmp_path / "layer_map.yaml") == result.layer_map
    with Image.open(tmp_path / "per_layer.png") as chart:
        assert chart.format == "PNG" and chart.size[0] >= 600
    report = (tmp_path / "report.md").read_text()
    for name in result.layer_map.layers:
        assert name in report
    assert "| layer 6 alone (`up_blocks.1.attentions.1.transformer_blocks.0.attn2`) |" in report
    summary = json.loads((tmp_path / "localization.json").read_text())
    assert summary["chosen"]["layers"] == list(result.growth.layers)
    assert len(summary["single_layers"]) == 7
    # the map ranks the other layers for the verification escalation: most movement first, then lower SSIM
    singles = {row["name"]: row for row in summary["single_layers"]}
    ranking = result.layer_map.ranking
    assert sorted(ranking + result.layer_map.layers) == sorted(singles) and not set(ranking) & set(result.layer_map.layers)
    keys = [(-singles[name]["movement"], singles[name]["similarity"]) for name in ranking]
    assert keys == sorted(keys)
    # to_k/to_v of the mid block: 2 x (32 x 32), no bias; all 7 layers: 11,264
    share = parameter_share(pipe, ["mid_block.attentions.0.transformer_blocks.0.attn2"])
    assert (share.kv_parameters, share.text_kv_parameters) == (2048, 11264)
    assert share.denoiser_parameters == sum(p.numel() for p in pipe.unet.parameters())
    assert math.isclose(share.share_of_text_kv, 2048 / 11264)


def test_interrupted_sweep_resumes_to_the_same_map(pipe, pairs, tmp_path):
    reference = _localize(pipe, pairs, budget=2, out_dir=tmp_path / "reference")
    seen = []

    def interrupt(candidate, score):
        seen.append(candidate)
        if len(seen) == 3:
            raise KeyboardInterrupt("stop after 3 layers")

    with pytest.raises(KeyboardInterrupt):
        _localize(pipe, pairs, budget=2, out_dir=tmp_path / "run", on_result=interrupt)
    stored = json.loads((tmp_path / "run" / "checkpoint" / "sweep-rank0-of-1.json").read_text())
    assert sorted(stored["results"]) == sorted(["source", "target"] + [c.key for c in seen])
    with pytest.raises(LocalizationError, match="--resume"):
        _localize(pipe, pairs, budget=2, out_dir=tmp_path / "run")
    resumed = _localize(pipe, pairs, budget=2, out_dir=tmp_path / "run", resume=True)
    assert resumed.layer_map == reference.layer_map
    assert resumed.chosen == reference.chosen
    assert resumed.pipeline_calls == reference.pipeline_calls - 3
    with pytest.raises(LocalizationError, match="different sweep"):
        _localize(pipe, pairs[:3], budget=2, out_dir=tmp_path / "run", resume=True)


class _ThreadGroup:
    """Two 'processes' as threads with a barrier: the accelerate PartialState surface a sweep uses."""

    def __init__(self, rank: int, world: int, barrier: threading.Barrier) -> None:
        self.process_index, self.num_processes, self.barrier = rank, world, barrier

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def wait_for_everyone(self) -> None:
        self.barrier.wait()

    @contextmanager
    def split_between_processes(self, inputs, apply_padding=False):
        per, extra = divmod(len(inputs), self.num_processes)
        start = self.process_index * per + min(self.process_index, extra)
        yield inputs[start : start + per + (1 if self.process_index < extra else 0)]


def test_sharded_sweep_gives_the_single_process_result(pipe, pairs, tmp_path):
    from safetext.patching.recording import pipeline_replica

    single = _localize(pipe, pairs, budget=2)
    barrier = threading.Barrier(2, timeout=120)
    results, errors = {}, []

    def run(rank):
        try:
            group = _ThreadGroup(rank, 2, barrier)
            results[rank] = _localize(pipeline_replica(pipe), pairs, budget=2, out_dir=tmp_path, process_group=group)
        except BaseException as error:  # surfaced below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results[0].layer_map == results[1].layer_map == single.layer_map
    for sharded in results.values():
        assert [s.movement for s in sharded.single_layers] == pytest.approx([s.movement for s in single.single_layers], abs=1e-6)
    assert sorted(path.name for path in (tmp_path / "checkpoint").iterdir()) == ["sweep-rank0-of-2.json", "sweep-rank1-of-2.json"]
    shard = json.loads((tmp_path / "checkpoint" / "sweep-rank1-of-2.json").read_text())
    assert shard["pairs"] == [2, 3] and len(shard["results"]["0@0"]) == 2
    assert results[0].files and not results[1].files  # only the main process writes outputs


# -- verification -------------------------------------------------------------------------------------
def test_verify_passes_a_moving_map_and_fails_one_that_never_patches(pipe, pairs):
    every = LayerMap.for_model(pipe, list(range(7)), 0.0, name="every")
    never = LayerMap.for_model(pipe, [2], 1.0, name="never")
    good = verify_layer_map(pipe, every, pairs, scorer="image-distance", call_kwargs=STEPS, min_flip=0.8)
    assert good.passed and good.score.flip_rate == 1.0 and good.failures == ()
    bad = verify_layer_map(pipe, never, pairs, scorer="image-distance", call_kwargs=STEPS, min_flip=0.5)
    assert not bad.passed and bad.score.flip_rate == 0.0
    assert bad.failures[0].startswith("flip rate 0.00 < 0.50: the map no longer moves the written text")
    with pytest.raises(LayerMapError, match="layer map 'never' failed verification: flip rate 0.00"):
        verify_layer_map(pipe, never, pairs, scorer="image-distance", call_kwargs=STEPS, raise_on_failure=True)


def test_cli_verify_exit_status(pipe, model_dir, tmp_path, capsys):
    every, never = tmp_path / "every.yaml", tmp_path / "never.yaml"
    LayerMap.for_model(pipe, list(range(7)), 0.0, name="every").save(every)
    LayerMap.for_model(pipe, [2], 1.0, name="never").save(never)
    common = ["--model", str(model_dir), "--scorer", "image-distance", "--steps", "3", "--pairs", "2", "--no-progress"]
    assert localize_main(["--verify", str(every), *common]) == 0
    assert localize_main(["--verify", str(never), *common]) == 1
    assert "FAILED: flip rate 0.00 < 0.50" in capsys.readouterr().err
    assert localize_main(["--verify", str(tmp_path / "missing.yaml"), *common]) == 2


@pytest.mark.slow
def test_two_accelerate_processes_give_the_single_process_map(model_dir, tmp_path):
    common = ["--model", str(model_dir), "--pairs", "5", "--steps", "3", "--scorer", "image-distance", "--budget", "2", "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the launched workers run one thread each; float reductions differ across thread counts
    try:
        assert localize_main([*common, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    launched = subprocess.run(
        [sys.executable, "-m", "safetext.localize.cli", *common, "--out", str(tmp_path / "two"), "--processes", "2"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # an inherited OMP_NUM_THREADS=2 would change the workers' sums
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert LayerMap.load(tmp_path / "two" / "layer_map.yaml") == LayerMap.load(tmp_path / "one" / "layer_map.yaml")
    shards = sorted(path.name for path in (tmp_path / "two" / "checkpoint").iterdir())
    assert shards == ["sweep-rank0-of-2.json", "sweep-rank1-of-2.json"]
    assert json.loads(Path(tmp_path / "two" / "checkpoint" / shards[1]).read_text())["pairs"] == [3, 4]


@pytest.mark.slow
def test_localize_benchmark_runs_end_to_end_on_a_tiny_model(model_dir, tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "localize_glyph.py"
    command = [sys.executable, str(script), "--model", str(model_dir), "--pairs", "4", "--eval-pairs", "4", "--steps", "3",
               "--threads", "1", "--results", str(tmp_path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads((tmp_path / "localize_glyph.json").read_text())
    criteria = [row["criterion"] for row in summary["acceptance"]]
    assert criteria[0] == "share of text-attention layers" and len(criteria) == 8
    assert "held-out flipped with SSIM >= 0.85 (per pair), equal word length" in criteria
    assert summary["held_out"]["pairs"] == 4 and summary["localization"]["parameters"]["text_layers"] == 7
    assert LayerMap.load(tmp_path / "glyph_layer_map.yaml").name == "glyph"
    assert {path.name for path in tmp_path.iterdir()} >= {"localize_glyph.md", "localize_glyph.png"}
