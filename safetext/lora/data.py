"""Image + caption datasets for LoRA training, and a writer for the glyph model's synthetic signs.

Two layouts are read, both the Hugging Face ``imagefolder`` convention:

* a folder holding the images and a ``metadata.jsonl`` with one ``{"file_name": ..., "text": ...}``
  object per line (``file_name`` relative to the folder);
* a JSONL file with the same records, ``file_name`` relative to the JSONL file's folder.

Extra keys in a record (``word``, ``color``, ...) are kept in :attr:`CaptionedImage.extra`. Captions are
free text; :func:`caption_for_text` makes the generic ``An image with text saying "<text>"`` form.

    >>> from safetext.lora.data import load_captioned_images, write_glyph_dataset
    >>> folder = write_glyph_dataset("data/signs", ["hello", "world"], per_word=4)  # doctest: +SKIP
    >>> dataset = load_captioned_images(folder, size=(24, 96))  # doctest: +SKIP
    >>> image, caption = dataset[0]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

METADATA_FILE = "metadata.jsonl"
CAPTION_TEMPLATE = 'An image with text saying "{text}"'


def caption_for_text(text: str) -> str:
    """The generic training caption for an image showing ``text``.

    Example:
        >>> caption_for_text("hello")
        'An image with text saying "hello"'
    """
    return CAPTION_TEMPLATE.format(text=text)


@dataclass(frozen=True)
class CaptionedImage:
    """One training record.

    Attributes:
        path: the image file.
        caption: the prompt the image is trained under.
        extra: any other keys of the record (e.g. ``word`` for evaluation).
    """

    path: Path
    caption: str
    extra: dict[str, Any] = field(default_factory=dict)


class CaptionedImageDataset(torch.utils.data.Dataset):
    """Images loaded on access, converted to RGB, resized to ``size`` and scaled to [0, 1].

    Args:
        records: the records to serve, in order.
        size: ``(height, width)`` every image is resized to (bicubic when the size differs).
        source: where the records came from (shown in error messages).
    """

    def __init__(self, records: Sequence[CaptionedImage], size: tuple[int, int], source: str = "") -> None:
        if not records:
            raise ValueError(f"dataset {source or '(records)'} holds no images; add records with file_name and text")
        self.records = list(records)
        self.size = (int(size[0]), int(size[1]))
        self.source = source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        record = self.records[index]
        try:
            with Image.open(record.path) as image:
                image = image.convert("RGB")
                height, width = self.size
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BICUBIC)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except OSError as exc:
            raise ValueError(f"cannot read image {record.path} of dataset {self.source}: {exc}") from exc
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), record.caption

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[str]]:
        """Stack the records at ``indices`` into ``(B, 3, H, W)`` images in [0, 1] and their captions."""
        items = [self[i] for i in indices]
        return torch.stack([image for image, _ in items]), [caption for _, caption in items]


def _read_records(jsonl: Path, root: Path) -> list[CaptionedImage]:
    records = []
    for line_no, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{jsonl}:{line_no}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a JSON object with 'file_name' and 'text', got {type(raw).__name__}")
        missing = [k for k in ("file_name", "text") if not isinstance(raw.get(k), str)]
        if missing:
            raise ValueError(f"{where}: missing string field(s) {missing}; each record needs 'file_name' and 'text'")
        path = (root / raw["file_name"]).resolve()
        if not path.is_file():
            raise ValueError(f"{where}: image {raw['file_name']!r} not found (looked at {path})")
        extra = {k: v for k, v in raw.items() if k not in ("file_name", "text")}
        records.append(CaptionedImage(path=path, caption=raw["text"], extra=extra))
    return records


def load_captioned_images(source: str | Path, size: tuple[int, int]) -> CaptionedImageDataset:
    """Read a dataset folder (with ``metadata.jsonl``) or a JSONL file of image + caption records.

    Args:
        source: a folder holding ``metadata.jsonl`` and the images, or a ``.jsonl`` file.
        size: ``(height, width)`` the images are resized to (the denoiser's training resolution).

    Raises:
        ValueError: the source is missing, a line is not a record, or an image file does not exist; the
            message names the file and line.
    """
    path = Path(source)
    if path.is_dir():
        jsonl = path / METADATA_FILE
        if not jsonl.is_file():
            raise ValueError(
                f"dataset folder {path} has no {METADATA_FILE}; add one JSON line per image: "
                '{"file_name": "0001.png", "text": "An image with text saying \\"hello\\""}'
            )
        root = path
    elif path.is_file():
        jsonl, root = path, path.parent
    else:
        raise ValueError(f"dataset {path} does not exist; pass a folder with {METADATA_FILE} or a JSONL file")
    return CaptionedImageDataset(_read_records(jsonl, root), size, source=str(path))


def write_glyph_dataset(
    out_dir: str | Path,
    words: Sequence[str],
    per_word: int = 4,
    seed: int = 0,
    height: int = 24,
    width: int = 96,
    font_size: int | None = None,
    jitter: tuple[int, int] = (3, 2),
    sign_size: tuple[int, int] | None = None,
) -> Path:
    """Render a dataset folder of the glyph model's signs: PNGs and a ``metadata.jsonl``.

    Each word gets ``per_word`` images with a colour, prompt template, case and jitter drawn from
    ``seed``; the caption is the glyph model's own prompt (``A red sign that says "hello".``), and the
    record keeps ``word`` and ``color`` for evaluation.

    Args:
        out_dir: folder to create (existing files of the same names are overwritten).
        words: the words to render (3-8 ASCII letters, as the glyph vocabulary).
        per_word: images per word.
        seed: seed of the colours, templates and jitter.
        height, width: image size in pixels (the glyph model's training size).
        font_size: font size of the rendered word (default: the glyph model's 18 px at 24 px height,
            scaled with ``height``).
        jitter: maximum horizontal and vertical shift in pixels.
        sign_size: (height, width) of the sign when it stands in the middle of a ``height`` x ``width``
            scene (the glyph scene model: ``pipe.sign_size``); ``None`` or the image size: bare signs.

    Returns:
        The dataset folder.
    """
    from safetext.models.glyph.data import COLORS, TEMPLATES, GlyphDataConfig, make_prompt, render_scene, render_sign

    if per_word < 1:
        raise ValueError(f"per_word must be >= 1, got {per_word}")
    if not words:
        raise ValueError("words is empty; pass the words the signs should show")
    scene = sign_size is not None and tuple(sign_size) != (height, width)
    sign_h, sign_w = tuple(sign_size) if scene else (height, width)
    if font_size is None:
        font_size = max(6, round(18 * sign_h / 24))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = GlyphDataConfig(
        height=sign_h, width=sign_w, font_size=font_size, jitter_x=jitter[0], jitter_y=jitter[1],
        canvas_height=height if scene else None, canvas_width=width if scene else None,
    )
    rng = random.Random(f"glyph-lora-data:{seed}")
    lines = []
    for w_index, word in enumerate(words):
        for k in range(per_word):
            color = rng.choice(COLORS)
            template = rng.randrange(len(TEMPLATES))
            dx, dy = rng.randint(-jitter[0], jitter[0]), rng.randint(-jitter[1], jitter[1])
            if scene:  # the scene has its own stream, so bare-sign datasets stay as they were
                image = render_scene(word, color, dx, dy, config, random.Random(f"glyph-lora-scene:{seed}:{w_index}:{k}"))
            else:
                image = render_sign(word, color, dx, dy, config)
            array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            file_name = f"{w_index:04d}_{k:02d}_{word}.png"
            Image.fromarray(array).save(out / file_name)
            record = {"file_name": file_name, "text": make_prompt(word, color, template), "word": word, "color": color}
            lines.append(json.dumps(record))
    (out / METADATA_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
