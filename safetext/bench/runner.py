"""Run the toxicity benchmark: every method on every prompt with the same seed, sharded if asked.

    >>> bench = ToxicBenchmark(pipe, ToxicBenchConfig(suite="glyph", n_toxic=8, n_clean=4, steps=20))
    >>> result = bench.merge([bench.run_shard(0, 1)])
    >>> result.result["summary"]["safetext"]["toxic_text_rate"]

Sharding: prompts are split over processes, each prompt is generated with its own seed
(:attr:`BenchPrompt.seed`, not a per-shard generator), and the shards' records are merged by prompt
index. The result document (:attr:`BenchmarkResult.result`) is therefore the same whatever the number
of processes, provided each process uses the same number of intra-op threads (a different thread
count changes floating-point summation order, and so the images' last bits). Wall-clock numbers
differ from run to run, so they are kept out of it, in :attr:`BenchmarkResult.timing`.

:func:`run_distributed` is the multi-process entry point: under ``torch.distributed.run`` (what
``safetext bench toxic --processes N`` launches) or any launcher that sets ``RANK``/``WORLD_SIZE``,
accelerate's ``PartialState`` splits the prompts, each process saves its shard, and the main process
merges them and writes the report.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safetext.bench.methods import DEFAULT_METHODS, MethodContext, MethodResult, create_method
from safetext.bench.metrics import REFERENCE_METHOD, score_prompt, summarize_clean, summarize_toxic
from safetext.bench.suites import PromptSuite, build_suite

__all__ = ["BenchmarkResult", "ShardResult", "ToxicBenchConfig", "ToxicBenchmark", "run_distributed", "shard_indices"]

logger = logging.getLogger("safetext.bench")

RESULT_FORMAT = 1


@dataclass(frozen=True)
class ToxicBenchConfig:
    """What to run. Every field goes into the result document.

    Args:
        suite: ``glyph``, ``simple`` or ``creative`` (see :mod:`safetext.bench.suites`).
        split: ``test`` or ``validation``.
        n_toxic: toxic prompts (every method runs on each).
        n_clean: clean prompts (collateral damage: must come out bit-identical).
        seed: suite seed (prompt choice and per-prompt generator seeds).
        steps: denoising steps per image.
        guidance_scale: CFG scale (``None``: the pipeline's default).
        methods: method names, ``unguarded`` first (it is the similarity reference).
        clean_methods: methods run on the clean prompts (``None``: ``unguarded`` and ``safetext``). Every
            method leaves an unflagged prompt to the raw pipeline, so by default only the product's
            bit-identity is measured there, which keeps the default suite within its time budget.
        policy: policy name or YAML path for the guard and for flagging OCR text.
        layer_map: layer map file or preset name (``None``: the model's preset, else all layers).
        ocr: OCR backend name.
        ocr_mode: ``crop`` (recognition only; the glyph model's images are word crops) or ``full``
            (detection + recognition); ``None`` picks ``crop`` for the glyph suite, else ``full``.
        ocr_threads: onnxruntime threads of the OCR engine.
        clip_dir: local CLIP directory for CLIP-T (``None``: skipped).
        grid_rows: toxic prompts shown in the before/after grid.
    """

    suite: str = "glyph"
    split: str = "test"
    n_toxic: int = 100
    n_clean: int = 40
    seed: int = 0
    steps: int = 20
    guidance_scale: float | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    clean_methods: tuple[str, ...] | None = None
    policy: str = "default"
    layer_map: str | None = None
    ocr: str = "rapidocr"
    ocr_mode: str | None = None
    ocr_threads: int = 1
    clip_dir: str | None = None
    grid_rows: int = 6

    def __post_init__(self) -> None:
        methods = tuple(self.methods)
        if not methods or methods[0] != REFERENCE_METHOD:
            raise ValueError(f"methods must start with {REFERENCE_METHOD!r} (the similarity reference), got {list(methods)}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods contains duplicates: {list(methods)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.ocr_mode not in (None, "crop", "full"):
            raise ValueError(f"ocr_mode must be 'crop' or 'full', got {self.ocr_mode!r}")
        object.__setattr__(self, "methods", methods)
        if self.clean_methods is not None:
            clean = tuple(self.clean_methods)
            if not clean or clean[0] != REFERENCE_METHOD or not set(clean) <= set(methods):
                raise ValueError(
                    f"clean_methods must start with {REFERENCE_METHOD!r} and be among methods {list(methods)}, got {list(clean)}"
                )
            object.__setattr__(self, "clean_methods", clean)

    @property
    def resolved_clean_methods(self) -> tuple[str, ...]:
        if self.clean_methods is not None:
            return self.clean_methods
        return tuple(m for m in (REFERENCE_METHOD, "safetext") if m in self.methods)

    @property
    def resolved_ocr_mode(self) -> str:
        return self.ocr_mode or ("crop" if self.suite == "glyph" else "full")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"] = list(self.methods)
        data["clean_methods"] = list(self.resolved_clean_methods)
        data["ocr_mode"] = self.resolved_ocr_mode
        data["clip_dir"] = Path(self.clip_dir).name if self.clip_dir else None
        return data


@dataclass
class ShardResult:
    """What one process produced: scored records, timings and the grid's images, keyed by prompt index."""

    records: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    grid: dict[int, dict[str, np.ndarray | None]] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write ``<path>.json`` (records, timings) and ``<path>.npz`` (grid images)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        refused = {str(i): [m for m, im in row.items() if im is None] for i, row in self.grid.items()}
        payload = {"records": self.records, "timings": self.timings, "grid_refused": refused}
        path.with_suffix(".json").write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")
        arrays = {f"{i}/{m}": im for i, row in self.grid.items() for m, im in row.items() if im is not None}
        np.savez(path.with_suffix(".npz"), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "ShardResult":
        path = Path(path)
        payload = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        grid: dict[int, dict[str, np.ndarray | None]] = {}
        with np.load(path.with_suffix(".npz")) as arrays:
            for key in arrays.files:
                index, method = key.split("/", 1)
                grid.setdefault(int(index), {})[method] = arrays[key]
        for index, methods in payload["grid_refused"].items():
            for method in methods:
                grid.setdefault(int(index), {})[method] = None
        return cls(payload["records"], payload["timings"], grid)


@dataclass
class BenchmarkResult:
    """The merged benchmark.

    Attributes:
        result: the deterministic result document (what ``<stem>.json`` holds).
        timing: wall-clock numbers (``<stem>_timing.json``); differ between runs.
        grid: prompt index -> method -> image (``None`` when refused) for the before/after grid.
    """

    result: dict[str, Any]
    timing: dict[str, Any]
    grid: dict[int, dict[str, np.ndarray | None]]


def shard_indices(total: int, process_index: int, num_processes: int) -> list[int]:
    """Contiguous share of ``range(total)`` for one process, as accelerate's ``split_between_processes``.

    The first ``total % num_processes`` processes get one extra prompt.
    """
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(f"process_index {process_index} out of range for {num_processes} process(es)")
    base, extra = divmod(total, num_processes)
    start = process_index * base + min(process_index, extra)
    return list(range(start, start + base + (1 if process_index < extra else 0)))


class ToxicBenchmark:
    """The benchmark for one pipeline: suite, policy, layer map, methods and scorers, built once.

    Args:
        pipe: the diffusers pipeline under test.
        config: what to run.
        model_label: how the model is named in the report (e.g. its directory).

    Raises:
        ValueError: an unknown suite, split or method.
        BackendError: the OCR backend cannot load, or ``clip_dir`` is not a CLIP directory.
    """

    def __init__(self, pipe: Any, config: ToxicBenchConfig, *, model_label: str = "") -> None:
        from safetext.patching import ModelFingerprint, resolve_layer_map
        from safetext.policy import load_policy
        from safetext.scoring import CLIP_T_SKIP_MESSAGE, ToxicityScorer, get_ocr, load_clip_scorer, ocr_for_pipeline

        self.pipe = pipe
        self.config = config
        self.model_label = model_label
        self.suite: PromptSuite = build_suite(
            config.suite, split=config.split, n_toxic=config.n_toxic, n_clean=config.n_clean, seed=config.seed
        )
        self.policy = load_policy(config.policy)
        self.resolved = resolve_layer_map(pipe, config.layer_map)
        self.fingerprint = ModelFingerprint.of(pipe).short()
        call_kwargs: dict[str, Any] = {"num_inference_steps": config.steps}
        if config.guidance_scale is not None:
            call_kwargs["guidance_scale"] = config.guidance_scale
        context = MethodContext(pipe=pipe, policy=self.policy, layer_map=self.resolved.layer_map, call_kwargs=call_kwargs)
        self.methods = {name: create_method(name, context) for name in config.methods}
        ocr_options = {"mode": config.resolved_ocr_mode, "num_threads": config.ocr_threads} if config.ocr == "rapidocr" else {}
        # a pipeline that declares where it writes (the glyph model's sign in a scene) is read there
        self.ocr = ocr_for_pipeline(get_ocr(config.ocr, **ocr_options), pipe)
        self.toxicity = ToxicityScorer(self.policy)
        self.clip = load_clip_scorer(config.clip_dir) if config.clip_dir else None
        self.clip_note = None if self.clip is not None else CLIP_T_SKIP_MESSAGE

    # -- running -------------------------------------------------------------------------------------
    def run_prompt(self, index: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray | None]]:
        """Run every method on prompt ``index`` and score it: ``(record, timing, images)``."""
        item = self.suite.items[index]
        verdict = self.policy.scan(item.prompt)
        legibility = self.resolved.layer_map.replacement_legibility
        if legibility and verdict.action.value == "neutralize":
            from safetext.policy.replacement import rechoose

            # the words the generator writes for this model: every method replaces with the same ones
            verdict = rechoose(verdict, self.policy.replacer, legibility)
        results: dict[str, MethodResult] = {}
        seconds: dict[str, float] = {}
        names = self.config.methods if item.kind == "toxic" else self.config.resolved_clean_methods
        for name in names:
            method = self.methods[name]
            generator = torch.Generator("cpu").manual_seed(item.seed)
            started = time.perf_counter()
            results[name] = method.generate(item.prompt, verdict, generator)
            seconds[name] = time.perf_counter() - started
        started = time.perf_counter()
        toxic = item.kind == "toxic"
        record = score_prompt(
            item, verdict, results, ocr=self.ocr if toxic else None, toxicity=self.toxicity if toxic else None,
            clip=self.clip if toxic else None,
        )
        timing = {"index": index, "kind": item.kind, "seconds": seconds, "scoring_seconds": time.perf_counter() - started}
        return record, timing, {name: result.image for name, result in results.items()}

    def run_indices(self, indices: Sequence[int], *, progress: bool = False, position: int = 0) -> ShardResult:
        """Run the given prompts (any order, any subset) into a :class:`ShardResult`."""
        from tqdm.auto import tqdm

        shard = ShardResult()
        grid_indices = {item.index for item in self.suite.toxic[: self.config.grid_rows]}
        bar = tqdm(list(indices), desc=f"toxic bench [{position}]", position=position, disable=not progress, leave=True)
        for index in bar:
            record, timing, images = self.run_prompt(index)
            shard.records.append(record)
            shard.timings.append(timing)
            if index in grid_indices:
                shard.grid[index] = images
        return shard

    def run_shard(self, process_index: int = 0, num_processes: int = 1, *, progress: bool = False) -> ShardResult:
        """Run this process's contiguous share of the prompts (see :func:`shard_indices`)."""
        indices = shard_indices(len(self.suite.items), process_index, num_processes)
        return self.run_indices(indices, progress=progress, position=process_index)

    # -- merging -------------------------------------------------------------------------------------
    def merge(self, shards: Sequence[ShardResult], *, wall_seconds: float | None = None, processes: int | None = None,
              threads: int | None = None) -> BenchmarkResult:
        """Merge shards by prompt index into the result document, the timing document and the grid.

        Raises:
            ValueError: a prompt is missing or appears in two shards.
        """
        records = sorted((r for s in shards for r in s.records), key=lambda r: r["index"])
        indices = [r["index"] for r in records]
        expected = list(range(len(self.suite.items)))
        if indices != expected:
            missing = sorted(set(expected) - set(indices))
            duplicated = sorted({i for i in indices if indices.count(i) > 1})
            raise ValueError(f"shards do not cover the suite exactly once: missing {missing[:10]}, duplicated {duplicated[:10]}")
        methods = list(self.config.methods)
        layer_map = self.resolved.layer_map
        result = {
            "benchmark": "toxic",
            "format": RESULT_FORMAT,
            "suite": self.suite.to_dict(),
            "config": self.config.to_dict(),
            "model": {
                "label": self.model_label,
                "pipeline": type(self.pipe).__name__,
                "fingerprint": self.fingerprint,
                "layer_map": {
                    "name": layer_map.name,
                    "source": self.resolved.source,
                    "layers": list(layer_map.layers),
                    "start_fraction": layer_map.start_fraction,
                },
            },
            "methods": {name: self.methods[name].description for name in methods},
            "clip_t": self.clip_note or "scored against the sanitized prompt",
            "summary": summarize_toxic(records, methods),
            "clean_summary": summarize_clean(records, list(self.config.resolved_clean_methods)),
            "records": records,
        }
        timing = summarize_timing(
            [t for s in shards for t in s.timings], methods, wall_seconds=wall_seconds, processes=processes, threads=threads
        )
        grid = {i: row for s in shards for i, row in s.grid.items()}
        return BenchmarkResult(result, timing, dict(sorted(grid.items())))


def summarize_timing(timings: Sequence[dict[str, Any]], methods: Sequence[str], *, wall_seconds: float | None = None,
                     processes: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """Seconds per prompt for each method (toxic and clean prompts apart) and the scoring time."""
    timings = sorted(timings, key=lambda t: t["index"])

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    per_method = {
        kind: {
            name: mean([t["seconds"][name] for t in timings if t["kind"] == kind and name in t["seconds"]])
            for name in methods
        }
        for kind in ("toxic", "clean")
    }
    return {
        "processes": processes,
        "threads_per_process": threads,
        "wall_seconds": wall_seconds,
        "seconds_per_image": per_method,
        "scoring_seconds_per_prompt": mean([t["scoring_seconds"] for t in timings if t["kind"] == "toxic"]),
        "per_prompt": timings,
    }


def run_distributed(bench_factory: Any, out_dir: str | Path, stem: str, *, progress: bool = True,
                    threads: int | None = None, write: Any = None) -> BenchmarkResult | None:
    """Run one process's share under accelerate's ``PartialState`` and merge on the main process.

    Args:
        bench_factory: zero-argument callable returning this process's :class:`ToxicBenchmark`.
        out_dir: folder of the report; shards go to ``<out_dir>/.<stem>-shards`` and are removed.
        stem: report file stem (``toxic_glyph``).
        progress: show a tqdm bar per process.
        threads: intra-op threads per process (recorded in the timing document).
        write: callable ``write(result, out_dir, stem)`` run on the main process (the report writer).

    Returns:
        The merged result on the main process, ``None`` on the others.
    """
    import shutil

    from accelerate import PartialState

    state = PartialState(cpu=True)
    started = time.perf_counter()
    bench = bench_factory()
    shard_dir = Path(out_dir) / f".{stem}-shards"
    if state.is_main_process and shard_dir.exists():
        shutil.rmtree(shard_dir)
    state.wait_for_everyone()
    with state.split_between_processes(list(range(len(bench.suite.items)))) as indices:
        shard = bench.run_indices(list(indices), progress=progress, position=state.process_index)
    shard.save(shard_dir / f"shard-{state.process_index}")
    state.wait_for_everyone()
    merged = None
    if state.is_main_process:
        shards = [ShardResult.load(shard_dir / f"shard-{i}") for i in range(state.num_processes)]
        merged = bench.merge(shards, wall_seconds=time.perf_counter() - started, processes=state.num_processes,
                             threads=threads)
        if write is not None:
            write(merged, out_dir, stem)
        shutil.rmtree(shard_dir)
    state.wait_for_everyone()
    return merged
