"""`safetext generate`: the main job — unguarded and guarded images side by side, plus the verdict.

    safetext generate 'A red sign that says "shit".' --out out/

runs the embedded glyph model by default (or any local diffusers pipeline directory with ``--model``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger("safetext.cli")


def load_pipeline(model: str | None):
    """The shipped glyph model (default) or a local diffusers pipeline directory (nothing downloaded)."""
    from safetext.models.glyph import load_glyph_pipeline

    if model is None:
        return load_glyph_pipeline()
    directory = Path(model)
    index = directory / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"--model {model}: no model_index.json there; pass a directory written by save_pretrained")
    if json.loads(index.read_text()).get("_class_name") == "GlyphPipeline":
        return load_glyph_pipeline(directory)
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(directory), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def side_by_side(left, right, labels=("unguarded", "safetext"), scale: int = 4):
    """Two PIL images next to each other, upscaled ``scale`` times (nearest), with a caption strip."""
    from PIL import Image, ImageDraw

    w, h = left.size
    W, H = w * scale, h * scale
    canvas = Image.new("RGB", (2 * W + 8, H + 18), (255, 255, 255))
    canvas.paste(left.resize((W, H), Image.NEAREST), (0, 18))
    canvas.paste(right.resize((W, H), Image.NEAREST), (W + 8, 18))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), labels[0], fill=(0, 0, 0))
    draw.text((W + 12, 3), labels[1], fill=(0, 0, 0))
    return canvas


def _run(args: argparse.Namespace) -> int:
    import torch

    from safetext.errors import PolicyViolation
    from safetext.generator import SafeTextGenerator

    pipe = load_pipeline(args.model)
    gen = SafeTextGenerator(pipe, policy=args.policy, layer_map=args.layer_map)
    kwargs: dict = dict(num_inference_steps=args.steps)
    if args.guidance is not None:
        kwargs["guidance_scale"] = args.guidance
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = pipe(args.prompt, generator=torch.Generator().manual_seed(args.seed), **kwargs).images[0]
    raw.save(out_dir / "unguarded.png")
    try:
        result = gen(args.prompt, generator=torch.Generator().manual_seed(args.seed), **kwargs)
    except PolicyViolation as exc:
        (out_dir / "verdict.json").write_text(exc.verdict.to_json(indent=2))
        print(f"blocked by policy: {exc}")
        print(exc.verdict.to_json(indent=2))
        return 3
    guarded = result.images[0]
    guarded.save(out_dir / "guarded.png")
    side_by_side(raw, guarded).save(out_dir / "side_by_side.png")
    (out_dir / "verdict.json").write_text(result.verdict.to_json(indent=2))
    v = result.verdict
    print(f"action: {v.action.value}")
    print(f"prompt:    {v.prompt}")
    print(f"sanitized: {v.sanitized_prompt}")
    for f in v.findings:
        print(f"  - {f.rule_id} [{f.category}] {f.text!r} at {f.start}:{f.end} -> {f.replacement!r} (score {f.score:.2f}, {f.backend})")
    if v.details:
        print(f"patch: {json.dumps(v.details, sort_keys=True)}")
    print(f"wrote {out_dir / 'side_by_side.png'}, {out_dir / 'verdict.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate an image unguarded and guarded, side by side, with the verdict")
    p.add_argument("prompt")
    p.add_argument("--model", default=None, help="local diffusers pipeline directory (default: the embedded glyph model)")
    p.add_argument("--policy", default="default", help="policy name or YAML file (default: default)")
    p.add_argument("--layer-map", default=None, help="LayerMap YAML (default: preset or shipped map of the model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=None, help="guidance_scale (default: the pipeline's)")
    p.add_argument("--out", default="out", help="output directory")
    p.set_defaults(func=_run)
