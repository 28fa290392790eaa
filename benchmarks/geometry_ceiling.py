"""What the glyph model's image geometry allows a text change to keep: the perfect-swap SSIM ceiling.

    python benchmarks/geometry_ceiling.py [--pairs 100]

For the held-out prompt pairs of ``localize_glyph.py`` (any word length, seed 1000; and equal length, seed
2000) it renders each pair as two training images that differ only in the word (same scene, same sign:
``safetext.models.glyph.data.rendered_word_swap``) and reports their SSIM: the most any method that changes
the letters can keep, and the share of pairs where even that reaches SSIM >= 0.85 (the localization and
edit acceptance of issue 4). It does so for the shipped geometry (a 24 x 96 sign on a 64 x 128 scene) and for
the same sign on larger canvases, which a future embedded model could be trained on; the pixel count says
how much more each denoising step would cost. Renderer only: no model, seconds on a CPU.

Writes ``geometry_ceiling.json`` / ``.md`` to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
SSIM_MIN = 0.85
SIGN = (24, 96)
CANVASES = ((64, 128), (96, 192), (128, 256), (192, 384))  # the first is the shipped model's


def ceiling(pairs, sign: tuple[int, int], canvas: tuple[int, int]) -> dict:
    """Mean perfect-swap SSIM and the share of pairs at or above :data:`SSIM_MIN`."""
    from safetext.models.glyph.data import COLORS, rendered_word_swap
    from safetext.scoring import ssim

    values = [
        float(ssim(*rendered_word_swap(p.source_text, p.target_text, COLORS[i % len(COLORS)], p.seed, sign, canvas)))
        for i, p in enumerate(pairs)
    ]
    return {"mean_ssim": statistics.fmean(values), "pass_rate": sum(v >= SSIM_MIN for v in values) / len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)

    from safetext.localize import glyph_prompt_pairs
    from safetext.localize.pairs import pair_words

    exclude = pair_words(glyph_prompt_pairs(32, split="common", seed=0, same_length=True))  # the localization's words
    sets = {
        "any length": glyph_prompt_pairs(args.pairs, split="common", seed=1000, exclude=exclude),
        "equal length": glyph_prompt_pairs(args.pairs, split="common", seed=2000, exclude=exclude, same_length=True),
    }
    rows = []
    for canvas in CANVASES:
        row = {"canvas": list(canvas), "sign": list(SIGN), "sign_share": SIGN[0] * SIGN[1] / (canvas[0] * canvas[1]),
               "pixels_vs_shipped": canvas[0] * canvas[1] / (CANVASES[0][0] * CANVASES[0][1])}
        for name, pairs in sets.items():
            row[name] = ceiling(pairs, SIGN, canvas)
        rows.append(row)
        print(f"{canvas}: " + ", ".join(f"{k} mean {row[k]['mean_ssim']:.3f} pass {row[k]['pass_rate']:.2f}" for k in sets), flush=True)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "geometry_ceiling.json").write_text(json.dumps({"pairs": args.pairs, "ssim_min": SSIM_MIN, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Perfect-swap ceiling of the glyph geometry",
        "",
        f"{args.pairs} held-out pairs per set (those of `localize_glyph.py`: any length seed 1000, equal length seed 2000), "
        "each rendered as two training images differing only in the word (same scene and sign). Their SSIM is the "
        f"most any text change can keep; 'pass' is the share of pairs where even that reaches SSIM >= {SSIM_MIN}.",
        "",
        "| canvas (sign 24 x 96) | sign share of image | pixels vs shipped | any length: mean SSIM | any length: pass | equal length: mean SSIM | equal length: pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shipped = " (shipped)" if tuple(row["canvas"]) == CANVASES[0] else ""
        lines.append(
            f"| {row['canvas'][0]} x {row['canvas'][1]}{shipped} | {row['sign_share']:.1%} | {row['pixels_vs_shipped']:.2f}x | "
            f"{row['any length']['mean_ssim']:.3f} | {row['any length']['pass_rate']:.2f} | "
            f"{row['equal length']['mean_ssim']:.3f} | {row['equal length']['pass_rate']:.2f} |"
        )
    (out / "geometry_ceiling.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'geometry_ceiling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
