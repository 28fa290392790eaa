"""Find where a word is written from the cross-attention the original run paid to it (``region="auto"``).

A pipeline that writes a word attends to that word's prompt tokens from the image positions where the
letters go. While the original image is generated, :class:`WordAttention` records, in every
text-attention layer of the denoiser and at every step, how much attention each image position of the
conditional branch pays to the source text's tokens (the layer's own softmax over all its keys, padding
mask applied, summed over the word's tokens, averaged over heads). Each layer's map is upsampled to the
image and normalized to sum 1; layers are combined weighted by how concentrated their map is
(1 - entropy / log(positions)), so the few layers that look at the letters dominate the many that spread
their attention over the image. The region is the bounding box of the combined map's peak and the
positions connected to it whose values are at least ``threshold`` times the peak, widened about its centre
in proportion when the target text is longer than the source (it will need the room).

    >>> result = edit_text(pipe, prompt, "stop", "go", region="auto")   # no coordinates needed
    >>> result.metrics["region"]
    {'kind': 'auto', 'box': [23, 31, 38, 96], 'threshold': 0.7}

The source text's tokens are the prompt's tokens that change when the text is removed from the prompt
(the pipeline's own tokenizers), so nothing here knows a tokenizer's vocabulary; on SD3 the word is followed
in both parts of the prompt sequence (CLIP tokens, then T5 tokens).

Works on every family whose latents region blending can reach: plain cross-attention (Stable Diffusion
1.x/2.x, SDXL, PixArt, glyph), added K/V (DeepFloyd IF: text keys before the image's own keys in one
softmax) and SD3's joint attention (image keys, then text keys; the per-head norms applied as the processor
does). The probabilities are the ones the layer's attention uses (tested by rebuilding each layer's output
from them). Flux packs its latents, which region blending cannot reach.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from safetext.edit.region import RegionError
from safetext.patching.hooks import HookSet, is_active

#: ``region="auto"`` keeps the positions around the peak whose combined attention is at least this share of
#: the peak. Chosen on the glyph model's tuning prompts (24 any-length edits, seed 3000, not the benchmark's
#: pairs; 2-layer map), by the share read as the target with SSIM >= 0.85: at thresholds 0.3 / 0.4 / 0.5 /
#: 0.6 / 0.7 without widening 0.42 / 0.50 / 0.54 / 0.62 / 0.62; with :func:`fit_text_length`, at 0.5 / 0.6
#: / 0.7: 0.50 / 0.67 / 0.71 (the declared sign, region="text": 0.71). Lower thresholds reach the sign's
#: outline, which costs SSIM; higher ones hug the source word, which widening for a longer target makes up.
AUTO_REGION_THRESHOLD = 0.7

#: :class:`WordAttention` computes at most this many attention probabilities at once (a few heads of a large
#: layer at a time: 64 MiB in float32).
WORD_ATTENTION_CHUNK = 1 << 24

#: :func:`attention_box` finds the peak's connected region on a map at most this many positions on a side.
COMPONENT_MAX_SIDE = 256

#: Adapter families whose attention maps ``region="auto"`` reads.
AUTO_REGION_FAMILIES: tuple[str, ...] = ("unet_cross", "pixart", "added_kv", "sd3_joint")


def substitute_text(prompt: str, text: str, replacement: str) -> str:
    """``prompt`` with every occurrence of ``text`` replaced: as is when it occurs exactly, else case-insensitively."""
    if text in prompt:
        return prompt.replace(text, replacement)
    return re.sub(re.escape(text), lambda _: replacement, prompt, flags=re.IGNORECASE)


def _token_ids(tokenizer: Any, prompt: str) -> list[int]:
    ids = tokenizer(prompt, truncation=True, max_length=getattr(tokenizer, "model_max_length", None)).input_ids
    return [int(v) for v in (ids.tolist() if torch.is_tensor(ids) else ids)]


def _span(with_text: list[int], without: list[int]) -> list[int]:
    prefix = 0
    while prefix < min(len(with_text), len(without)) and with_text[prefix] == without[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(with_text), len(without)) - prefix and with_text[-1 - suffix] == without[-1 - suffix]:
        suffix += 1
    return list(range(prefix, len(with_text) - suffix))


def _token_groups(pipe: Any) -> list[tuple[Any, int]]:
    """``(tokenizer, offset)`` of each part of the prompt sequence the denoiser reads.

    SD3 puts its CLIP tokens (``tokenizer_max_length`` of them) before its T5 tokens; every other supported
    pipeline has one sequence (SDXL's two CLIP encoders are concatenated along features, not tokens).
    """
    groups = [(getattr(pipe, "tokenizer", None), 0)]
    t5, encoder = getattr(pipe, "tokenizer_3", None), getattr(pipe, "text_encoder_3", None)
    if t5 is not None and encoder is not None:
        groups.append((t5, int(getattr(pipe, "tokenizer_max_length", None) or groups[0][0].model_max_length)))
    return groups


def text_token_positions(pipe: Any, prompt: str, text: str) -> list[int]:
    """Positions of ``text``'s tokens in the prompt sequence the denoiser reads, as the pipeline tokenizes it.

    In each part of the sequence (see :func:`_token_groups`), the tokens between the longest common prefix
    and suffix of the prompt with and without ``text``.

    Raises:
        RegionError: the pipeline has no ``tokenizer``, or ``text`` adds no token to the prompt.
    """
    groups = _token_groups(pipe)
    if groups[0][0] is None or not callable(groups[0][0]):
        raise RegionError(f"{type(pipe).__name__} has no tokenizer, which region='auto' needs; pass a (top, left, bottom, right) box")
    without = substitute_text(prompt, text, "")
    positions: list[int] = []
    for tokenizer, offset in groups:
        positions += [offset + p for p in _span(_token_ids(tokenizer, prompt), _token_ids(tokenizer, without))]
    if not positions:
        raise RegionError(
            f"{text!r} adds no token to the prompt as {type(groups[0][0]).__name__} splits it (truncated?); "
            "pass a (top, left, bottom, right) box instead of region='auto'"
        )
    return positions


@dataclass(frozen=True)
class AttentionTaps:
    """Where one text-attention layer's queries and keys come from, and how its softmax is laid out.

    Attributes:
        name: module name of the attention module.
        attention: the attention module (``to_q`` gives the image queries).
        text_key: the projection giving the text keys.
        image_key: the projection giving image keys in the same softmax (added K/V, joint), else ``None``.
        text_first: text keys precede the image keys in the softmax (added K/V) rather than follow them (joint).
        query_norm, image_key_norm, text_key_norm: attribute names of per-head norms the processor applies.
    """

    name: str
    attention: nn.Module
    text_key: nn.Module
    image_key: nn.Module | None = None
    text_first: bool = True
    query_norm: str | None = None
    image_key_norm: str | None = None
    text_key_norm: str | None = None


def _taps(family: str, name: str, attention: nn.Module) -> AttentionTaps:
    if family == "added_kv":
        image = None if getattr(attention, "only_cross_attention", False) else attention.to_k
        return AttentionTaps(name, attention, attention.add_k_proj, image, text_first=True)
    if family == "sd3_joint":
        return AttentionTaps(
            name, attention, attention.add_k_proj, attention.to_k, text_first=False,
            query_norm="norm_q", image_key_norm="norm_k", text_key_norm="norm_added_k",
        )
    return AttentionTaps(name, attention, attention.to_k, query_norm="norm_q", text_key_norm="norm_k")


def attention_taps(pipe: Any) -> list[AttentionTaps]:
    """The :class:`AttentionTaps` of every text-attention layer of the pipeline's denoiser.

    Raises:
        RegionError: a family whose latents region blending cannot reach (Flux), with the families that work.
    """
    from safetext.patching.layers import resolve_adapter

    denoiser, adapter = resolve_adapter(pipe)
    if adapter.family not in AUTO_REGION_FAMILIES:
        raise RegionError(
            f"region='auto' is not available for {type(denoiser).__name__} ({adapter.family}): its latents are packed, "
            f"which region blending cannot reach; it works on {', '.join(AUTO_REGION_FAMILIES)} denoisers. Edit "
            "without region="
        )
    return [_taps(adapter.family, layer.name, denoiser.get_submodule(layer.name)) for layer in adapter.discover(denoiser)]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(1, tokens, heads * dim) -> (1, heads, tokens, dim), in float32."""
    return x.float().view(1, x.shape[1], heads, x.shape[-1] // heads).transpose(1, 2)


def _normed(attention: nn.Module, norm: str | None, x: torch.Tensor) -> torch.Tensor:
    module = getattr(attention, norm, None) if norm else None
    return module(x) if module is not None else x


def attention_probabilities(
    taps: AttentionTaps,
    query: torch.Tensor,
    text_key: torch.Tensor,
    image_key: torch.Tensor | None = None,
    mask: Any = None,
    heads: slice = slice(None),
) -> torch.Tensor:
    """The layer's attention probabilities for one row: ``(heads, queries, keys)``, keys in the softmax's order.

    Args:
        taps: the layer.
        query, text_key, image_key: outputs of its projections for that row, ``(1, tokens, heads * dim)``.
        mask: the ``attention_mask`` the layer received (an additive padding bias over the text tokens, or over
            all keys), if any.
        heads: which heads (default: all; :class:`WordAttention` goes through large layers a few at a time).
    """
    attention = taps.attention
    count = int(attention.heads)
    q = _normed(attention, taps.query_norm, _heads(query, count)[:, heads])
    text = _normed(attention, taps.text_key_norm, _heads(text_key, count)[:, heads])
    if image_key is not None:
        image = _normed(attention, taps.image_key_norm, _heads(image_key, count)[:, heads])
        keys = torch.cat([text, image] if taps.text_first else [image, text], dim=2)
    else:
        keys = text
    scores = (q @ keys.transpose(-1, -2))[0] * float(attention.scale)  # (heads, queries, keys)
    if torch.is_tensor(mask) and mask.shape[-1] in (keys.shape[2], text.shape[2]):
        bias = mask[-1:].float().reshape(-1, mask.shape[-1])[-1]  # the row's bias (one for every query of a padding mask)
        if bias.shape[0] != keys.shape[2]:  # over the text tokens only
            pad = torch.zeros(keys.shape[2] - bias.shape[0], dtype=bias.dtype, device=bias.device)
            bias = torch.cat([bias, pad] if taps.text_first else [pad, bias])
        scores = scores + bias
    return scores.softmax(-1)


class WordAttention:
    """Per-call recorder of the attention the conditional branch pays to some prompt tokens.

    Register it for one pipeline call with ``installed(recorder, recorder.register)``; its hooks act only
    in the context where it is active (see :mod:`safetext.patching.hooks`), and keep their state on this
    object, never on the modules.

    Args:
        layers: the layers' :class:`AttentionTaps` (see :func:`attention_taps`).
        positions: the token positions to follow (see :func:`text_token_positions`).
    """

    def __init__(self, layers: Sequence[AttentionTaps], positions: Sequence[int]) -> None:
        self.layers = list(layers)
        self.positions = list(positions)
        self.sums: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._pending: dict[str, dict[str, torch.Tensor]] = {}

    def register(self, hooks: HookSet) -> None:
        for taps in self.layers:
            hooks.forward_hook(taps.attention.to_q, self._stash(taps.name, "query"))
            hooks.forward_hook(taps.text_key, self._stash(taps.name, "text_key"))
            if taps.image_key is not None:
                hooks.forward_hook(taps.image_key, self._stash(taps.name, "image_key"))
            hooks.forward_hook(taps.attention, self._finish(taps), with_kwargs=True)

    def _stash(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if is_active(self):
                self._pending.setdefault(name, {})[kind] = output[-1:].detach()  # conditional row: last of [uncond | cond]
            return None

        return hook

    def _finish(self, taps: AttentionTaps) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if not is_active(self):
                return None
            pending = self._pending.pop(taps.name, {})
            if "query" not in pending or "text_key" not in pending or (taps.image_key is not None and "image_key" not in pending):
                return None
            mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
            query, text_key, image_key = pending["query"], pending["text_key"], pending.get("image_key")
            text_tokens = text_key.shape[1]
            image_tokens = 0 if image_key is None else image_key.shape[1]
            start = 0 if taps.text_first else image_tokens
            columns = [start + p for p in self.positions if p < text_tokens]
            heads = int(module.heads)
            step = max(1, WORD_ATTENTION_CHUNK // (query.shape[1] * (text_tokens + image_tokens)))  # bounded memory
            weights = sum(
                attention_probabilities(taps, query, text_key, image_key, mask, slice(h, h + step))[..., columns].sum((0, 2))
                for h in range(0, heads, step)
            ) / heads  # (queries,): the word's share, averaged over heads
            self.sums[taps.name] = weights if taps.name not in self.sums else self.sums[taps.name] + weights
            self.calls[taps.name] = self.calls.get(taps.name, 0) + 1
            return None

        return hook

    def combined_map(self, height: int, width: int) -> torch.Tensor:
        """The layers' maps at ``height`` x ``width``, each summing to 1, weighted by concentration.

        Raises:
            RegionError: nothing was recorded (the run called none of the layers).
        """
        maps, weights = [], []
        for name, total in self.sums.items():
            count = total.numel()
            rows = int(round(math.sqrt(count * height / width)))
            if rows <= 0 or count % rows:
                continue  # positions that are not a grid of the image's aspect (none on supported models)
            grid = (total / self.calls[name]).view(1, 1, rows, count // rows)
            probabilities = grid.flatten() / grid.sum()
            entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum() / math.log(count)
            upsampled = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            maps.append(upsampled / upsampled.sum())
            weights.append(max(0.0, 1.0 - float(entropy)))
        if not maps:
            raise RegionError("the original run recorded no cross-attention to the source text; pass a box instead of region='auto'")
        total_weight = sum(weights)
        if total_weight <= 0:
            weights, total_weight = [1.0] * len(maps), float(len(maps))
        return sum(w / total_weight * m for w, m in zip(weights, maps))


def attention_box(attention_map: torch.Tensor, threshold: float = AUTO_REGION_THRESHOLD) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the map's peak and the positions connected to it at >= ``threshold`` x peak.

    Only the connected part around the peak counts (8-neighbourhood), so a stray spot elsewhere that one
    coarse layer lights up does not stretch the box across the image. Maps larger than
    :data:`COMPONENT_MAX_SIDE` on a side are area-averaged by an integer factor first and the box scaled
    back (clipped to the map).
    """
    if not 0.0 < threshold <= 1.0:
        raise RegionError(f"the auto-region threshold must be in (0, 1], got {threshold}")
    height, width = attention_map.shape
    factor = max(1, math.ceil(max(height, width) / COMPONENT_MAX_SIDE))
    grid = attention_map.float()[None, None]
    if factor > 1:
        grid = F.avg_pool2d(grid, factor, ceil_mode=True)
    above = grid >= threshold * grid.max()
    peak = int(torch.argmax(grid))
    region = torch.zeros_like(above)
    region.view(-1)[peak] = True
    while True:
        grown = (F.max_pool2d(region.float(), 3, stride=1, padding=1) > 0) & above
        if torch.equal(grown, region):
            break
        region = grown
    rows, cols = torch.nonzero(region[0, 0], as_tuple=True)
    top, left = int(rows.min()) * factor, int(cols.min()) * factor
    bottom, right = min(height, (int(rows.max()) + 1) * factor), min(width, (int(cols.max()) + 1) * factor)
    return top, left, bottom, right


def fit_text_length(box: tuple[int, int, int, int], source_text: str, target_text: str, width: int) -> tuple[int, int, int, int]:
    """``box`` widened about its centre by ``len(target) / len(source)`` when the target text is longer.

    The box hugs where the source text was written; a longer word written in the same place needs
    proportionally more room along the line (clipped to the image). A shorter or equal one keeps the box.
    """
    source, target = len(source_text.strip()), len(target_text.strip())
    top, left, bottom, right = box
    if source <= 0 or target <= source:
        return box
    centre, half = (left + right) / 2.0, (right - left) * target / source / 2.0
    return top, max(0, int(math.floor(centre - half))), bottom, min(width, int(math.ceil(centre + half)))
