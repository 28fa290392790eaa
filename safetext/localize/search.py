"""The localization search: one generic patch search and three thin stages built on it.

:func:`patch_search` scores any list of candidate layer sets (names, indices or
:class:`~safetext.localize.records.PatchCandidate`) on a :class:`~safetext.localize.sweep.PatchSweep`.
The paper's procedure is three uses of it:

1. :func:`sweep_single_layers`: every text-attention layer alone, patched at every step.
2. :func:`grow_layer_set`: greedy growth. Each round tries the current set plus each remaining
   layer and adds the one with the best *efficiency*: movement gained per unit of similarity lost,
   ``gain / max(similarity_loss, similarity_floor)``. The floor keeps a layer that barely changes the
   image but also barely moves the text from beating a layer that moves it a lot. Growth stops when
   the best gain is below ``min_gain`` or the set holds ``budget`` layers (default: 25% of the model's
   text-attention layers). The first round reuses the single-layer sweep's scores (checkpoint).
3. :func:`search_start_fraction`: the chosen set from start fractions 0..0.5. Starting later keeps
   more of the original image; it picks the *largest* start whose flip rate and movement stay within
   ``tolerance`` of the best start's.

    >>> sweep = PatchSweep(pipe, pairs, "ocr")
    >>> singles = sweep_single_layers(sweep)
    >>> growth = grow_layer_set(sweep, budget=2)
    >>> start = search_start_fraction(sweep, growth.layers)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from safetext.localize.records import CandidateScore, LocalizationError, PatchCandidate
from safetext.localize.sweep import PatchSweep
from safetext.patching.layers import select_layers

#: Start fractions the start search tries by default (the paper's starts are 2-4 of 28-50 steps).
DEFAULT_START_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)

#: Default layer budget as a share of the model's text-attention layers.
DEFAULT_BUDGET_SHARE = 0.25


def _as_candidate(sweep: PatchSweep, item: PatchCandidate | Sequence[str | int] | str | int) -> PatchCandidate:
    if isinstance(item, PatchCandidate):
        return item
    wanted = [item] if isinstance(item, (str, int)) else list(item)
    return PatchCandidate(tuple(layer.index for layer in select_layers(sweep.layers, wanted)))


def patch_search(
    sweep: PatchSweep,
    candidate_sets: Sequence[PatchCandidate | Sequence[str | int] | str | int],
    *,
    desc: str = "patch search",
) -> dict[PatchCandidate, CandidateScore]:
    """Score candidate layer sets: generate the source prompts with each set's K/V from the targets.

    Args:
        sweep: the sweep (pipeline, pairs, scorer, checkpoint).
        candidate_sets: each a :class:`PatchCandidate`, or a layer name/index, or a list of them (patched
            from step 0).
        desc: label of the progress bar.

    Returns:
        ``{candidate: CandidateScore}`` averaged over every pair, in the order given.

    Raises:
        LayerMapError: a layer name or index the model lacks.
    """
    return sweep.evaluate([_as_candidate(sweep, item) for item in candidate_sets], desc=desc)


def sweep_single_layers(sweep: PatchSweep, layers: Sequence[str | int] | None = None) -> dict[PatchCandidate, CandidateScore]:
    """Patch each text-attention layer alone (from step 0): one pipeline call per layer.

    Args:
        sweep: the sweep.
        layers: restrict to these layers (names or indices; default: all).
    """
    chosen = sweep.layers if layers is None else select_layers(sweep.layers, list(layers))
    return patch_search(sweep, [PatchCandidate((layer.index,)) for layer in chosen], desc="single layers")


def default_budget(layer_count: int, share: float = DEFAULT_BUDGET_SHARE) -> int:
    """Largest layer count within ``share`` of the model's layers (at least 1)."""
    return max(1, math.floor(share * layer_count + 1e-9))


@dataclass(frozen=True)
class GrowthStep:
    """One round of greedy growth.

    Attributes:
        added: index of the layer added this round.
        score: the score of the set after adding it.
        gain: movement gained over the previous set.
        similarity_loss: similarity lost against the previous set.
        efficiency: ``gain / max(similarity_loss, similarity_floor)``.
    """

    added: int
    score: CandidateScore
    gain: float
    similarity_loss: float
    efficiency: float


@dataclass(frozen=True)
class GrowthResult:
    """The greedily grown layer set.

    Attributes:
        layers: chosen layer indices, sorted.
        steps: the rounds, in order.
        stop_reason: why growth stopped (``budget``, ``min_gain``, ``exhausted`` or ``no_layer_moves_text``).
        converged: False when no layer reached ``min_gain`` and the best single layer was kept as a
            fallback (such a map should not be shipped).
        budget: the layer budget used.
    """

    layers: tuple[int, ...]
    steps: tuple[GrowthStep, ...]
    stop_reason: str
    converged: bool
    budget: int

    @property
    def score(self) -> CandidateScore:
        return self.steps[-1].score


