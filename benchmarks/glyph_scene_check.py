"""Quick check of a glyph checkpoint while it trains: spelling, and the K/V-swap premise with SSIM.

    python benchmarks/glyph_scene_check.py --model runs/glyph_scene/export [--out benchmarks/results/glyph_scene_check]

1. OCR exact match (rapidocr on the sign, see ``safetext.scoring.text_region``) on ``--n`` prompts of
   training-vocabulary words, at each ``--guidance`` scale, with the rate per word length.
2. The paper's premise: ``--pairs`` prompts writing a toxic word, patched with the K/V of the same prompt
   writing an equal-length replacement word (the policy's neutralization), on ``--layers`` from
   ``--start``: how often OCR reads the replacement, SSIM of the patched image to the unpatched one, and
   SSIM of the regenerated target prompt (same seed) for comparison.

Smaller and faster than ``glyph_eval.py`` (about 2 minutes on 2 CPU threads for the 64x128 scene model);
for checkpoints, not for the acceptance numbers. Writes ``<out>.json`` and ``<out>.png`` (rows: unpatched,
patched, regenerated target).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_LAYERS = "up_blocks.0.attentions.1.transformer_blocks.0.attn2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="glyph pipeline directory")
    parser.add_argument("--n", type=int, default=60, help="spelling prompts")
    parser.add_argument("--guidance", default="1,1.5", help="CFG scales of the spelling check")
    parser.add_argument("--pairs", type=int, default=25, help="K/V-swap pairs")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help="comma-separated attention modules to patch")
    parser.add_argument("--start", type=float, default=0.3, help="start fraction of the patch")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "glyph_scene_check"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from PIL import Image

    from safetext.models.glyph import load_glyph_pipeline
    from safetext.models.glyph.data import COLORS, TEMPLATES, load_vocabulary, make_prompt
    from safetext.patching import KVPatch
    from safetext.scoring import exact_match, get_ocr, ocr_for_pipeline, ssim

    pipe = load_glyph_pipeline(args.model)
    ocr = ocr_for_pipeline(get_ocr("rapidocr", mode="crop"), pipe)
    vocab = load_vocabulary()
    rng = random.Random(5)
    words = rng.sample(list(vocab["train"]), args.n)
    prompts = [make_prompt(w, rng.choice(COLORS), rng.randrange(len(TEMPLATES))) for w in words]
    kw = dict(num_inference_steps=args.steps, output_type="np")
    results: dict = {"model": args.model, "steps": args.steps, "size": list(pipe.default_size), "sign_size": list(pipe.sign_size)}
    spelling = []
    for scale in [float(x) for x in args.guidance.split(",") if x.strip()]:
        started = time.perf_counter()
        images = pipe(prompts, guidance_scale=scale, generator=torch.Generator().manual_seed(0), **kw).images
        seconds = (time.perf_counter() - started) / len(prompts)
        reads = [ocr.read(image).text for image in images]
        hits = [exact_match(r, w) for r, w in zip(reads, words)]
        by_length: dict[int, list[bool]] = {}
        for word, hit in zip(words, hits):
            by_length.setdefault(len(word), []).append(hit)
        row = {
            "guidance_scale": scale, "n": len(words), "exact_match": float(np.mean(hits)), "seconds_per_image": seconds,
            "exact_match_by_length": {str(k): float(np.mean(v)) for k, v in sorted(by_length.items())},
            "examples_of_misses": [(w, r) for w, r, h in zip(words, reads, hits) if not h][:10],
        }
        spelling.append(row)
        print(f"guidance {scale:g}: exact {row['exact_match']:.3f} by length {row['exact_match_by_length']}", flush=True)
    results["spelling"] = spelling

    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    patch = KVPatch(pipe, layers, args.start)
    sources, targets, replacements = [], [], []
    for i in range(args.pairs):
        a = vocab["toxic"][i % len(vocab["toxic"])]
        b = rng.choice([w for w in vocab["replacements"] if len(w) == len(a) and w != a] or list(vocab["replacements"]))
        colour, template = rng.choice(COLORS), rng.randrange(len(TEMPLATES))
        sources.append(make_prompt(a, colour, template))
        targets.append(make_prompt(b, colour, template))
        replacements.append(b)
    base = pipe(sources, generator=torch.Generator().manual_seed(0), **kw).images
    patched, report = patch.generate(prompt=sources, target_prompt=targets, generator=torch.Generator().manual_seed(0), **kw)
    regenerated = pipe(targets, generator=torch.Generator().manual_seed(0), **kw).images
    reads = [exact_match(ocr.read(image).text, b) for image, b in zip(patched.images, replacements)]
    sims = [float(ssim(a, b)) for a, b in zip(base, patched.images)]
    regen = [float(ssim(a, b)) for a, b in zip(base, regenerated)]
    results["kv_swap_same_length"] = {
        "pairs": args.pairs, "layers": layers, "start_fraction": args.start, "start_step": report.start_step,
        "read_as_replacement": float(np.mean(reads)), "mean_ssim": float(np.mean(sims)), "min_ssim": float(np.min(sims)),
        "read_and_ssim_at_least_0_85": float(np.mean([r and s >= 0.85 for r, s in zip(reads, sims)])),
        "regenerated_target_mean_ssim": float(np.mean(regen)),
    }
    k = results["kv_swap_same_length"]
    print(f"K/V swap: read {k['read_as_replacement']:.2f}, SSIM mean {k['mean_ssim']:.3f} min {k['min_ssim']:.3f}, "
          f"both {k['read_and_ssim_at_least_0_85']:.2f}; regenerated target SSIM {k['regenerated_target_mean_ssim']:.3f}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, sort_keys=True))
    rows = [np.concatenate([a, b, c], 1) for a, b, c in zip(base[:8], patched.images[:8], regenerated[:8])]
    grid = (np.concatenate(rows, 0) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
