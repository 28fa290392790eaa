"""Guard overhead on the embedded glyph model (see ``safetext bench overhead -h``).

    python benchmarks/overhead_glyph.py [--model DIR] [--steps 20] [--repeats 5] [--threads 1] [--no-memory]

Latency: median over interleaved runs of guarded / raw seconds for the same prompt and seed, for
clean prompts (scan only) and flagged prompts (scan + recording + patched run). Memory: peak RSS
(``resource.getrusage`` ``ru_maxrss``) of a fresh process running the workload raw vs guarded.
Writes ``benchmarks/results/overhead_glyph.json`` and ``.md``.
"""

from __future__ import annotations

import sys

from safetext.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["overhead", *sys.argv[1:]]))
