"""Synthetic training data for the glyph model: a word in a bundled font on a coloured sign.

Everything is made on the fly and deterministically from a seed: a background colour from a named
palette, the word in a contrasting colour (DejaVu Sans Mono Bold, upper case, centred, small jitter),
and a prompt from one of several templates. With a scene canvas (``GlyphDataConfig.canvas_height`` /
``canvas_width`` larger than the sign) the sign, with a thin darker border, stands in the middle of a
random outdoor-like scene (sky gradient, horizon, ground, a sun and a few boxes and hills) that the
prompt does not describe: the model samples it from the noise, like a real model fills in what a
prompt leaves open, and changing only the written word must leave it in place. The vocabulary is a closed list (common words, the
policy's benign replacement words and the offensive words the policy neutralizes), with a held-out
split of the common words to measure open spelling.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

#: Named background colours and the text colour that contrasts with each.
PALETTE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "red": ((200, 30, 30), (255, 255, 255)),
    "blue": ((30, 60, 200), (255, 255, 255)),
    "green": ((30, 140, 50), (255, 255, 255)),
    "yellow": ((240, 210, 40), (0, 0, 0)),
    "white": ((245, 245, 245), (0, 0, 0)),
    "black": ((15, 15, 15), (255, 255, 255)),
    "orange": ((240, 130, 20), (0, 0, 0)),
    "purple": ((120, 40, 160), (255, 255, 255)),
}
COLORS: tuple[str, ...] = tuple(PALETTE)

#: Prompt templates. ``{word}`` is the text to write, ``{color}`` the background colour name.
TEMPLATES: tuple[str, ...] = (
    'A {color} sign that says "{word}".',
    "A {color} sign that says {word}.",
    "{word} written on a {color} sign",
    "A {color} placard reading {word}",
)

MAX_WORD_LEN = 8
FONT_FILE = "DejaVuSansMono-Bold.ttf"


def _vocab_lines(path: Path) -> list[str]:
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.extend(line.split())
    return words


def _package_root() -> Path:
    return Path(str(resources.files("safetext")))


@lru_cache(maxsize=1)
def load_vocabulary() -> dict[str, tuple[str, ...]]:
    """The glyph vocabulary: ``common``, ``replacements``, ``toxic`` and the ``heldout`` common words.

    Returns:
        A dict of sorted, de-duplicated word tuples. ``train`` is everything but ``heldout``.
    """
    root = _package_root()
    common = _vocab_lines(root / "models" / "glyph" / "vocab" / "common.txt")
    toxic = _vocab_lines(root / "models" / "glyph" / "vocab" / "toxic.txt")
    replacements = _vocab_lines(root / "policies" / "lists" / "replacements.txt")
    for w in common + toxic + replacements:
        if not (w.isalpha() and w.isascii() and 3 <= len(w) <= MAX_WORD_LEN):
            raise ValueError(f"glyph vocabulary word {w!r} must be 3-{MAX_WORD_LEN} ASCII letters")
    special = set(toxic) | set(replacements)
    common = sorted(set(common) - special)
    heldout = tuple(w for w in common if _stable_fraction(w) < 0.1)
    train_common = tuple(w for w in common if w not in heldout)
    return {
        "common": train_common,
        "heldout": heldout,
        "toxic": tuple(sorted(set(toxic))),
        "replacements": tuple(sorted(set(replacements))),
        "train": tuple(sorted(set(train_common) | special)),
    }


def _stable_fraction(word: str) -> float:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    path = _package_root() / "models" / "glyph" / "fonts" / FONT_FILE
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True)
class GlyphDataConfig:
    """Image geometry of the synthetic signs.

    ``height`` x ``width`` is the sign; ``canvas_height`` x ``canvas_width`` the whole image (default:
    the sign fills the image). The sign is centred on the canvas, shifted by the jitter.
    """

    height: int = 24
    width: int = 96
    font_size: int = 18
    jitter_x: int = 3
    jitter_y: int = 2
    canvas_height: int | None = None
    canvas_width: int | None = None

    @property
    def canvas(self) -> tuple[int, int]:
        return (self.canvas_height or self.height, self.canvas_width or self.width)

    @property
    def is_scene(self) -> bool:
        return self.canvas != (self.height, self.width)


@lru_cache(maxsize=8192)
def _word_mask(word: str, height: int, width: int, font_size: int) -> np.ndarray:
    """Anti-aliased coverage mask (float32 HxW in [0,1]) of ``word`` centred on the canvas."""
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    font = _font(font_size)
    text = word.upper()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) / 2 - left
    # centre the cap height (upper-case glyphs), not the full ascender/descender box
    cap_top, cap_bottom = draw.textbbox((0, 0), "H", font=font)[1::2]
    y = (height - (cap_bottom - cap_top)) / 2 - cap_top
    draw.text((x, y), text, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def render_sign(word: str, color: str, dx: int = 0, dy: int = 0, config: GlyphDataConfig = GlyphDataConfig()) -> torch.Tensor:
    """Render ``word`` on a ``color`` sign, shifted by (dx, dy) pixels.

    Returns:
        A float tensor (3, H, W) in [0, 1].
    """
    if color not in PALETTE:
        raise ValueError(f"unknown colour {color!r}; choose one of {', '.join(COLORS)}")
    mask = _word_mask(word, config.height, config.width, config.font_size)
    mask = np.roll(mask, shift=(dy, dx), axis=(0, 1))
    bg, fg = (np.asarray(c, dtype=np.float32) / 255.0 for c in PALETTE[color])
    img = bg[:, None, None] * (1.0 - mask[None]) + fg[:, None, None] * mask[None]
    return torch.from_numpy(img)


def _smooth_colour(rng: random.Random, low: float = 0.15, high: float = 0.85) -> np.ndarray:
    return np.asarray([rng.uniform(low, high) for _ in range(3)], dtype=np.float32)


def render_background(height: int, width: int, rng: random.Random) -> np.ndarray:
    """A random scene (H, W, 3 float32 in [0, 1]): sky gradient, horizon, ground, sun, boxes and hills.

    Low-frequency shapes only (no pixel noise): structure a model can reproduce from its seed.
    """
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    top, bottom = _smooth_colour(rng, 0.3, 0.95), _smooth_colour(rng, 0.3, 0.95)
    img = top * (1 - ys) + bottom * ys + np.zeros((1, width, 1), dtype=np.float32)
    horizon = rng.uniform(0.55, 0.85)
    tilt = rng.uniform(-0.15, 0.15)
    ground = _smooth_colour(rng, 0.1, 0.7)
    ground_mask = ys > horizon + tilt * (xs - 0.5)
    img = np.where(ground_mask, ground * (0.8 + 0.2 * ys), img)
    aspect = width / height
    for _ in range(rng.randint(0, 2)):  # hills
        cx, r = rng.uniform(0, 1), rng.uniform(0.15, 0.4)
        hill = ((xs - cx) * aspect) ** 2 + ((ys - horizon - 0.05) / 1.0) ** 2 < r**2
        img = np.where(hill & (ys > horizon - r), _smooth_colour(rng, 0.1, 0.6), img)
    if rng.random() < 0.6:  # sun
        cx, cy, r = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.12)
        sun = ((xs - cx) * aspect) ** 2 + (ys - cy) ** 2 < r**2
        img = np.where(sun, np.asarray([rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.95), rng.uniform(0.2, 0.6)], dtype=np.float32), img)
    for _ in range(rng.randint(1, 4)):  # boxes standing on the horizon (houses, trees, posts)
        x0 = rng.uniform(-0.05, 0.95)
        w, h = rng.uniform(0.04, 0.18), rng.uniform(0.1, 0.45)
        box = (xs > x0) & (xs < x0 + w) & (ys < horizon + 0.03) & (ys > horizon - h)
        img = np.where(box, _smooth_colour(rng, 0.05, 0.9), img)
    return np.ascontiguousarray(img.clip(0.0, 1.0))


def render_scene(
    word: str, color: str, dx: int, dy: int, config: GlyphDataConfig, rng: random.Random
) -> torch.Tensor:
    """``word`` on a ``color`` sign with a darker 1-pixel border, centred on a random scene.

    Returns:
        A float tensor (3, canvas_height, canvas_width) in [0, 1].
    """
    sign = render_sign(word, color, 0, 0, config).numpy().transpose(1, 2, 0)
    border = np.asarray(PALETTE[color][0], dtype=np.float32) / 255.0 * 0.45
    sign = sign.copy()
    sign[0, :], sign[-1, :], sign[:, 0], sign[:, -1] = border, border, border, border
    ch, cw = config.canvas
    img = render_background(ch, cw, rng)
    top = (ch - config.height) // 2 + dy
    left = (cw - config.width) // 2 + dx
    img[top : top + config.height, left : left + config.width] = sign
    return torch.from_numpy(img.transpose(2, 0, 1).copy())


def sign_box(canvas: tuple[int, int], sign: tuple[int, int], margin: int = 0) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the centred sign on a canvas, grown by ``margin`` pixels and clipped."""
    (ch, cw), (sh, sw) = canvas, sign
    top, left = (ch - sh) // 2 - margin, (cw - sw) // 2 - margin
    return max(0, top), max(0, left), min(ch, top + sh + 2 * margin), min(cw, left + sw + 2 * margin)


