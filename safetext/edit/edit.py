"""``edit_text``: change the word written in a generated image, keeping the rest of the image.

The image is regenerated with the same prompt, seed and settings, once as is (the original) and once
with the text keys/values of the layer map's layers taken from the *target* prompt (the prompt with
``source_text`` replaced by ``target_text``) from the map's start step on. Everything outside the
localized layers sees the original prompt, so layout, colours and style stay; only the written text
follows the target.

    >>> from safetext.edit import edit_text
    >>> result = edit_text(pipe, 'A red sign that says "stop".', "stop", "go", seed=3)
    >>> result.metrics["edited_text"], round(result.metrics["ssim"], 2)
    ('GO', 0.93)
    >>> result.save("edit/")     # original.png, edited.png, side_by_side.png, metrics.json

With ``target_text == source_text`` the patch swaps in K/V identical to the prompt's own, so the
edited image is bit-identical to the original.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from safetext.edit import attention as word_attention
from safetext.edit.region import Region, TrajectoryBlend, box_mask, check_region, region_mask, step_callback_arguments
from safetext.errors import SafetextError
from safetext.patching.hooks import installed
from safetext.patching.kv_patch import KVPatch, PatchReport
from safetext.patching.layer_map import LayerMap
from safetext.patching.resolve import resolve_layer_map

#: Pipeline arguments ``edit_text`` sets itself.
RESERVED_EDIT_ARGUMENTS: tuple[str, ...] = ("prompt", "generator", "output_type", "num_images_per_prompt", "return_dict", "latents")

#: Images in the side-by-side PNG are upscaled (nearest) to at least this height.
SIDE_BY_SIDE_MIN_HEIGHT = 128


class EditError(SafetextError, ValueError):
    """An edit request is invalid (text not in the prompt, conflicting options, reserved arguments)."""


def target_prompt_for(prompt: str, source_text: str, target_text: str) -> str:
    """The prompt with every occurrence of ``source_text`` replaced by ``target_text``.

    An exact occurrence is replaced as is; otherwise a case-insensitive match is replaced.

    Raises:
        EditError: empty texts, or ``source_text`` does not occur in ``prompt``.
    """
    if not source_text or not source_text.strip():
        raise EditError("source_text must be the non-empty text written in the image (e.g. 'stop')")
    if not target_text or not target_text.strip():
        raise EditError("target_text must be the non-empty text to write instead (e.g. 'go')")
    if source_text not in prompt and not re.search(re.escape(source_text), prompt, re.IGNORECASE):
        raise EditError(
            f"source_text {source_text!r} does not occur in the prompt {prompt!r}; pass the text exactly as the "
            "prompt asks to write it"
        )
    return word_attention.substitute_text(prompt, source_text, target_text)


def _to_tensor(images: Any) -> torch.Tensor:
    array = np.asarray(images[0], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A float CHW tensor in [0, 1] as an RGB PIL image (rounded to uint8)."""
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array)


