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

Languages beyond English (``--languages``): per language (de, es, fr, pt, it, nl) toxic prompts with
obfuscations and clean prompts with trap words (``lang_<code>_{toxic,clean}.{dev,test}.jsonl``, written
in that language, same hash split), scanned with ``languages: [en, <code>]`` and with every language
enabled; the English cases with every language enabled beside the default policy; and the 30-word scan
latency with English only vs every language. Writes ``benchmarks/results/policy_eval_languages.json``
and ``.md``.

    OMP_NUM_THREADS=1 python benchmarks/policy_eval.py --languages [--rounds 5]

Round 2 (``--round 2``): a second held-out set in ``benchmarks/data/policy_eval/round2/`` (same kinds,
languages, format and split), written after round 1 had informed the matcher. Results go to
``policy_eval_round2*.{json,md}`` (``--label first_test_run`` appends a label to the file names). The
prompts of round-2 test misses and false positives are never written out (counts only), so that the test
part cannot inform tuning; dev prompts are listed as in round 1.

Round 3 (``--round 3``): a third blind set in ``benchmarks/data/policy_eval/round3/`` (the eight English
kinds, clean prompts and the six languages' rows), written without reference to safetext's word lists or
matcher and measured only after the matcher work it follows. Results go to ``policy_eval_round3*.{json,md}``; test prompts are withheld as in round 2.

Round 4 (``--round 4``): a fourth blind set in ``benchmarks/data/policy_eval/round4/``, written the same
way after round 3's dev part had been used for tuning; results go to ``policy_eval_round4*.{json,md}``,
test prompts withheld.
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
DATA_ROUNDS = {1: DATA, 2: DATA / "round2", 3: DATA / "round3", 4: DATA / "round4"}
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
    return {
        part: {
            kind: _read_part(data_dir, f"clean.{part}.jsonl" if kind == "clean" else f"toxic_{kind}.{part}.jsonl", part)
            for kind in KINDS + ("clean",)
        }
        for part in PARTS
    }


def _read_part(data_dir: Path, name: str, part: str) -> list[dict]:
    """The cases of one JSONL file, each checked to belong to ``part`` by :func:`part_of`."""
    rows = [json.loads(line) for line in (data_dir / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if part_of(row["prompt"]) != part:
            raise ValueError(f"{name}: case {row['prompt']!r} belongs to part '{part_of(row['prompt'])}'")
    return rows


LANGUAGES = ("de", "es", "fr", "pt", "it", "nl")


def load_language_cases(code: str, data_dir: Path = DATA) -> dict[str, dict[str, list[dict]]]:
    """``{part: {"toxic": [...], "clean": [...]}}`` of one language, checked against :func:`part_of` like the English cases."""
    return {
        part: {kind: _read_part(data_dir, f"lang_{code}_{kind}.{part}.jsonl", part) for kind in ("toxic", "clean")}
        for part in PARTS
    }


def _with_languages(base_name: str, languages: tuple[str, ...]):
    base = load_policy(base_name).config
    name = f"{base_name}-{'-'.join(languages)}"[:64]
    return load_policy(base.model_copy(update={"languages": languages, "name": name}).model_dump())


def _load_seconds(policy_name: str) -> float:
    """Seconds ``load_policy(policy_name)`` takes in a fresh interpreter (after ``import safetext.policy``)."""
    import subprocess

    code = (
        "import time; from safetext.policy import load_policy; start = time.perf_counter(); "
        f"load_policy({policy_name!r}); print(time.perf_counter() - start)"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    return round(float(out.strip().splitlines()[-1]), 2)


def evaluate_languages(policy_name: str, rounds: int, data_dir: Path = DATA) -> dict:
    """Recall/FPR per language (alone beside English, and all together), English with all, and latency."""
    everything = ("en",) + LANGUAGES
    all_policy = _with_languages(policy_name, everything)
    rates: dict[str, dict[str, dict[str, float]]] = {part: {} for part in PARTS}
    counts: dict[str, dict[str, int]] = {part: {} for part in PARTS}
    missed: dict[str, list[str]] = {part: [] for part in PARTS}
    false_positives: dict[str, list[str]] = {part: [] for part in PARTS}
    prompts: list[str] = []
    for code in LANGUAGES:
        cases = load_language_cases(code, data_dir)
        single = _with_languages(policy_name, ("en", code))
        for part in PARTS:
            toxic, clean = cases[part]["toxic"], cases[part]["clean"]
            prompts += [row["prompt"] for row in toxic + clean]
            counts[part][code] = {"toxic": len(toxic), "clean": len(clean)}
            row_rates = {}
            for label, policy in ((f"en+{code}", single), ("all", all_policy)):
                hits = [policy.scan(row["prompt"]).flagged for row in toxic]
                fps = [policy.scan(row["prompt"]).flagged for row in clean]
                row_rates[f"{label} recall"] = round(sum(hits) / len(toxic), 4)
                row_rates[f"{label} FPR"] = round(sum(fps) / len(clean), 4)
                if label == "all":
                    missed[part] += [row["prompt"] for row, hit in zip(toxic, hits) if not hit]
                    false_positives[part] += [row["prompt"] for row, hit in zip(clean, fps) if hit]
            rates[part][code] = row_rates
    english = load_cases(data_dir)
    default = load_policy(policy_name)
    english_rates: dict[str, dict[str, float]] = {}
    changed = []
    for part in PARTS:
        toxic = [row for kind in KINDS for row in english[part][kind]]
        clean = english[part]["clean"]
        per = {}
        for label, policy in (("en only", default), ("all languages", all_policy)):
            per[f"{label} recall"] = round(sum(policy.scan(r["prompt"]).flagged for r in toxic) / len(toxic), 4)
            per[f"{label} FPR"] = round(sum(policy.scan(r["prompt"]).flagged for r in clean) / len(clean), 4)
        english_rates[part] = per
        for row in toxic + clean:
            a, b = default.scan(row["prompt"]), all_policy.scan(row["prompt"])
            if (a.action, a.sanitized_prompt) != (b.action, b.sanitized_prompt):
                changed.append(row["prompt"])
    english_prompts = [row["prompt"] for part in PARTS for kind in KINDS + ("clean",) for row in english[part][kind]]
    thirty = [_thirty_words(p) for p in prompts + english_prompts]
    latency = {
        "en only": _latency(default.scan, thirty, rounds),
        "all languages": _latency(all_policy.scan, thirty, rounds),
    }
    return {
        "policy": policy_name,
        "languages": list(everything),
        "counts": counts,
        "rates": rates,
        "english": english_rates,
        "english_changed": changed,
        "missed": missed,
        "false_positives": false_positives,
        "latency_30_words_us": latency,
        "load_seconds": {name: _load_seconds(name) for name in ("default", "strict")},
        "targets": {"test recall": ">= 0.95", "test false_positive_rate": "<= 0.02", "p99_us (30 words, all languages)": "< 2000"},
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "rounds": rounds,
        },
    }


def languages_markdown(result: dict) -> str:
    lines = [
        f"# Policy evaluation beyond English (policy `{result['policy']}` with `languages`)",
        "",
        "Generated by `benchmarks/policy_eval.py --languages` on the hand-written cases "
        f"`{result.get('data', 'benchmarks/data/policy_eval')}/lang_*`. `en+xx`: `languages: [en, xx]`; `all`: "
        f"`languages: {result['languages']}`. `dev` was used for tuning; `test` was only measured.",
        "",
    ]
    for part in ("test", "dev"):
        lines += [
            f"## {part} part",
            "",
            "| language | toxic | clean | en+xx recall | en+xx FPR | all recall | all FPR |",
            "|---|---|---|---|---|---|---|",
        ]
        for code, row in result["rates"][part].items():
            n = result["counts"][part][code]
            lines.append(
                f"| {code} | {n['toxic']} | {n['clean']} | {row[f'en+{code} recall']:.3f} | {row[f'en+{code} FPR']:.3f} "
                f"| {row['all recall']:.3f} | {row['all FPR']:.3f} |"
            )
        eng = result["english"][part]
        lines += [
            "",
            f"English cases ({part}): recall {eng['en only recall']:.3f} (en only) vs {eng['all languages recall']:.3f} "
            f"(all languages); FPR {eng['en only FPR']:.3f} vs {eng['all languages FPR']:.3f}.",
            "",
        ]
    withheld = result.get("withheld", {}).get("english_changed")
    lines.append(f"English prompts whose verdict changes with every language enabled: {len(result['english_changed'])}"
                 + (f" in dev ({withheld} more in test, withheld)" if withheld is not None else "")
                 + ("".join(f"\n- `{p}`" for p in result["english_changed"])))
    lines.append("")
    for label, lat in result["latency_30_words_us"].items():
        lines.append(
            f"Scan latency, 30-word prompts ({lat['prompts']}), {label}: p50 {lat['p50']:.1f} us, p99 {lat['p99']:.1f} us, "
            f"max {lat['max']:.1f} us (best of {result['environment']['rounds']} rounds; every call: wall p99 "
            f"{lat['all_calls_p99']:.1f} us)."
        )
        lines.append("")
    if "load_seconds" in result:
        lines += [
            "Policy load time in a fresh interpreter: " + ", ".join(f"`{name}` {sec:.2f} s" for name, sec in result["load_seconds"].items())
            + " (`strict` enables every language and builds their word tables).",
            "",
        ]
    env = result["environment"]
    lines += [
        f"One Python thread, {env['cpus']} CPUs shared with other jobs (load {env['load_average_1m']}), Python "
        f"{env['python']}. Targets (test part): recall >= 0.95, FPR <= 0.02 per language; 30-word p99 < 2000 us "
        "with every language.",
        "",
    ]
    lines += _case_lists(result)
    return "\n".join(lines)


def _withhold_test_prompts(result: dict) -> dict:
    """Replace the test part's missed and false-positive prompts by their counts (round 2: nothing to tune on)."""
    result["withheld"] = {key: len(result[key]["test"]) for key in ("missed", "false_positives")}
    for key in ("missed", "false_positives"):
        result[key]["test"] = []
    if "english_changed" in result:
        result["withheld"]["english_changed"] = sum(part_of(p) == "test" for p in result["english_changed"])
        result["english_changed"] = [p for p in result["english_changed"] if part_of(p) == "dev"]
    return result


def _case_lists(result: dict) -> list[str]:
    """Markdown lines listing the missed and falsely flagged prompts per part (counts only where withheld)."""
    lines = []
    withheld = result.get("withheld", {})
    for part in ("test", "dev"):
        for key, title in (("missed", "Missed"), ("false_positives", "False positives")):
            if part == "test" and key in withheld:
                lines += [f"{title}, test ({withheld[key]}): prompts withheld (held-out part).", ""]
                continue
            cases = result[key][part]
            lines += [f"{title}, {part} ({len(cases)}): " + (", ".join(f"`{m}`" for m in cases) or "none"), ""]
    return lines


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


def evaluate(policy_name: str, rounds: int, data_dir: Path = DATA) -> dict:
    cases = load_cases(data_dir)
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
        f"Generated by `benchmarks/policy_eval.py` on the hand-written cases of `{result.get('data', 'benchmarks/data/policy_eval')}/`. "
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
    lines += _case_lists(result)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="default")
    parser.add_argument("--rounds", type=int, default=5, help="timing passes over the prompts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--languages", action="store_true", help="evaluate the languages beyond English instead")
    parser.add_argument("--round", type=int, choices=sorted(DATA_ROUNDS), default=1, help="which set of cases (see the data READMEs)")
    parser.add_argument("--label", default="", help="appended to the result file names, e.g. first_test_run")
    args = parser.parse_args(argv)
    data_dir = DATA_ROUNDS[args.round]
    if args.languages and not any(data_dir.glob("lang_*.jsonl")):
        parser.error(f"--languages: round {args.round} has English cases only ({data_dir.relative_to(ROOT)}); use a round whose folder has lang_* files")
    suffix = ("" if args.round == 1 else f"_round{args.round}") + (f"_{args.label}" if args.label else "")

    def finish(result: dict) -> dict:
        result["data"] = str(data_dir.relative_to(ROOT))
        return _withhold_test_prompts(result) if args.round > 1 else result

    def write(name: str, result: dict, markdown: str) -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (args.out / f"{name}.md").write_text(markdown, encoding="utf-8")
        print(markdown)

    if args.languages:
        result = finish(evaluate_languages(args.policy, args.rounds, data_dir))
        write(f"policy_eval_languages{suffix}", result, languages_markdown(result))
        test = result["rates"]["test"]
        ok = all(row["all recall"] >= 0.95 and row["all FPR"] <= 0.02 for row in test.values())
        return 0 if ok and result["latency_30_words_us"]["all languages"]["p99"] < 2000 else 1
    result = finish(evaluate(args.policy, args.rounds, data_dir))
    write(f"policy_eval{suffix}", result, to_markdown(result))
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
