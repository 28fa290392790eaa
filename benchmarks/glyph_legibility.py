"""Which benign replacement words the embedded glyph model writes legibly as a replacement.

    nice -n 10 python benchmarks/glyph_legibility.py [--samples 6] [--steps 20] [--threads 1] [--write-preset]
    # or side by side: --shard 0/3, --shard 1/3, --shard 2/3, then --merge 3 [--write-preset]

For every word of the policy's benign replacement list (``lists/replacements.txt``), ``--samples``
guarded generations: a prompt asking for one of the toxic words the model was trained on (same
length as the replacement where the model knows one, else the closest length; a stable choice per
word and sample, in a stable colour and template), patched with the shipped glyph layer map toward
the same prompt with the replacement word, exactly as the generator patches a flagged prompt. Each
image is read by rapidocr (crop mode); a word's legibility is the share of its samples read exactly
as the word.

The table becomes the glyph preset's ``replacement_legibility`` (``--write-preset`` rewrites that
block at the end of ``safetext/patching/presets/glyph.yaml``): the generator then prefers, among the
policy's benign words of the span's length, the words this model writes best. Only training words of
the model are measured, never the benchmark's never-trained toxic words (``legible_glyph.py``).

Writes ``benchmarks/results/glyph_legibility.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PRESET = ROOT.parent / "safetext" / "patching" / "presets" / "glyph.yaml"
BLOCK = "replacement_legibility:"
SHARDS = "glyph_legibility_shards"  # --shard files, under --out


def stable_fraction(text: str) -> float:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def source_words(word: str, toxic: tuple[str, ...], samples: int) -> list[str]:
    """``samples`` trained toxic words of ``word``'s length (closest length when none), a stable choice."""
    best = min({len(t) for t in toxic}, key=lambda n: (abs(n - len(word)), n))
    pool = sorted((t for t in toxic if len(t) == best), key=lambda t: stable_fraction(f"{word}:{t}"))
    return [pool[i % len(pool)] for i in range(samples)]


def write_preset(path: Path, table: dict[str, float], header: str) -> None:
    """Replace (or append) the ``replacement_legibility`` block at the end of the preset file."""
    text = path.read_text(encoding="utf-8")
    if BLOCK in text:
        cut = text.index(BLOCK)
        # the block's comment lines directly above it belong to it
        lines = text[:cut].splitlines(keepends=True)
        while lines and lines[-1].startswith("#"):
            lines.pop()
        text = "".join(lines)
    body = "".join(f"  {word}: {score:g}\n" for word, score in sorted(table.items()))
    path.write_text(text.rstrip("\n") + "\n" + header + BLOCK + "\n" + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=6, help="guarded generations per replacement word")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--write-preset", action="store_true", help="rewrite the preset's replacement_legibility block")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--shard", default="", help="K/N: measure every N-th word from the K-th (0-based) into a shard file "
                        "(N processes side by side), then --merge N")
    parser.add_argument("--merge", type=int, default=0, help="write the results (and --write-preset) from N shard files")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    from safetext.models.glyph.build import load_glyph_pipeline
    from safetext.models.glyph.data import COLORS, TEMPLATES, load_vocabulary, make_prompt
    from safetext.patching import KVPatch, resolve_layer_map
    from safetext.policy import load_policy
    from safetext.scoring import exact_match, get_ocr, ocr_for_pipeline

    pipe = load_glyph_pipeline()
    pipe.set_progress_bar_config(disable=True)
    layer_map = resolve_layer_map(pipe, None).layer_map
    words = load_policy("default")._replacer.words
    if args.merge:
        shards = [json.loads((args.out / SHARDS / f"shard-{k}-of-{args.merge}.json").read_text(encoding="utf-8")) for k in range(args.merge)]
        jobs = [job for shard in shards for job in shard["generations"]]
        missing = set(words) - {job["word"] for job in jobs}
        if missing:
            raise SystemExit(f"the shards lack the words {sorted(missing)}; run every --shard K/{args.merge}")
        return write_results(args, layer_map, words, jobs, max(shard["seconds"] for shard in shards))
    measured = words
    if args.shard:
        shard_k, shard_n = (int(part) for part in args.shard.split("/"))
        measured = words[shard_k::shard_n]
    patch = KVPatch(pipe, list(layer_map.layers), layer_map.start_fraction)
    ocr = ocr_for_pipeline(get_ocr("rapidocr", mode="crop"), pipe)
    toxic = load_vocabulary()["toxic"]
    height, width = pipe.default_size

    jobs = []
    for word in measured:
        for sample, source in enumerate(source_words(word, toxic, args.samples)):
            rng = random.Random(f"{args.seed}:{word}:{sample}")
            colour, template = rng.choice(COLORS), rng.randrange(len(TEMPLATES))
            jobs.append({
                "word": word, "source": source,
                "prompt": make_prompt(source, colour, template), "target": make_prompt(word, colour, template),
                "seed": args.seed * 100_003 + int(stable_fraction(f"noise:{word}:{sample}") * 1e9),
            })
    print(f"{len(measured)} words x {args.samples} samples = {len(jobs)} guarded generations", flush=True)
    for i in range(0, len(jobs), args.batch):
        chunk = jobs[i : i + args.batch]
        latents = torch.cat([torch.randn((1, 3, height, width), generator=torch.Generator().manual_seed(j["seed"])) for j in chunk])
        call = {"prompt": [j["prompt"] for j in chunk], "latents": latents, "num_inference_steps": args.steps, "output_type": "np"}
        output, _ = patch.run(call, {"prompt": [j["target"] for j in chunk]}, require_patch=True)
        for job, image in zip(chunk, output.images):
            job["read"] = ocr.read(image).text.strip()
            job["exact"] = exact_match(job["read"], job["word"])
        print(f"  {min(i + args.batch, len(jobs))}/{len(jobs)}", flush=True)
    if args.shard:
        (args.out / SHARDS).mkdir(parents=True, exist_ok=True)
        shard = {"shard": args.shard, "generations": [{k: j[k] for k in ("word", "source", "prompt", "read", "exact")} for j in jobs],
                 "seconds": time.perf_counter() - started}
        (args.out / SHARDS / f"shard-{shard_k}-of-{shard_n}.json").write_text(json.dumps(shard, indent=1) + "\n", encoding="utf-8")
        return 0
    return write_results(args, layer_map, words, jobs, time.perf_counter() - started)