def side_by_side(original: Image.Image, edited: Image.Image, labels: Sequence[str] = ("original", "edited")) -> Image.Image:
    """The two images next to each other, upscaled (nearest) to a readable height, with captions."""
    width, height = original.size
    scale = max(1, math.ceil(SIDE_BY_SIDE_MIN_HEIGHT / height))
    w, h, gap, caption = width * scale, height * scale, 8, 16
    canvas = Image.new("RGB", (2 * w + gap, h + caption), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for offset, image, label in ((0, original, labels[0]), (w + gap, edited, labels[1])):
        canvas.paste(image.resize((w, h), Image.NEAREST), (offset, caption))
        draw.text((offset + 3, 2), label, fill=(0, 0, 0))
    return canvas


@dataclass(frozen=True)
class EditResult:
    """The original and edited images with their metrics.

    Attributes:
        original: the regenerated original image, float CHW tensor in [0, 1] (exact pipeline output).
        edited: the edited image, same format.
        side_by_side: original and edited next to each other (PIL, upscaled, captioned).
        metrics: OCR of both images, SSIM / PSNR / MSE of edited vs original (``psnr`` is ``None`` when the
            images are identical, i.e. infinite), the patch settings, timings.
        prompt: the prompt of the original image.
        target_prompt: the prompt whose text K/V were swapped in.
        report: what the K/V patch did (layers, start step, patched steps).
    """

    original: torch.Tensor
    edited: torch.Tensor
    side_by_side: Image.Image
    metrics: dict[str, Any]
    prompt: str
    target_prompt: str
    report: PatchReport = field(repr=False)

    @property
    def original_image(self) -> Image.Image:
        return tensor_to_pil(self.original)

    @property
    def edited_image(self) -> Image.Image:
        return tensor_to_pil(self.edited)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``original.png``, ``edited.png``, ``side_by_side.png`` and ``metrics.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {name: out / f"{name}.png" for name in ("original", "edited", "side_by_side")}
        self.original_image.save(files["original"])
        self.edited_image.save(files["edited"])
        self.side_by_side.save(files["side_by_side"])
        files["metrics"] = out / "metrics.json"
        files["metrics"].write_text(json.dumps(self.metrics, indent=2) + "\n", encoding="utf-8")
        return files


def _resolve_patch(pipe: Any, layer_map: Any, layers: Sequence[str | int] | None, start_fraction: float | None):
    if layers is not None and layer_map is not None:
        raise EditError("pass either layer_map or layers, not both")
    if layers is not None:
        return list(layers), 0.0 if start_fraction is None else float(start_fraction), "layers", ()
    resolved = resolve_layer_map(pipe, layer_map)
    start = resolved.layer_map.start_fraction if start_fraction is None else float(start_fraction)
    return [layer.name for layer in resolved.layers], start, resolved.layer_map.name, resolved.notes


def _get_ocr(ocr: Any) -> Any:
    if ocr is None or not isinstance(ocr, str):
        return ocr
    from safetext.scoring import get_ocr

    return get_ocr(ocr, mode="crop")


def edit_text(
    pipe: Any,
    prompt: str,
    source_text: str,
    target_text: str,
    *,
    layer_map: LayerMap | str | Path | None = None,
    layers: Sequence[str | int] | None = None,
    start_fraction: float | None = None,
    seed: int = 0,
    ocr: Any = "rapidocr",
    region: Region | None = None,
    **call_kwargs: Any,
) -> EditResult:
    """Regenerate an image with its written text changed from ``source_text`` to ``target_text``.

    Args:
        pipe: the diffusers pipeline that generated the image.
        prompt: the prompt of the image (it must contain ``source_text``).
        source_text: the text written in the image.
        target_text: the text to write instead.
        layer_map: a :class:`~safetext.patching.LayerMap`, a map file or a preset name (default: the
            shipped preset for the model, else every text layer, noted in the metrics).
        layers: patch these layers (names or indices) instead of a layer map.
        start_fraction: first patched step as a fraction of the schedule (default: the map's, or 0
            with ``layers``).
        seed: seed of the image (a CPU ``torch.Generator``), the same for both images.
        ocr: OCR backend or backend name for the metrics (``None``: no OCR).
        region: keep the edit inside this part of the image (see :mod:`safetext.edit.region`): ``"text"``
            (inside the sign the pipeline declares, 2 px in from its edges), ``"auto"`` (the box where the
            original run's cross-attention to ``source_text`` lands, see :mod:`safetext.edit.attention`; no
            coordinates needed), a ``(top, left, bottom, right)`` pixel box or an ``H x W`` mask in [0, 1].
            After every step the edited latents outside it are replaced by the original's, so the rest of the
            image is the original's. ``None`` (default): no blending.
        **call_kwargs: the pipeline settings the image was made with (``num_inference_steps``, ...).

    Returns:
        :class:`EditResult`.

    Raises:
        EditError: ``source_text`` not in the prompt, both ``layers`` and ``layer_map``, or a reserved argument.
        LayerMapError: layers the model lacks.
        RegionError: a malformed region, or a pipeline that cannot blend (no step callback, packed latents).
    """
    reserved = sorted(set(call_kwargs) & set(RESERVED_EDIT_ARGUMENTS))
    if region is not None:
        reserved += sorted(set(call_kwargs) & {"callback_on_step_end", "callback_on_step_end_tensor_inputs", "callback", "callback_steps"})
    if reserved:
        raise EditError(f"edit_text sets {', '.join(reserved)} itself; pass the seed as seed= and drop {reserved}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise EditError(f"prompt must be a non-empty string, got {prompt!r}")
    target_prompt = target_prompt_for(prompt, source_text, target_text)
    names, start, map_name, notes = _resolve_patch(pipe, layer_map, layers, start_fraction)
    patch = KVPatch(pipe, layers=names, start_fraction=start)
    recorder = None
    if region is not None:
        check_region(pipe, region)  # malformed regions fail before anything is generated
        if isinstance(region, str) and region == "auto":
            positions = word_attention.text_token_positions(pipe, prompt, source_text)
            recorder = word_attention.WordAttention(word_attention.attention_taps(pipe), positions)

    def call(callback: Any = None) -> dict[str, Any]:
        kwargs = {**call_kwargs, "prompt": prompt, "generator": torch.Generator().manual_seed(seed), "output_type": "np"}
        if callback is not None:
            kwargs.update(step_callback_arguments(pipe, callback))
        return kwargs

    began = time.perf_counter()
    box = None
    if region is None:
        blend = None
        original = _to_tensor(pipe(**call()).images)
    else:
        # the region's size is only known once the image is, so the mask is attached after the recording run
        blend = TrajectoryBlend()
        with installed(recorder, recorder.register) if recorder is not None else nullcontext():
            original = _to_tensor(pipe(**call(blend.record)).images)
        height, width = original.shape[-2:]
        if recorder is not None:
            box = word_attention.attention_box(recorder.combined_map(height, width), word_attention.AUTO_REGION_THRESHOLD)
            box = word_attention.fit_text_length(box, source_text, target_text, width)
            blend.mask = box_mask(box, height, width)
        else:
            blend.mask = region_mask(pipe, region, height, width)
    middle = time.perf_counter()
    output, report = patch.run(call(None if blend is None else blend.blend), {"prompt": target_prompt})
    edited = _to_tensor(output.images)
    ended = time.perf_counter()
    reader = _get_ocr(ocr)
    if reader is not None:
        from safetext.scoring import ocr_for_pipeline

        reader = ocr_for_pipeline(reader, pipe)
    metrics = _metrics(original, edited, reader, source_text, target_text)
    metrics.update(
        prompt=prompt,
        target_prompt=target_prompt,
        source_text=source_text,
        target_text=target_text,
        seed=seed,
        layer_map=map_name,
        layers=list(report.layers),
        start_fraction=start,
        start_step=report.start_step,
        total_steps=report.total_steps,
        region=_describe_region(region, None if blend is None else blend.mask, box),
        seconds_original=middle - began,
        seconds_edit=ended - middle,
        notes=list(notes),
    )
    picture = side_by_side(tensor_to_pil(original), tensor_to_pil(edited), ("original", f"edited: {target_text}"))
    return EditResult(original, edited, picture, metrics, prompt, target_prompt, report)


def _describe_region(region: Any, mask: torch.Tensor | None, auto_box: tuple[int, int, int, int] | None = None) -> Any:
    if region is None or mask is None:
        return None
    if auto_box is not None:
        return {"kind": "auto", "box": list(auto_box), "threshold": word_attention.AUTO_REGION_THRESHOLD}
    if isinstance(region, str):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        return {"kind": region, "box": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]}
    if isinstance(region, (np.ndarray, torch.Tensor)):
        return {"kind": "mask", "share": float(mask.mean())}
    return {"kind": "box", "box": [int(v) for v in region]}


def _metrics(original: torch.Tensor, edited: torch.Tensor, ocr: Any, source_text: str, target_text: str) -> dict[str, Any]:
    from safetext.scoring import exact_match, mse, ocr_f1, psnr, ssim
    from safetext.scoring.text import normalize_for_match

    value = psnr(edited, original)
    # Character F1 ignores case, punctuation and spaces, like exact_match and the localization scorer.
    metrics: dict[str, Any] = {
        "identical": bool(torch.equal(original, edited)),
        "ssim": float(ssim(edited, original)),
        "psnr": None if math.isinf(value) else float(value),
        "mse": float(mse(edited, original)),
    }
    if ocr is not None:
        original_text, edited_text = (result.text for result in ocr.read_many([original, edited]))
        metrics.update(
            original_text=original_text,
            edited_text=edited_text,
            original_reads_source=exact_match(original_text, source_text),
            edited_reads_target=exact_match(edited_text, target_text),
            edited_f1_target=ocr_f1(normalize_for_match(edited_text), normalize_for_match(target_text)).f1,
            edited_f1_source=ocr_f1(normalize_for_match(edited_text), normalize_for_match(source_text)).f1,
        )
    return metrics
