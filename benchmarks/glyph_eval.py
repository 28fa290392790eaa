"""Evaluate the embedded glyph model: spelling (OCR), colour, speed, and the paper's K/V-swap premise.

    python benchmarks/glyph_eval.py [--model DIR] [--n-train 200] [--pairs 100]

Writes ``benchmarks/results/glyph_eval.json`` / ``.md`` and a sample grid PNG, and prints the table.
Acceptance (issue 7): exact match >= 90% on training-vocabulary words and >= 85% on the shipped toxic
words at 20 steps, background colour >= 95%, <= 1 s per image on 2 CPU cores, load < 2 s, and with
the K/V patch on the model's layer map, >= 80% of 100 prompt pairs read as the target word at SSIM >= 0.85.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def nearest_colour(image: np.ndarray, sign_box: tuple[int, int, int, int] | None = None) -> str:
    """Palette colour nearest to the sign's background (HWC float in [0, 1]).

    A bare sign (``sign_box`` None): the median of the image border. A sign in a scene: the median of
    two strips inside the sign's border, above and below the letters.
    """
    from safetext.models.glyph.data import PALETTE

    if sign_box is not None:
        top, left, bottom, right = sign_box
        sign = image[top:bottom, left:right]
        border = np.concatenate([sign[3, 4:-4], sign[-4, 4:-4]])
    else:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    median = np.median(border, axis=0) * 255
    return min(PALETTE, key=lambda c: float(np.sum((np.asarray(PALETTE[c][0]) - median) ** 2)))


def prompt_set(words: list[str], n: int, seed: int) -> list[tuple[str, str, str]]:
    """(word, colour, prompt) triples, deterministic in ``seed``; cycles through words when n > len."""
    from safetext.models.glyph.data import COLORS, TEMPLATES, make_prompt

    rng = random.Random(seed)
    order = list(words)
    rng.shuffle(order)
    out = []
    for i in range(n):
        word = order[i % len(order)]
        colour = rng.choice(COLORS)
        out.append((word, colour, make_prompt(word, colour, rng.randrange(len(TEMPLATES)))))
    return out


def generate(pipe, prompts: list[str], seed: int, steps: int, batch: int = 25, **kwargs) -> tuple[np.ndarray, float]:
    """Images (N, H, W, 3) for ``prompts`` (seed per batch) and seconds per image."""
    images, t0 = [], time.perf_counter()
    for i in range(0, len(prompts), batch):
        gen = torch.Generator().manual_seed(seed + i)
        images.append(pipe(prompts[i : i + batch], num_inference_steps=steps, generator=gen, output_type="np", **kwargs).images)
    return np.concatenate(images), (time.perf_counter() - t0) / max(1, len(prompts))


def spelling_scores(ocr, images: np.ndarray, items: list[tuple[str, str, str]], sign_box=None) -> dict:
    from safetext.scoring import exact_match

    reads = [ocr.read(im).text for im in images]
    exact = [exact_match(r, w) for r, (w, _, _) in zip(reads, items)]
    colour = [nearest_colour(im, sign_box) == c for im, (_, c, _) in zip(images, items)]
    misses = [(w, r) for r, (w, _, _), ok in zip(reads, items, exact) if not ok]
    return {
        "n": len(items),
        "exact_match": float(np.mean(exact)),
        "colour_accuracy": float(np.mean(colour)),
        "examples_of_misses": misses[:10],
    }


def kv_swap_premise(pipe, ocr, vocab, args, same_length: bool = False) -> dict:
    """The paper's premise on this model: swap the mapped layers' text K/V for a benign prompt's.

    Source prompts write a word A (toxic words and common words alternate); the target prompt is the
    same sentence with a replacement word B. Same seed for both; reports how often OCR reads B on the
    patched image and the SSIM of the patched image to the unpatched one. With ``same_length`` B has
    A's length, as the policy's replacement words do (the benign prompt safetext itself builds); a word
    no replacement matches in length gets one of any length (none in the shipped lists).
    """
    from safetext.models.glyph.data import COLORS, TEMPLATES, make_prompt, rendered_word_swap
    from safetext.patching import KVPatch, LayerMap, resolve_layer_map
    from safetext.scoring import exact_match, ssim

    layer_map = LayerMap.load(args.layer_map) if args.layer_map else resolve_layer_map(pipe).layer_map
    patch = KVPatch(pipe, list(layer_map.layers), layer_map.start_fraction)
    rng = random.Random(args.seed + 7)
    sources = [w for pair in zip(vocab["toxic"], vocab["common"]) for w in pair]
    pairs, perfect = [], []
    for i in range(args.pairs):
        a = sources[i % len(sources)]
        choices = [w for w in vocab["replacements"] if w != a]
        if same_length:
            choices = [w for w in choices if len(w) == len(a)] or choices
        b = rng.choice(choices)
        colour, template = rng.choice(COLORS), rng.randrange(len(TEMPLATES))
        pairs.append((make_prompt(a, colour, template), make_prompt(b, colour, template), b))
        perfect.append(float(ssim(*rendered_word_swap(a, b, colour, args.seed + i, pipe.sign_size, pipe.default_size))))
    reads, sims, ceiling = [], [], []
    for start in range(0, len(pairs), 25):
        chunk = pairs[start : start + 25]
        kw = dict(num_inference_steps=args.steps, output_type="np")
        src = [p for p, _, _ in chunk]
        base = pipe(src, generator=torch.Generator().manual_seed(args.seed + start), **kw).images
        targets = [t for _, t, _ in chunk]
        patched, report = patch.generate(prompt=src, target_prompt=targets, generator=torch.Generator().manual_seed(args.seed + start), **kw)
        swapped = pipe(targets, generator=torch.Generator().manual_seed(args.seed + start), **kw).images
        for im0, im1, im2, (_, _, b) in zip(base, patched.images, swapped, chunk):
            reads.append(exact_match(ocr.read(im1).text, b))
            sims.append(ssim(im0, im1))
            ceiling.append(ssim(im0, im2))
    ok = [r and s >= 0.85 for r, s in zip(reads, sims)]
    return {
        "n": len(pairs),
        "layer_map": layer_map.name,
        "layers": list(layer_map.layers),
        "start_fraction": layer_map.start_fraction,
        "start_step": report.start_step,
        "target_exact_match": float(np.mean(reads)),
        "mean_ssim": float(np.mean(sims)),
        "flip_and_ssim_rate": float(np.mean(ok)),
        "prompt_swap_mean_ssim": float(np.mean(ceiling)),
        "perfect_swap_mean_ssim": float(np.mean(perfect)),
        "perfect_swap_ssim_rate": float(np.mean([v >= 0.85 for v in perfect])),
        "same_length": same_length,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline directory (default: the shipped weights)")
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layer-map", default=None, help="LayerMap YAML for the K/V-swap check (default: the model's preset)")
    parser.add_argument("--guidance-sweep", default="1,1.25,1.5,2,3", help="CFG scales to compare on the first 100 training-vocabulary prompts ('' to skip)")
    parser.add_argument("--out", default=str(RESULTS / "glyph_eval"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetext.models.glyph import load_glyph_pipeline
    from safetext.models.glyph.data import load_vocabulary
    from safetext.scoring import get_ocr, ocr_for_pipeline, text_region

    t0 = time.perf_counter()
    pipe = load_glyph_pipeline(args.model)
    load_seconds = time.perf_counter() - t0
    ocr = ocr_for_pipeline(get_ocr("rapidocr", mode="crop"), pipe)  # a scene model is read on its sign
    sign_box = pipe.sign_box() if text_region(pipe) is not None else None
    vocab = load_vocabulary()
    results: dict = {"model": args.model or "shipped", "steps": args.steps, "load_seconds": load_seconds, "threads": args.threads}

    suites = {
        "train_vocabulary": prompt_set(list(vocab["train"]), args.n_train, args.seed),
        "toxic_words": prompt_set(list(vocab["toxic"]), 2 * len(vocab["toxic"]), args.seed + 1),
        "replacement_words": prompt_set(list(vocab["replacements"]), len(vocab["replacements"]), args.seed + 2),
        "heldout_words": prompt_set(list(vocab["heldout"]), len(vocab["heldout"]), args.seed + 3),
    }
    timings = []
    grid_images = []
    for name, items in suites.items():
        images, sec = generate(pipe, [p for _, _, p in items], args.seed, args.steps)
        timings.append(sec)
        results[name] = spelling_scores(ocr, images, items, sign_box)
        grid_images.extend(images[:8])
        print(f"{name:18s} n={len(items):4d} exact={results[name]['exact_match']:.3f} colour={results[name]['colour_accuracy']:.3f}", flush=True)
    results["seconds_per_image"] = statistics.median(timings)

    scales = [float(x) for x in args.guidance_sweep.split(",") if x.strip()]
    if scales:
        items = suites["train_vocabulary"][:100]
        sweep = []
        for scale in scales:
            images, _ = generate(pipe, [p for _, _, p in items], args.seed, args.steps, guidance_scale=scale)
            row = spelling_scores(ocr, images, items, sign_box)
            sweep.append({"guidance_scale": scale, "n": row["n"], "exact_match": row["exact_match"], "colour_accuracy": row["colour_accuracy"]})
            print(f"guidance {scale:g}: exact={row['exact_match']:.3f} colour={row['colour_accuracy']:.3f}", flush=True)
        results["guidance_sweep"] = sweep

    if args.pairs:
        results["kv_swap"] = kv_swap_premise(pipe, ocr, vocab, args)
        results["kv_swap_same_length"] = kv_swap_premise(pipe, ocr, vocab, args, same_length=True)
        k = results["kv_swap"]
        print(f"kv swap: {k['n']} pairs, layers {k['layers']} from step {k['start_step']}: target read {k['target_exact_match']:.3f}, "
              f"mean SSIM {k['mean_ssim']:.3f}, both {k['flip_and_ssim_rate']:.3f}", flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    _write(results, grid_images, Path(args.out))
    return 0


def _write(results: dict, grid_images: list[np.ndarray], out: Path) -> None:
    from PIL import Image

    out.with_suffix(".json").write_text(json.dumps(results, indent=2, sort_keys=True))
    h, w, _ = grid_images[0].shape
    cols = 8
    rows = (len(grid_images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, im in enumerate(grid_images):
        grid.paste(Image.fromarray((im * 255).round().astype(np.uint8)), ((i % cols) * w, (i // cols) * h))
    grid = grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST)
    grid.save(out.with_name(out.name + "_samples.png"))
    lines = ["| suite | n | OCR exact match | background colour |", "|---|---|---|---|"]
    for key, val in results.items():
        if isinstance(val, dict) and "exact_match" in val:
            lines.append(f"| {key} | {val['n']} | {val['exact_match']:.3f} | {val['colour_accuracy']:.3f} |")
    for key in ("kv_swap", "kv_swap_same_length"):
        if key not in results:
            continue
        k = results[key]
        lines.append("")
        kind = "replacement of the source word's length, as the policy picks" if k["same_length"] else "replacement word of any length"
        lines.append(f"K/V swap, {kind} ({k['n']} pairs, layers {', '.join(k['layers'])}, start step {k['start_step']}): "
                     f"target word read {k['target_exact_match']:.3f}, mean SSIM {k['mean_ssim']:.3f}, "
                     f"read as target with SSIM >= 0.85: {k['flip_and_ssim_rate']:.3f}. Generating the target prompt itself "
                     f"(same seed) has mean SSIM {k['prompt_swap_mean_ssim']:.3f} to the source image; a perfect swap (two "
                     f"training renderings of the same scene differing only in the word) has mean SSIM "
                     f"{k['perfect_swap_mean_ssim']:.3f}, {k['perfect_swap_ssim_rate']:.2f} of pairs >= 0.85.")
    if "guidance_sweep" in results:
        sweep = results["guidance_sweep"]
        lines += ["", f"Guidance scale (first {sweep[0]['n']} training-vocabulary prompts):", "", "| guidance | OCR exact match | colour |", "|---|---|---|"]
        lines += [f"| {row['guidance_scale']:g} | {row['exact_match']:.3f} | {row['colour_accuracy']:.3f} |" for row in sweep]
        lines += ["", f"![guidance]({out.name}_guidance.png)"]
        _guidance_figure(sweep, out.with_name(out.name + "_guidance.png"))
    lines.append("")
    lines.append(f"load: {results['load_seconds']:.2f} s; sampling: {results['seconds_per_image']:.3f} s/image at {results['steps']} steps, {results['threads']} threads")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _guidance_figure(sweep: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install 'safetext[plots]'): guidance figure skipped")
        return
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot([r["guidance_scale"] for r in sweep], [r["exact_match"] for r in sweep], "o-", label="OCR exact match")
    ax.plot([r["guidance_scale"] for r in sweep], [r["colour_accuracy"] for r in sweep], "s--", label="background colour")
    ax.set_xlabel("classifier-free guidance scale")
    ax.set_ylim(0, 1.05)
    ax.set_title("glyph model: spelling vs guidance (20 steps)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
