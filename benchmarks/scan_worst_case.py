"""Worst-case scan time per 1,000 characters: adversarial prompt shapes at several lengths.

    python benchmarks/scan_worst_case.py [--policy default] [--lengths 1000 2500 10000] [--repeats 3]

Scans every shape of ``tests/adversarial_text.py`` (long whitespace and separator runs, many findings,
long words, unclosed quotes, combining marks ...) with the policy, best of ``--repeats`` runs, and
reports milliseconds per 1,000 characters. Linear code keeps that number flat as the length grows;
the ``growth`` column is (ms per 1,000 chars at the longest length) / (at the shortest). Also times
rendered-text extraction alone and a benign prompt for reference. Writes
``benchmarks/results/scan_worst_case.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
RESULTS = ROOT / "results"

BENIGN = "A red protest sign that says \"peace\" held by a woman in a crowded street at dusk, photo. "


def best_of(repeats: int, func, text: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        func(text)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="default")
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help="prompt lengths (default: 1000, 2500 and the policy's max_prompt_chars)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "scan_worst_case"), help="output path without extension")
    args = parser.parse_args(argv)

    from safetext.policy import find_rendered_spans, load_policy
    from tests.adversarial_text import SHAPES

    policy = load_policy(args.policy)
    lengths = sorted(args.lengths or {1000, 2500, policy.config.max_prompt_chars})
    if lengths[-1] > policy.config.max_prompt_chars:
        parser.error(f"--lengths above the policy's max_prompt_chars ({policy.config.max_prompt_chars})")
    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    shapes = {"benign": lambda n: (BENIGN * (n // len(BENIGN) + 1))[:n], **SHAPES}
    rows = []
    for name, build in shapes.items():
        row = {"shape": name, "scan_ms_per_1000": {}, "rendered_ms_per_1000": {}}
        for n in lengths:
            text = build(n)
            row["scan_ms_per_1000"][n] = round(best_of(args.repeats, policy.scan, text) * 1e6 / n, 3)
            row["rendered_ms_per_1000"][n] = round(best_of(args.repeats, find_rendered_spans, text) * 1e6 / n, 3)
        low, high = row["scan_ms_per_1000"][lengths[0]], row["scan_ms_per_1000"][lengths[-1]]
        row["growth"] = round(high / low, 2) if low > 0 else None
        rows.append(row)
        print(f"{name:22s} " + " ".join(f"{row['scan_ms_per_1000'][n]:8.2f}" for n in lengths) + f"  x{row['growth']}")
    worst = max(rows, key=lambda r: max(r["scan_ms_per_1000"].values()))
    report = {
        "command": " ".join(["python benchmarks/scan_worst_case.py", *(sys.argv[1:] if argv is None else argv)]),
        "policy": policy.name,
        "lengths": lengths,
        "repeats": args.repeats,
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "load_average_1m_at_start": load_at_start},
        "rows": rows,
        "worst": {"shape": worst["shape"], "scan_ms_per_1000": max(worst["scan_ms_per_1000"].values()),
                  "max_growth": max(r["growth"] for r in rows if r["growth"] is not None)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    lengths = r["lengths"]
    env = r["environment"]
    head = " | ".join(f"scan @ {n}" for n in lengths)
    lines = [
        "# Worst-case scan time per 1,000 characters",
        "",
        f"Policy `{r['policy']}`; every prompt shape of `tests/adversarial_text.py` at {', '.join(map(str, lengths))} "
        f"characters, best of {r['repeats']} runs. Python {env['python']}, {env['cpu_count']} CPU cores, "
        f"1-minute load average {env['load_average_1m_at_start']} at start (other jobs shared the cores).",
        f"Produced by `{r['command']}`.",
        "",
        "Milliseconds per 1,000 characters (whole `Policy.scan`, and rendered-text extraction alone at the longest "
        "length). Linear code keeps a row flat: `growth` is the longest length's value over the shortest's "
        "(a quadratic shape would grow with the length ratio, here "
        f"{lengths[-1] / lengths[0]:.0f}x).",
        "",
        f"| shape | {head} | rendered @ {lengths[-1]} | growth |",
        "|---|" + "---|" * (len(lengths) + 2),
    ]
    for row in r["rows"]:
        cells = " | ".join(f"{row['scan_ms_per_1000'][n]:.2f}" for n in lengths)
        lines.append(f"| {row['shape']} | {cells} | {row['rendered_ms_per_1000'][lengths[-1]]:.2f} | {row['growth']} |")
    w = r["worst"]
    lines += [
        "",
        f"Worst shape: `{w['shape']}`, {w['scan_ms_per_1000']:.2f} ms per 1,000 characters; largest growth "
        f"{w['max_growth']}x over a {lengths[-1] / lengths[0]:.0f}x longer prompt. Before the fix, 10,000 spaces took "
        "~14 s (1,400 ms per 1,000 characters, growing with the length).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
