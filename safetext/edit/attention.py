"""Find where a word is written from the cross-attention the original run paid to it (``region="auto"``).

A pipeline that writes a word attends to that word's prompt tokens from the image positions where the
letters go. While the original image is generated, :class:`WordAttention` records, in every
cross-attention layer of the denoiser and at every step, how much attention each image position of the
conditional branch pays to the source text's tokens (softmax over all prompt tokens, the text padding
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
(the pipeline's own ``tokenizer``), so nothing here knows a tokenizer's vocabulary.

Needs a denoiser whose text layers are plain cross-attention (``to_q`` reads the image, ``to_k`` the
prompt): Stable Diffusion 1.x/2.x, SDXL, PixArt and the glyph model. Added-K/V (DeepFloyd IF) and joint
attention (SD3, Flux) mix image and text keys in one softmax; pass a box there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
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

#: :func:`attention_box` finds the peak's connected region on a map at most this many positions on a side.
COMPONENT_MAX_SIDE = 256

#: Adapter families whose text layers are plain cross-attention.
CROSS_ATTENTION_FAMILIES: tuple[str, ...] = ("unet_cross", "pixart")


def _remove_text(prompt: str, text: str) -> str:
    if text in prompt:
        return prompt.replace(text, "")
    return re.sub(re.escape(text), "", prompt, flags=re.IGNORECASE)


def _token_ids(tokenizer: Any, prompt: str) -> list[int]:
    ids = tokenizer(prompt, truncation=True, max_length=getattr(tokenizer, "model_max_length", None)).input_ids
    return [int(v) for v in (ids.tolist() if torch.is_tensor(ids) else ids)]


def text_token_positions(pipe: Any, prompt: str, text: str) -> list[int]:
    """Positions of ``text``'s tokens in ``prompt`` as the pipeline's tokenizer splits it.

    The tokens between the longest common prefix and suffix of the prompt with and without ``text``.

    Raises:
        RegionError: the pipeline has no ``tokenizer``, or ``text`` adds no token to the prompt.
    """
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer):
        raise RegionError(f"{type(pipe).__name__} has no tokenizer, which region='auto' needs; pass a (top, left, bottom, right) box")
    with_text, without = _token_ids(tokenizer, prompt), _token_ids(tokenizer, _remove_text(prompt, text))
    prefix = 0
    while prefix < min(len(with_text), len(without)) and with_text[prefix] == without[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(with_text), len(without)) - prefix and with_text[-1 - suffix] == without[-1 - suffix]:
        suffix += 1
    positions = list(range(prefix, len(with_text) - suffix))
    if not positions:
        raise RegionError(
            f"{text!r} adds no token to the prompt as {type(tokenizer).__name__} splits it (truncated?); "
            "pass a (top, left, bottom, right) box instead of region='auto'"
        )
    return positions


def cross_attention_layers(pipe: Any) -> list[tuple[str, nn.Module]]:
    """``(name, attention module)`` of every text layer, when they are plain cross-attention.

    Raises:
        RegionError: another family (added K/V, joint attention), with the families that work.
    """
    from safetext.patching.layers import resolve_adapter

    denoiser, adapter = resolve_adapter(pipe)
    if adapter.family not in CROSS_ATTENTION_FAMILIES:
        raise RegionError(
            f"region='auto' reads cross-attention maps, and {type(denoiser).__name__} ({adapter.family}) mixes image "
            f"and text keys in one attention; it works on {', '.join(CROSS_ATTENTION_FAMILIES)} denoisers. Pass a "
            "(top, left, bottom, right) box or an H x W mask"
        )
    return [(layer.name, denoiser.get_submodule(layer.name)) for layer in adapter.discover(denoiser)]


class WordAttention:
    """Per-call recorder of the attention the conditional branch pays to some prompt tokens.

    Register it for one pipeline call with ``installed(recorder, recorder.register)``; its hooks act only
    in the context where it is active (see :mod:`safetext.patching.hooks`), and keep their state on this
    object, never on the modules.

    Args:
        layers: ``(name, attention module)`` pairs (see :func:`cross_attention_layers`).
        positions: the token positions to follow (see :func:`text_token_positions`).
    """

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], positions: Sequence[int]) -> None:
        self.layers = list(layers)
        self.positions = list(positions)
        self.sums: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self._pending: dict[str, dict[str, torch.Tensor]] = {}

    def register(self, hooks: HookSet) -> None:
        for name, attention in self.layers:
            hooks.forward_hook(attention.to_q, self._stash(name, "q"))
            hooks.forward_hook(attention.to_k, self._stash(name, "k"))
            hooks.forward_hook(attention, self._finish(name), with_kwargs=True)

    def _stash(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if is_active(self):
                self._pending.setdefault(name, {})[kind] = output[-1:].detach()  # conditional row: last of [uncond | cond]
            return None

        return hook

    def _finish(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if not is_active(self):
                return None
            pending = self._pending.pop(name, {})
            if "q" not in pending or "k" not in pending:
                return None
            mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
            weights = self._word_attention(module, pending["q"], pending["k"], mask)
            self.sums[name] = weights if name not in self.sums else self.sums[name] + weights
            self.calls[name] = self.calls.get(name, 0) + 1
            return None

        return hook

    def _word_attention(self, attention: nn.Module, q: torch.Tensor, k: torch.Tensor, mask: Any) -> torch.Tensor:
        heads = int(attention.heads)
        head_dim = q.shape[-1] // heads
        q = q.float().view(1, -1, heads, head_dim).transpose(1, 2)
        k = k.float().view(1, -1, heads, head_dim).transpose(1, 2)
        if getattr(attention, "norm_q", None) is not None:
            q = attention.norm_q(q)
        if getattr(attention, "norm_k", None) is not None:
            k = attention.norm_k(k)
        scores = q @ k.transpose(-1, -2) * float(attention.scale)  # (1, heads, positions, tokens)
        if torch.is_tensor(mask) and mask.shape[-1] == scores.shape[-1]:
            scores = scores + mask[-1:].float().reshape(1, 1, -1, mask.shape[-1])[..., -1:, :]  # padding bias of the cond row
        positions = [p for p in self.positions if p < scores.shape[-1]]
        return scores.softmax(-1)[..., positions].sum(-1).mean(1)[0]  # (positions,)

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
