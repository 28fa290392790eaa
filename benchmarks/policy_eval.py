"""Evaluate the policy engine against evasions written the way people type them, beside other filters.

Data: ``benchmarks/data/policy_eval/`` (see its README). Toxic prompts come in eight kinds
(misspellings and sound-alikes, glued compounds, abbreviations, full-Unicode homoglyphs, leetspeak,
separators, HTML and repeats, vocabulary), each split into a ``dev`` part (for tuning) and a
``test`` part (only measured). The split is fixed by a hash of the prompt (:func:`part_of`), checked
on load, so no case can move between parts. Clean prompts are text-to-image prompts full of the trap
words of word filters (Scunthorpe, cockpit, rapping, honky-tonk, tit for tat ...).

Reports, per part and per kind, the recall (toxic prompts flagged) and the false-positive rate
(clean prompts flagged) of:

- safetext's policy (``--policy``, default ``default``): flagged = the verdict neutralizes or blocks;
- better-profanity 0.7.0: ``contains_profanity(prompt)``;
- alt-profanity-check: ``predict_prob >= 0.5`` for the prompt or any of its words, as safetext's
  ``alt_profanity_check`` backend uses it (skipped with a note when not installed);

plus the scan latency p50/p99 of ``Policy.scan`` on one thread, over the evaluation prompts and over
30-word prompts. Writes ``benchmarks/results/policy_eval.json`` and ``.md``.

    OMP_NUM_THREADS=1 python benchmarks/policy_eval.py [--policy default] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safetext.policy import load_policy  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "policy_eval"
RESULTS = ROOT / "benchmarks" / "results"
KINDS = (
    "misspellings", "compounds", "abbreviations", "homoglyphs", "leetspeak", "separators", "html_repeats", "vocabulary",
)
PARTS = ("dev", "test")
# Scene words appended to reach 30 words for the latency measurement of long prompts.
_FILLER = (
    "highly detailed, sharp focus, cinematic lighting, soft shadows, 35mm film, shallow depth of field, "
    "warm colors, award winning photograph, wide angle lens, golden hour, volumetric fog, intricate textures, "
    "bokeh, film grain, dramatic sky, trending on artstation"
).split()


def part_of(prompt: str) -> str:
    """The part a case belongs to: ``dev`` or ``test``, from the SHA-256 of its prompt (fixed forever)."""
    return "dev" if int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "test"


def load_cases(data_dir: Path = DATA) -> dict[str, dict[str, list[dict]]]:
    """``{part: {kind or "clean": [case, ...]}}`` read from ``data_dir``.

    Raises:
        ValueError: a case sits in the file of the other part than :func:`part_of` assigns it.
    """
    cases: dict[str, dict[str, list[dict]]] = {part: {} for part in PARTS}
    for part in PARTS:
        for kind in KINDS + ("clean",):
            name = f"clean.{part}.jsonl" if kind == "clean" else f"toxic_{kind}.{part}.jsonl"
            rows = [json.loads(line) for line in (data_dir / name).read_text(encoding="utf-8").splitlines() if line.strip()]
            for row in rows:
                if part_of(row["prompt"]) != part:
                    raise ValueError(f"{name}: case {row['prompt']!r} belongs to part '{part_of(row['prompt'])}'")
            cases[part][kind] = rows
    return cases


def _better_profanity() -> Callable[[str], bool] | None:
    try:
        module = importlib.import_module("better_profanity")
    except ImportError:
        return None
    censor = module.Profanity()
    return censor.contains_profanity


def _alt_profanity_check() -> Callable[[str], bool] | None:
    try:
        module = importlib.import_module("profanity_check")
    except ImportError:
        return None
    def flagged(text: str) -> bool:
        # as safetext's alt_profanity_check backend uses it: the whole prompt and each of its words
        segments = [text] + text.split()
        return bool(max(module.predict_prob(segments)) >= 0.5)

    return flagged


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _thirty_words(prompt: str) -> str:
    """The prompt padded with scene words to (at least) 30 words."""
    words = prompt.split()
    words += _FILLER[: max(0, 30 - len(words))]
    return " ".join(words)


def _latency(scan: Callable[[str], object], prompts: list[str], rounds: int) -> dict:
    for prompt in prompts[:50]:
        scan(prompt)  # warm-up
    best_us = [float("inf")] * len(prompts)
    calls, cpu = [], []
    for _ in range(rounds):
        for index, prompt in enumerate(prompts):
            cpu_start = time.thread_time_ns()
            start = time.perf_counter_ns()
            scan(prompt)
            elapsed = (time.perf_counter_ns() - start) / 1000.0
            cpu.append((time.thread_time_ns() - cpu_start) / 1000.0)
            calls.append(elapsed)
            best_us[index] = min(best_us[index], elapsed)
    return {
        # per prompt: the best of `rounds` wall-clock scans (time preempted by other jobs is not scan time)
        "p50": round(statistics.median(best_us), 1),
        "p99": round(_percentile(best_us, 0.99), 1),
        "max": round(max(best_us), 1),
        "all_calls_p99": round(_percentile(calls, 0.99), 1),
        "cpu_p99": round(_percentile(cpu, 0.99), 1),
        "prompts": len(prompts),
    }


def evaluate(policy_name: str, rounds: int) -> dict:
    cases = load_cases()
    policy = load_policy(policy_name)
    detectors: dict[str, Callable[[str], bool]] = {f"safetext ({policy_name})": lambda t: policy.scan(t).flagged}
    notes = []
    for name, factory, package in (
        ("better-profanity", _better_profanity, "better-profanity"),
        ("alt-profanity-check", _alt_profanity_check, "alt-profanity-check"),
    ):
        detector = factory()
        if detector is None:
            notes.append(f"{name} is not installed (pip install {package}); its column is empty")
        else:
            detectors[name] = detector
    table: dict[str, dict[str, dict[str, float]]] = {}
    missed: dict[str, list[str]] = {part: [] for part in PARTS}
    false_positives: dict[str, list[str]] = {part: [] for part in PARTS}
    counts: dict[str, dict[str, int]] = {part: {} for part in PARTS}
    main = next(iter(detectors))
    for part in PARTS:
        table[part] = {}
        for kind in KINDS + ("toxic_all", "clean"):
            rows = (
                [row for k in KINDS for row in cases[part][k]] if kind == "toxic_all" else cases[part][kind]
            )
            counts[part][kind] = len(rows)
            table[part][kind] = {}
            for name, detector in detectors.items():
                hits = [detector(row["prompt"]) for row in rows]
                table[part][kind][name] = round(sum(hits) / len(rows), 4)
                if name == main and kind in KINDS:
                    missed[part] += [row["prompt"] for row, hit in zip(rows, hits) if not hit]
                if name == main and kind == "clean":
                    false_positives[part] += [row["prompt"] for row, hit in zip(rows, hits) if hit]
    prompts = [row["prompt"] for part in PARTS for kind in KINDS + ("clean",) for row in cases[part][kind]]
    load_before = os.getloadavg()[0]
    latency = _latency(policy.scan, prompts, rounds)
    latency_30 = _latency(policy.scan, [_thirty_words(p) for p in prompts], rounds)
    return {
        "policy": policy_name,
        "backends": list(policy.backends),
        "detectors": list(detectors),
        "counts": counts,
        "rates": table,
        "missed": missed,
        "false_positives": false_positives,
        "latency_us": latency,
        "latency_30_words_us": latency_30,
        "targets": {"test recall": ">= 0.97", "test false_positive_rate": "<= 0.01", "p99_us (30 words)": "< 1000"},
        "notes": notes,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(load_before, 2),
            "rounds": rounds,
        },
    }


def to_markdown(result: dict) -> str:
    names = result["detectors"]
    lines = [
        f"# Policy evaluation (policy `{result['policy']}`, backends: {', '.join(result['backends'])})",
        "",
        "Generated by `benchmarks/policy_eval.py` on the hand-written cases of `benchmarks/data/policy_eval/`. "
        "Toxic rows: recall (share of toxic prompts flagged). `clean` row: false-positive rate (share of clean "
        "prompts flagged). `dev` was used for tuning; `test` was only measured.",
        "",
    ]
    for part in ("test", "dev"):
        lines += [
            f"## {part} part",
            "",
            "| kind | cases | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for kind, per_name in result["rates"][part].items():
            label = "**all toxic (recall)**" if kind == "toxic_all" else ("**clean (FPR)**" if kind == "clean" else kind)
            cells = " | ".join(f"{per_name[name]:.3f}" for name in names)
            lines.append(f"| {label} | {result['counts'][part][kind]} | {cells} |")
        lines.append("")
    for key, title in (("latency_us", "evaluation prompts"), ("latency_30_words_us", "30-word prompts")):
        lat = result[key]
        lines.append(
            f"Scan latency, {title} ({lat['prompts']}): p50 {lat['p50']:.1f} us, p99 {lat['p99']:.1f} us, "
            f"max {lat['max']:.1f} us (best of {result['environment']['rounds']} rounds per prompt; every call: "
            f"wall p99 {lat['all_calls_p99']:.1f} us, CPU p99 {lat['cpu_p99']:.1f} us)."
        )
        lines.append("")
    env = result["environment"]
    lines += [
        f"One Python thread, {env['cpus']} CPUs shared with other jobs (1-minute load average {env['load_average_1m']} "
        f"at start), Python {env['python']}. Targets (test part): recall >= 0.97, FPR <= 0.01, 30-word p99 < 1000 us.",
        "",
    ]
    for note in result["notes"]:
        lines += [f"Note: {note}", ""]
    for part in ("test", "dev"):
        lines.append(f"Missed, {part} ({len(result['missed'][part])}): "
                     + (", ".join(f"`{m}`" for m in result["missed"][part]) or "none"))
        lines.append("")
        lines.append(f"False positives, {part} ({len(result['false_positives'][part])}): "
                     + (", ".join(f"`{m}`" for m in result["false_positives"][part]) or "none"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="default")
    parser.add_argument("--rounds", type=int, default=5, help="timing passes over the prompts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = evaluate(args.policy, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy_eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = to_markdown(result)
    (args.out / "policy_eval.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    main_name = result["detectors"][0]
    test = result["rates"]["test"]
    ok = (
        test["toxic_all"][main_name] >= 0.97
        and test["clean"][main_name] <= 0.01
        and result["latency_30_words_us"]["p99"] < 1000
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
