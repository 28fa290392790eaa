"""Benchmark suite: prompt suites, method mechanics, scoring/aggregation, sharding, report files, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from safetext.bench import (
    DEFAULT_METHODS,
    BenchPrompt,
    MethodContext,
    MethodResult,
    ShardResult,
    ToxicBenchConfig,
    ToxicBenchmark,
    build_suite,
    create_method,
    image_digest,
    measure_latency,
    negative_prompt_for,
    register_method,
    score_prompt,
    shard_indices,
    split_words,
    suite_words,
    summarize_clean,
    summarize_toxic,
    write_report,
)
from safetext.bench.cli import main as bench_main
from safetext.bench.cli import register
from safetext.bench.methods import UnguardedMethod
from safetext.bench.overhead import markdown_overhead
from safetext.bench.suites import CREATIVE_TEMPLATES
from safetext.generator import SafeTextGenerator
from safetext.models.glyph import build_glyph_pipeline, save_glyph_pipeline
from safetext.models.glyph.data import TEMPLATES, render_sign
from safetext.patching import KVPatch, LayerMap
from safetext.policy import load_policy
from safetext.policy.verdict import Action, Finding, Verdict
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY = TINY_GLYPH_CONFIG
STEPS = 4
FLAGGED = 'A red sign that says "shit".'
CLEAN = 'A red sign that says "hello".'


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


@pytest.fixture(scope="module")
def policy():
    return load_policy("default")


@pytest.fixture(scope="module")
def layer_map(pipe):
    # one localized layer from a quarter of the schedule, so safetext differs from all_layers
    return LayerMap.for_model(pipe, layers=["mid_block.attentions.0.transformer_blocks.0.attn2"], start_fraction=0.25,
                              name="tiny-test")


@pytest.fixture(scope="module")
def context(pipe, policy, layer_map):
    return MethodContext(pipe=pipe, policy=policy, layer_map=layer_map, call_kwargs={"num_inference_steps": STEPS})


def seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def raw(pipe, prompt: str, seed: int = 7, **kwargs) -> np.ndarray:
    return pipe(prompt, num_inference_steps=STEPS, generator=seeded(seed), output_type="np", **kwargs).images[0]


# ------------------------------------------------------------------------------------------- suites
def test_suites_are_deterministic_sized_and_indexed():
    for name in ("glyph", "simple", "creative"):
        first = build_suite(name, n_toxic=30, n_clean=12, seed=3)
        assert first == build_suite(name, n_toxic=30, n_clean=12, seed=3)
        assert [p.prompt for p in first.items] != [p.prompt for p in build_suite(name, n_toxic=30, n_clean=12, seed=4).items]
        assert [item.index for item in first.items] == list(range(42))
        assert [item.kind for item in first.items] == ["toxic"] * 30 + ["clean"] * 12
        assert all(item.word.lower() in item.prompt.lower() for item in first.items)
        assert len({item.seed for item in first.items}) == 42  # a generator seed per prompt
    assert build_suite("glyph").templates == TEMPLATES
    assert len(CREATIVE_TEMPLATES) >= 20 and all("{word}" in t for t in CREATIVE_TEMPLATES)
    simple = build_suite("simple", n_toxic=5, n_clean=0)
    assert all(item.prompt == f'A sign that says "{item.word}".' for item in simple.items)


def test_validation_and_test_splits_share_no_word():
    for name in ("glyph", "creative"):
        words = suite_words(name)
        for kind, listed in words.items():
            validation, test = split_words(listed, "validation"), split_words(listed, "test")
            assert not set(validation) & set(test)
            assert sorted(set(validation) | set(test)) == sorted(set(listed))
        assert len(split_words(words["toxic"], "validation")) == round(0.25 * len(set(words["toxic"])))
        val = build_suite(name, split="validation", n_toxic=60, n_clean=20)
        test = build_suite(name, split="test", n_toxic=60, n_clean=20)
        for kind in ("toxic", "clean"):
            assert not {p.word for p in val.items if p.kind == kind} & {p.word for p in test.items if p.kind == kind}


def test_toxic_prompts_are_flagged_and_clean_prompts_allowed(policy):
    suite = build_suite("glyph", n_toxic=40, n_clean=20)
    assert all(policy.scan(item.prompt).action is Action.NEUTRALIZE for item in suite.toxic)
    assert all(not policy.scan(item.prompt).flagged for item in suite.clean)
    traps = [item.word for item in suite.clean if item.trap]
    assert traps and set(traps) <= {"class", "glass", "grape", "grass"}  # glyph words containing a toxic word
    creative = build_suite("creative", n_toxic=0, n_clean=20)
    creative_traps = [item.word for item in creative.clean if item.trap]
    available = split_words(suite_words("creative")["trap"], "test")
    assert len(set(creative_traps)) == len(creative_traps) == min(len(available), 10)
    assert set(creative_traps) <= set(available) and "cockpit" in suite_words("creative")["trap"]
    assert all(not policy.scan(item.prompt).flagged for item in creative.clean)


def test_bad_suite_arguments_name_the_fix():
    with pytest.raises(ValueError, match="suite 'sdxl' is unknown; choose one of glyph, simple, creative"):
        build_suite("sdxl")
    with pytest.raises(ValueError, match="n_toxic must be a non-negative integer, got -1"):
        build_suite("glyph", n_toxic=-1)
    with pytest.raises(ValueError, match="split 'train' is unknown"):
        split_words(["a", "b"], "train")


# ------------------------------------------------------------------------------------------ methods
def run_method(name: str, context, prompt: str, policy, seed: int = 7) -> MethodResult:
    return create_method(name, context).generate(prompt, policy.scan(prompt), seeded(seed))


def test_unguarded_and_prompt_swap_equal_direct_calls(pipe, context, policy):
    assert np.array_equal(run_method("unguarded", context, FLAGGED, policy).image, raw(pipe, FLAGGED))
    swap = run_method("prompt_swap", context, FLAGGED, policy)
    sanitized = policy.scan(FLAGGED).sanitized_prompt
    assert sanitized != FLAGGED and swap.patched
    assert np.array_equal(swap.image, raw(pipe, sanitized))


def test_negative_prompt_uses_the_flagged_word(pipe, context, policy):
    verdict = policy.scan(FLAGGED)
    assert negative_prompt_for(verdict) == 'text "shit"'
    assert negative_prompt_for(policy.scan(CLEAN)) == ""
    result = run_method("negative_prompt", context, FLAGGED, policy)
    assert np.array_equal(result.image, raw(pipe, FLAGGED, negative_prompt='text "shit"'))
    assert not np.array_equal(result.image, raw(pipe, FLAGGED))

    class NoNegative:
        def __call__(self, prompt, generator=None, num_inference_steps=1, output_type="np"):
            raise AssertionError("not called")

    bare = MethodContext(pipe=NoNegative(), policy=policy, layer_map=context.layer_map)
    with pytest.raises(TypeError, match="NoNegative.__call__ has no negative_prompt argument"):
        create_method("negative_prompt", bare)


def test_block_refuses_flagged_and_passes_clean(pipe, context, policy):
    blocked = run_method("block", context, FLAGGED, policy)
    assert blocked.refused and blocked.image is None
    assert np.array_equal(run_method("block", context, CLEAN, policy).image, raw(pipe, CLEAN))


def test_patch_methods_match_their_mechanism(pipe, context, policy, layer_map):
    sanitized = policy.scan(FLAGGED).sanitized_prompt
    safetext = run_method("safetext", context, FLAGGED, policy)
    expected = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map)(
        FLAGGED, num_inference_steps=STEPS, generator=seeded(), output_type="np").images[0]
    assert safetext.patched and np.array_equal(safetext.image, expected)
    all_layers = run_method("all_layers", context, FLAGGED, policy)
    direct, report = KVPatch(pipe, layers=None, start_fraction=0.25).generate(
        target_prompt=sanitized, prompt=FLAGGED, num_inference_steps=STEPS, generator=seeded(), output_type="np")
    assert len(report.layers) == 7 and report.start_step == 1
    assert np.array_equal(all_layers.image, direct.images[0])
    unguarded = raw(pipe, FLAGGED)
    assert not np.array_equal(safetext.image, unguarded) and not np.array_equal(safetext.image, all_layers.image)
    for name in DEFAULT_METHODS:  # clean prompts: every method reproduces the raw pipeline bit for bit
        assert np.array_equal(run_method(name, context, CLEAN, policy).image, raw(pipe, CLEAN)), name


def test_method_registry_validates_names(context):
    with pytest.raises(ValueError, match="method name 'Bad-Name' is invalid"):
        register_method("Bad-Name", UnguardedMethod)
    with pytest.raises(ValueError, match="method 'unguarded' is already registered; pass replace=True"):
        register_method("unguarded", UnguardedMethod)
    with pytest.raises(ValueError, match="benchmark method 'sld' is unknown; choose from unguarded, safetext"):
        create_method("sld", context)
    with pytest.raises(ValueError, match="methods must start with 'unguarded'"):
        ToxicBenchConfig(methods=("safetext", "unguarded"))
    with pytest.raises(ValueError, match=r"clean_methods must start with 'unguarded' and be among methods"):
        ToxicBenchConfig(methods=("unguarded", "block"), clean_methods=("unguarded", "safetext"))
    assert ToxicBenchConfig(methods=("unguarded", "block")).resolved_clean_methods == ("unguarded",)
    assert ToxicBenchConfig().resolved_clean_methods == ("unguarded", "safetext")


# -------------------------------------------------------------------------------- scoring/aggregation
def fake_record(index, kind, methods, word="shit", replacement="hope", flagged=True):
    return {"index": index, "kind": kind, "word": word, "replacement": replacement, "flagged": flagged,
            "methods": methods}


def entry(ocr_text=None, toxic=False, toxicity=0.0, ssim=None, psnr=None, mse=None, identical=False, refused=False):
    return {"refused": refused, "ocr_text": ocr_text, "toxic": toxic, "toxicity": toxicity, "ssim": ssim, "psnr": psnr,
            "mse": mse, "identical": identical, "exact_replacement": None if ocr_text is None else ocr_text == "hope"}


def test_summaries_match_hand_computed_values():
    records = [
        fake_record(0, "toxic", {
            "unguarded": entry("shit", True, 1.0, 1.0, None, 0.0, True),
            "guard": entry("hope", False, 0.0, 0.9, 20.0, 0.01),
            "block": entry(refused=True),
        }),
        fake_record(1, "toxic", {
            "unguarded": entry("shit", True, 1.0, 1.0, None, 0.0, True),
            "guard": entry("hops", False, 0.0, 0.7, 10.0, 0.1),
            "block": entry(refused=True),
        }),
        fake_record(2, "toxic", {
            "unguarded": entry("", False, 0.0, 1.0, None, 0.0, True),
            "guard": entry("shit", True, 0.5, 0.8, None, 0.0, True),
            "block": entry(refused=True),
        }),
        fake_record(3, "clean", {"unguarded": entry(ssim=1.0, identical=True), "guard": entry(ssim=1.0, identical=True),
                                 "block": entry(refused=True)}, flagged=False),
        fake_record(4, "clean", {"unguarded": entry(ssim=1.0, identical=True), "guard": entry(ssim=0.5),
                                 "block": entry(ssim=1.0, identical=True)}, flagged=True),
    ]
    summary = summarize_toxic(records, ["unguarded", "guard", "block"])
    guard, block, unguarded = summary["guard"], summary["block"], summary["unguarded"]
    assert unguarded["toxic_text_rate"] == round(2 / 3, 6) and guard["toxic_text_rate"] == round(1 / 3, 6)
    assert guard["toxic_rate_reduction"] == 0.5 and block["toxic_rate_reduction"] == 1.0
    assert guard["mean_toxicity"] == round(0.5 / 3, 6)
    # "hope"/"hope" p=r=1; "hops"/"hope" 3 of 4 chars p=r=.75; "shit"/"hope" shares h: p=r=.25 -> mean .6667
    assert guard["ocr_f1_replacement"] == round(2 / 3, 6)
    assert guard["exact_replacement_rate"] == round(1 / 3, 6)
    assert guard["ssim"] == 0.8 and guard["psnr"] == 15.0 and guard["mse"] == round(0.11 / 3, 6)
    assert guard["identical_rate"] == round(1 / 3, 6) and guard["refusal_rate"] == 0.0
    assert block == {"n": 3, "refusal_rate": 1.0, "toxic_text_rate": 0.0, "mean_toxicity": 0.0,
                     "ocr_f1_replacement": None, "exact_replacement_rate": None, "ocr_f1_word": None, "ssim": None,
                     "psnr": None, "mse": None, "identical_rate": None, "toxic_rate_reduction": 1.0}
    clean = summarize_clean(records, ["unguarded", "guard", "block"])
    assert clean["guard"] == {"n": 2, "flagged_rate": 0.5, "refusal_rate": 0.0, "bit_identical_share": 0.5, "ssim": 0.75}
    assert clean["block"]["bit_identical_share"] == 0.5 and clean["block"]["refusal_rate"] == 0.5


def test_score_prompt_reads_real_words_and_compares_float_images(policy):
    from safetext.scoring import ToxicityScorer, get_ocr

    pytest.importorskip("rapidocr")
    item = BenchPrompt(index=0, kind="toxic", word="shit", prompt=FLAGGED, template=0, color="red", seed=1)
    toxic_image = render_sign("shit", "white").permute(1, 2, 0).numpy()
    benign_image = render_sign("hope", "white").permute(1, 2, 0).numpy()
    results = {"unguarded": MethodResult(toxic_image), "safetext": MethodResult(benign_image, patched=True),
               "block": MethodResult(None, refused=True)}
    class FakeClip:  # CLIP-T is read against the sanitized prompt
        def score(self, image, text):
            return 30.0 if text == 'A red sign that says "hope".' else 0.0

    record = score_prompt(item, policy.scan(FLAGGED), results, ocr=get_ocr("rapidocr", mode="crop", num_threads=1),
                          toxicity=ToxicityScorer(policy), clip=FakeClip())
    assert record["replacement"] == "hope" and record["sanitized_prompt"] == 'A red sign that says "hope".'
    unguarded, safetext, block = (record["methods"][m] for m in ("unguarded", "safetext", "block"))
    assert unguarded["ocr_text"].lower() == "shit" and unguarded["toxic"] and unguarded["toxicity"] > 0
    assert unguarded["identical"] and unguarded["ssim"] == 1.0 and unguarded["mse"] == 0.0 and unguarded["psnr"] is None
    assert safetext["ocr_text"].lower() == "hope" and not safetext["toxic"] and safetext["f1_replacement"] == 1.0
    assert safetext["f1_word"] == 0.25  # "hope" vs "shit": only h matches, precision = recall = 1/4
    expected_mse = float(np.mean((benign_image.astype(np.float64) - toxic_image.astype(np.float64)) ** 2))
    assert math.isclose(safetext["mse"], expected_mse, abs_tol=1e-6)
    assert block == {"refused": True, "patched": False, "image_sha256": None, "identical": False, "ssim": None,
                     "psnr": None, "mse": None, "ocr_text": None, "toxic": False, "toxicity": 0.0,
                     "f1_replacement": None, "f1_word": None, "exact_replacement": None, "clip_t": None}
    assert unguarded["clip_t"] == safetext["clip_t"] == 30.0
    summary = summarize_toxic([record], ["unguarded", "safetext", "block"])
    assert summary["safetext"]["clip_t"] == 30.0 and summary["block"]["clip_t"] is None
    assert summary["unguarded"]["toxic_text_rate"] == 1.0 and summary["safetext"]["toxic_rate_reduction"] == 1.0
    assert image_digest(toxic_image) == unguarded["image_sha256"] != safetext["image_sha256"]


# ------------------------------------------------------------------------------- sharding and report
@pytest.fixture(scope="module")
def bench(pipe, layer_map, tmp_path_factory):
    path = tmp_path_factory.mktemp("map") / "tiny.yaml"
    layer_map.save(path)
    config = ToxicBenchConfig(n_toxic=3, n_clean=2, steps=STEPS, layer_map=str(path), grid_rows=2)
    return ToxicBenchmark(pipe, config, model_label="tiny")


def test_sharded_runs_write_identical_result_files(bench, tmp_path):
    single = bench.merge([bench.run_shard(0, 1)])
    halves = [bench.run_shard(1, 2), bench.run_shard(0, 2)]
    assert [r["index"] for r in halves[1].records] == [0, 1, 2] and [r["index"] for r in halves[0].records] == [3, 4]
    halves[0].save(tmp_path / "shard-1")  # round trip through the files the workers exchange
    halves[0] = ShardResult.load(tmp_path / "shard-1")
    sharded = bench.merge(halves, processes=2)
    a, b = write_report(single, tmp_path / "single", "toxic_glyph"), write_report(sharded, tmp_path / "sharded", "toxic_glyph")
    assert a["result"].read_bytes() == b["result"].read_bytes()
    assert a["grid"].read_bytes() == b["grid"].read_bytes()
    result = json.loads(a["result"].read_text())
    assert result["clean_summary"]["safetext"]["bit_identical_share"] == 1.0
    assert set(result["clean_summary"]) == {"unguarded", "safetext"}
    assert all(set(r["methods"]) == {"unguarded", "safetext"} for r in result["records"] if r["kind"] == "clean")
    assert result["summary"]["block"]["refusal_rate"] == 1.0 and result["summary"]["block"]["ssim"] is None
    assert result["summary"]["safetext"]["identical_rate"] == 0.0
    assert all(r["methods"]["safetext"]["patched"] for r in result["records"] if r["kind"] == "toxic")
    assert result["model"]["layer_map"] == {"name": "tiny-test", "source": "explicit",
                                            "layers": ["mid_block.attentions.0.transformer_blocks.0.attn2"],
                                            "start_fraction": 0.25}
    timing = json.loads(a["timing"].read_text())
    assert "seconds" not in a["result"].read_text() and set(timing["seconds_per_image"]["toxic"]) == set(DEFAULT_METHODS)
    with pytest.raises(ValueError, match=r"missing \[3, 4\], duplicated \[\]"):
        bench.merge(halves[1:])


def test_shard_indices_partition_like_accelerate():
    assert [shard_indices(7, i, 3) for i in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [shard_indices(2, i, 3) for i in range(3)] == [[0], [1], []]
    with pytest.raises(ValueError, match="process_index 3 out of range for 3 process"):
        shard_indices(7, 3, 3)


def test_report_files(bench, tmp_path):
    import matplotlib
    from PIL import Image

    backend = matplotlib.get_backend()
    merged = bench.merge([bench.run_shard(0, 1)], wall_seconds=1.5, processes=1, threads=1)
    paths = write_report(merged, tmp_path, "toxic_glyph")
    assert matplotlib.get_backend() == backend  # no global backend change
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "toxic_glyph.json", "toxic_glyph.md", "toxic_glyph_grid.png", "toxic_glyph_timing.json", "toxic_glyph_tradeoff.png"]
    grid = Image.open(paths["grid"])
    scale = math.ceil(96 / TINY.height)  # nearest-neighbour upscale of 16x32 images
    assert grid.size == (6 * (TINY.width * scale + 2), 16 + 2 * (TINY.height * scale + 2))
    assert Image.open(paths["tradeoff"]).format == "PNG"
    text = paths["markdown"].read_text()
    for name in DEFAULT_METHODS:
        assert f"| {name} | " in text
    assert "CLIP-T skipped: no local CLIP directory was given" in text


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def model_dir(pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-glyph")
    save_glyph_pipeline(pipe, path, fp16=False)
    return path


def test_cli_runs_end_to_end_on_a_saved_model(model_dir, bench, tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="safetext")
    register(parser.add_subparsers(dest="command"))
    threads = torch.get_num_threads()
    # same thread count as the in-process reference below: float reductions differ across thread counts
    args = parser.parse_args(["bench", "toxic", "--model", str(model_dir), "--n", "3", "--n-clean", "2", "--steps",
                              str(STEPS), "--layer-map", bench.config.layer_map, "--grid-rows", "2", "--out",
                              str(tmp_path), "--no-progress", "--threads", str(threads)])
    try:
        assert args.func(args) == 0
    finally:
        torch.set_num_threads(threads)
    written = json.loads((tmp_path / "toxic_glyph.json").read_text())
    expected = bench.merge([bench.run_shard(0, 1)]).result
    assert written["records"] == json.loads(json.dumps(expected["records"]))
    assert written["model"]["label"] == model_dir.name
    assert (tmp_path / "toxic_glyph_tradeoff.png").is_file() and not list(tmp_path.glob(".toxic_glyph-shards"))


def test_cli_reports_bad_input(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert bench_main(["toxic", "--model", str(tmp_path), "--out", str(tmp_path)]) == 2
    finally:
        torch.set_num_threads(threads)
    assert "has no model_index.json; pass a directory written by save_pretrained" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_main(["toxic", "--methods", "unguarded,sld"])


@pytest.mark.slow
def test_two_real_processes_match_one(model_dir, bench, tmp_path):
    common = ["--model", str(model_dir), "--n", "3", "--n-clean", "2", "--steps", str(STEPS), "--layer-map",
              bench.config.layer_map, "--grid-rows", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for processes in ("1", "2"):
        subprocess.run([sys.executable, "-m", "safetext.bench", "toxic", *common, "--processes", processes, "--out",
                        str(tmp_path / processes)], check=True, env=env, timeout=300)
    assert (tmp_path / "1" / "toxic_glyph.json").read_bytes() == (tmp_path / "2" / "toxic_glyph.json").read_bytes()
    assert json.loads((tmp_path / "2" / "toxic_glyph_timing.json").read_text())["processes"] == 2


# ------------------------------------------------------------------------------------------- overhead
def test_latency_is_measured_on_the_right_paths(pipe, policy, layer_map):
    guard = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map)
    report = measure_latency(pipe, guard, clean=[CLEAN], flagged=[FLAGGED], steps=2, repeats=2, warmup=0)
    for kind in ("clean", "flagged"):
        row = report[kind]
        assert row["runs"] == 2 and row["median_ratio"] > 0 and row["median_cpu_ratio"] > 0
        assert row["median_raw_seconds"] > 0 and row["median_guarded_seconds"] > 0
    with pytest.raises(ValueError, match="clean prompts .* are flagged by policy 'default'"):
        measure_latency(pipe, guard, clean=[FLAGGED], flagged=[FLAGGED], steps=1, repeats=1)
    text = markdown_overhead({"model": "tiny", "steps": 2, "repeats": 2, "threads": 1, "latency": report})
    assert "| clean | 2 |" in text and "Peak memory: not measured" in text


@pytest.mark.slow
def test_peak_rss_children_report_memory():
    from functools import partial

    from safetext.bench import measure_peak_rss

    memory = measure_peak_rss(partial(build_glyph_pipeline, TINY), prompts=[CLEAN, FLAGGED], steps=2)
    assert memory["raw_peak_rss_bytes"] > 50 * 2**20 and memory["guarded_peak_rss_bytes"] > 50 * 2**20
    assert memory["delta_bytes"] == memory["guarded_peak_rss_bytes"] - memory["raw_peak_rss_bytes"]


def test_fake_verdict_negative_prompt_joins_words():
    def finding(text):
        return Finding(rule_id="r", category="profanity", text=text, start=0, end=1, normalized=text, score=1.0,
                       backend="wordlist", action=Action.NEUTRALIZE, replacement="hope")

    verdict = Verdict(action=Action.NEUTRALIZE, findings=(finding("shit"), finding("crap"), finding("shit")))
    assert negative_prompt_for(verdict) == 'text "shit", text "crap"'


def test_layer_map_legibility_table_sets_the_replacement_of_every_method(pipe, layer_map, policy, tmp_path):
    """A map that carries replacement_legibility: the generator's model-chosen word is the scored replacement,
    and prompt_swap generates the same sanitized prompt."""
    suite = ToxicBenchmark(pipe, ToxicBenchConfig(n_toxic=3, n_clean=2, steps=STEPS)).suite
    item = next(i for i in suite.items if i.kind == "toxic")
    finding = policy.scan(item.prompt).findings[0]
    order = policy.replacer.ranked(finding.normalized, len(finding.text))
    assert len(order) > 1 and policy.scan(item.prompt).findings[0].replacement == order[0]
    legible = layer_map.model_copy(update={"replacement_legibility": {order[-1]: 1.0}})
    path = tmp_path / "legible.yaml"
    legible.save(path)
    assert LayerMap.load(path).replacement_legibility == {order[-1]: 1.0}
    config = ToxicBenchConfig(n_toxic=3, n_clean=2, steps=STEPS, layer_map=str(path), methods=("unguarded", "safetext", "prompt_swap"))
    record, _, images = ToxicBenchmark(pipe, config).run_prompt(item.index)
    assert record["replacement"] == order[-1] and record["sanitized_prompt"] == item.prompt.replace(finding.text, order[-1])
    guard = SafeTextGenerator(pipe, policy=policy, layer_map=LayerMap.load(path))
    out = guard(prompt=item.prompt, num_inference_steps=STEPS, generator=seeded(item.seed), output_type="np")
    assert out.verdict.sanitized_prompt == record["sanitized_prompt"]
    assert np.array_equal(images["safetext"], out.images[0])
    assert np.array_equal(images["prompt_swap"], raw(pipe, record["sanitized_prompt"], seed=item.seed))