def rendered_word_swap(
    source: str, target: str, color: str, seed: int, sign: tuple[int, int], canvas: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two training renderings that differ only in the word: the same scene (seeded) and ``color`` sign.

    A perfect text edit on the training distribution: the SSIM between the two is the most any edit can
    keep while the letters change, for this sign and canvas geometry.

    Returns:
        (source image, target image), float tensors (3, canvas height, canvas width) in [0, 1].
    """
    config = GlyphDataConfig(height=sign[0], width=sign[1], canvas_height=canvas[0], canvas_width=canvas[1])
    if not config.is_scene:
        return render_sign(source.upper(), color, 0, 0, config), render_sign(target.upper(), color, 0, 0, config)
    pair = tuple(render_scene(word.upper(), color, 0, 0, config, random.Random(seed)) for word in (source, target))
    return pair[0], pair[1]


def make_prompt(word: str, color: str, template: int, case: str = "lower") -> str:
    """Fill prompt template ``template`` (an index into TEMPLATES)."""
    text = {"lower": word.lower(), "upper": word.upper(), "title": word.title()}[case]
    return TEMPLATES[template].format(word=text, color=color)


@dataclass(frozen=True)
class GlyphSample:
    word: str
    color: str
    template: int
    prompt: str


class SignSampler:
    """Deterministic stream of (images, prompts, samples) batches for training.

    Args:
        seed: seed of the stream (the step number is mixed in, so a resumed run sees new batches).
        special_fraction: share of each batch drawn from the toxic + replacement words, which the
            product needs written most reliably.
    """

    def __init__(self, config: GlyphDataConfig = GlyphDataConfig(), seed: int = 0, special_fraction: float = 0.4):
        vocab = load_vocabulary()
        self.config = config
        self.seed = seed
        self.common = vocab["common"]
        self.special = vocab["toxic"] + vocab["replacements"]
        self.special_fraction = special_fraction

    def sample(self, rng: random.Random) -> GlyphSample:
        pool = self.special if rng.random() < self.special_fraction else self.common
        word = rng.choice(pool)
        color = rng.choice(COLORS)
        template = rng.randrange(len(TEMPLATES))
        case = rng.choices(("lower", "title", "upper"), weights=(8, 1, 1))[0]
        return GlyphSample(word, color, template, make_prompt(word, color, template, case))

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, list[GlyphSample]]:
        rng = random.Random(f"{self.seed}:{step}")
        samples = [self.sample(rng) for _ in range(size)]
        c = self.config
        images = []
        for s in samples:
            dx, dy = rng.randint(-c.jitter_x, c.jitter_x), rng.randint(-c.jitter_y, c.jitter_y)
            if c.is_scene:
                images.append(render_scene(s.word, s.color, dx, dy, c, rng))
            else:
                images.append(render_sign(s.word, s.color, dx, dy, c))
        return torch.stack(images), samples


def aux_targets(samples: list[GlyphSample], input_ids: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
    """Per-token targets of the text encoder's auxiliary loss.

    For each prompt byte: whether it belongs to the word to write, the letter's offset from the word's
    centre (in letters, for word bytes), and the background colour index (for every non-pad token).
    Byte-level ids are 3 + byte value (ByT5 convention), so character positions map to token positions.
    """
    n, length = input_ids.shape
    is_word = torch.zeros(n, length)
    offset = torch.zeros(n, length)
    color = torch.full((n, length), -100, dtype=torch.long)
    for i, s in enumerate(samples):
        start = s.prompt.lower().find(s.word.lower())
        if start < 0:
            raise ValueError(f"word {s.word!r} not found in prompt {s.prompt!r}")
        for k in range(len(s.word)):
            pos = start + k
            if pos < length:
                is_word[i, pos] = 1.0
                offset[i, pos] = (k - (len(s.word) - 1) / 2) / 4.0
        color[i, input_ids[i] != pad_id] = COLORS.index(s.color)
    return {"is_word": is_word, "offset": offset, "color": color}