def write_results(args, layer_map, words, jobs, seconds: float) -> int:
    """The legibility table, ``glyph_legibility.json`` / ``.md`` and (``--write-preset``) the preset's block."""
    table = {}
    for word in words:
        hits = [j["exact"] for j in jobs if j["word"] == word]
        table[word] = round(sum(hits) / len(hits), 4)
    document = {
        "layer_map": {"name": layer_map.name, "layers": list(layer_map.layers), "start_fraction": layer_map.start_fraction},
        "samples": args.samples, "steps": args.steps, "seed": args.seed,
        "legibility": table, "mean": sum(table.values()) / len(table),
        "generations": [{k: j[k] for k in ("word", "source", "prompt", "read", "exact")} for j in jobs],
        "seconds": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "glyph_legibility.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    lines = [
        "# Legibility of the benign replacement words on the glyph model",
        "",
        f"Shipped glyph model and layer map `{layer_map.name}` ({len(layer_map.layers)} layer(s) from "
        f"{layer_map.start_fraction:g}), {args.steps} steps, seed {args.seed}: each of the {len(words)} replacement "
        f"words patched in for {args.samples} trained toxic words (same length where possible); legibility = share "
        "read exactly by rapidocr (crop mode). Mean legibility "
        f"{document['mean']:.3f}.",
        "",
        "| length | words | mean legibility | words read every time |",
        "|---|---|---|---|",
    ]
    for length in sorted({len(w) for w in words}):
        group = [w for w in words if len(w) == length]
        perfect = [w for w in group if table[w] == 1.0]
        lines.append(f"| {length} | {len(group)} | {sum(table[w] for w in group) / len(group):.3f} | {len(perfect)} |")
    lines += ["", "| word | legibility | readings |", "|---|---|---|"]
    for word in sorted(words, key=lambda w: (len(w), w)):
        readings = ", ".join(repr(j["read"]) for j in jobs if j["word"] == word and not j["exact"])
        lines.append(f"| {word} | {table[word]:.3f} | {readings or '-'} |")
    shards = f" ({args.merge} shards side by side, the slowest)" if args.merge else ""
    lines += ["", f"Run: {document['seconds']:.0f} s wall{shards}.", ""]
    (args.out / "glyph_legibility.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    if args.write_preset:
        header = (
            "# replacement_legibility: per benign replacement word, the share of guarded generations read exactly\n"
            f"# as the word ({args.samples} per word, this map, {args.steps} steps), written by\n"
            "# `python benchmarks/glyph_legibility.py --write-preset` (benchmarks/results/glyph_legibility.md); the\n"
            "# generator prefers, among the policy's benign words of a span's length, the words read best.\n"
        )
        write_preset(PRESET, table, header)
        print(f"wrote {PRESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