def _ranked(options: dict[PatchCandidate, CandidateScore], added: dict[PatchCandidate, int], movement: float,
            similarity: float, floor: float) -> list[GrowthStep]:
    steps = []
    for candidate, score in options.items():
        gain = score.movement - movement
        loss = similarity - score.similarity
        steps.append(GrowthStep(added[candidate], score, gain, loss, gain / max(loss, floor)))
    return sorted(steps, key=lambda step: (-step.efficiency, -step.gain, step.added))


def grow_layer_set(
    sweep: PatchSweep,
    *,
    budget: int | None = None,
    min_gain: float = 0.02,
    similarity_floor: float = 0.1,
    layers: Sequence[str | int] | None = None,
) -> GrowthResult:
    """Grow a layer set greedily by movement gained per unit of similarity lost.

    Args:
        sweep: the sweep.
        budget: most layers in the set (default: 25% of the model's text-attention layers, at least 1).
        min_gain: stop when no layer adds at least this much movement (movement is in [0, 1]).
        similarity_floor: smallest similarity loss an efficiency is divided by (see the module docstring).
        layers: the layers to choose from (default: all).

    Returns:
        :class:`GrowthResult`. When no single layer reaches ``min_gain`` over the unpatched images, the
        single layer with the most movement is kept and ``converged`` is False.

    Raises:
        LocalizationError: a budget outside 1..number of layers, or a negative threshold.
    """
    pool = [layer.index for layer in (sweep.layers if layers is None else select_layers(sweep.layers, list(layers)))]
    budget = default_budget(len(sweep.layers)) if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= len(pool):
        raise LocalizationError(f"budget must be an int in 1..{len(pool)} (the candidate layers), got {budget!r}")
    if min_gain < 0 or similarity_floor <= 0:
        raise LocalizationError(f"min_gain must be >= 0 and similarity_floor > 0, got {min_gain!r}, {similarity_floor!r}")
    source, _ = sweep.reference_scores()
    chosen: tuple[int, ...] = ()
    movement, similarity = source.movement, source.similarity
    steps: list[GrowthStep] = []
    reason = "exhausted"
    while len(chosen) < budget and len(chosen) < len(pool):
        added = {PatchCandidate(chosen + (index,)): index for index in pool if index not in chosen}
        options = patch_search(sweep, list(added), desc=f"grow to {len(chosen) + 1} layer(s)")
        ranked = _ranked(options, added, movement, similarity, similarity_floor)
        best = ranked[0]
        if best.gain < min_gain:
            if not steps:
                fallback = max(ranked, key=lambda step: (step.score.movement, step.score.similarity, -step.added))
                return GrowthResult((fallback.added,), (fallback,), "no_layer_moves_text", False, budget)
            reason = "min_gain"
            break
        steps.append(best)
        chosen = best.score.candidate.layers  # type: ignore[union-attr]
        movement, similarity = best.score.movement, best.score.similarity
    else:
        reason = "budget" if len(chosen) >= budget else "exhausted"
    return GrowthResult(chosen, tuple(steps), reason, True, budget)


@dataclass(frozen=True)
class StartSearchResult:
    """The start fraction chosen for a layer set.

    Attributes:
        start_fraction: the chosen start.
        scores: the set's score at every start tried, in increasing start order.
        tolerance: how far below the best flip rate / movement a later start may fall.
    """

    start_fraction: float
    scores: tuple[CandidateScore, ...]
    tolerance: float

    @property
    def score(self) -> CandidateScore:
        return next(score for score in self.scores if score.candidate.start_fraction == self.start_fraction)  # type: ignore[union-attr]


def search_start_fraction(
    sweep: PatchSweep,
    layers: Sequence[int],
    *,
    fractions: Sequence[float] = DEFAULT_START_FRACTIONS,
    tolerance: float = 0.05,
) -> StartSearchResult:
    """Pick the latest start that keeps the flip rate and movement within ``tolerance`` of the best.

    Args:
        sweep: the sweep.
        layers: the layer set (indices).
        fractions: start fractions to try, each in [0, 1].
        tolerance: allowed drop of flip rate and of movement from the best start's.

    Raises:
        LocalizationError: no fractions, or a fraction or tolerance out of range.
    """
    values = sorted({float(value) for value in fractions})
    if not values or any(not 0.0 <= value <= 1.0 for value in values):
        raise LocalizationError(f"fractions must be a non-empty list of values in [0, 1], got {list(fractions)!r}")
    if not 0.0 <= tolerance <= 1.0:
        raise LocalizationError(f"tolerance must be in [0, 1], got {tolerance!r}")
    candidates = [PatchCandidate(tuple(layers), value) for value in values]
    scores = patch_search(sweep, candidates, desc="start fraction")
    ordered = tuple(scores[candidate] for candidate in candidates)
    best_flip = max(score.flip_rate for score in ordered)
    best_movement = max(score.movement for score in ordered)
    kept = [
        score for score in ordered
        if score.flip_rate >= best_flip - tolerance - 1e-12 and score.movement >= best_movement - tolerance - 1e-12
    ]
    return StartSearchResult(kept[-1].candidate.start_fraction, ordered, tolerance)  # type: ignore[union-attr]
