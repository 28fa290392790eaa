"""Toxicity benchmark: every guard method on toxic and clean prompt suites (see ``safetext bench toxic -h``).

    python benchmarks/toxic.py [--model DIR] [--suite glyph|simple|creative] [--n N] [--steps S]
                               [--processes N] [--clip-dir DIR] [--out benchmarks/results]

Writes ``benchmarks/results/toxic_<suite>.json`` (deterministic result document: identical for any
``--processes`` at the same ``--threads``), ``toxic_<suite>_timing.json`` (wall-clock numbers),
``toxic_<suite>.md`` (tables), ``toxic_<suite>_grid.png`` (before/after) and
``toxic_<suite>_tradeoff.png`` (toxic-text rate vs SSIM).
"""

from __future__ import annotations

import sys

from safetext.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["toxic", *sys.argv[1:]]))
