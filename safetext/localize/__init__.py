"""Localization: find the few text-attention layers that decide what text a model writes.

- :func:`localize_layers`: single-layer sweep, greedy growth, start search -> :class:`~safetext.patching.LayerMap`.
- :func:`verify_layer_map`: does a map still move the text on this model?
- :func:`patch_search` (generic) and its stages :func:`sweep_single_layers`, :func:`grow_layer_set`,
  :func:`search_start_fraction`, on a :class:`PatchSweep`.
- Prompt pairs: :func:`prompt_pairs`, :func:`glyph_prompt_pairs`, :func:`default_prompt_pairs`.
- Scorers: :class:`OcrMovementScorer` (default), :class:`ImageDistanceScorer`.
"""

from safetext.localize.localize import (
    DEFAULT_PAIR_COUNT,
    LocalizationResult,
    ParameterShare,
    localize_layers,
    parameter_share,
)
from safetext.localize.pairs import default_prompt_pairs, glyph_prompt_pairs, pair_words, prompt_pairs
from safetext.localize.records import CandidateScore, LocalizationError, PairScore, PatchCandidate, PromptPair
from safetext.localize.scorers import (
    ImageDistanceScorer,
    OcrMovementScorer,
    PatchScorer,
    SweepReferences,
    get_scorer,
)
from safetext.localize.search import (
    DEFAULT_START_FRACTIONS,
    GrowthResult,
    GrowthStep,
    StartSearchResult,
    default_budget,
    grow_layer_set,
    patch_search,
    search_start_fraction,
    sweep_single_layers,
)
from safetext.localize.shards import SingleProcess, current_process_group
from safetext.localize.sweep import PatchSweep
from safetext.localize.verify import VerificationResult, verify_layer_map

__all__ = [
    "CandidateScore",
    "DEFAULT_PAIR_COUNT",
    "DEFAULT_START_FRACTIONS",
    "GrowthResult",
    "GrowthStep",
    "ImageDistanceScorer",
    "LocalizationError",
    "LocalizationResult",
    "OcrMovementScorer",
    "PairScore",
    "ParameterShare",
    "PatchCandidate",
    "PatchScorer",
    "PatchSweep",
    "PromptPair",
    "SingleProcess",
    "StartSearchResult",
    "SweepReferences",
    "VerificationResult",
    "current_process_group",
    "default_budget",
    "default_prompt_pairs",
    "get_scorer",
    "glyph_prompt_pairs",
    "grow_layer_set",
    "localize_layers",
    "pair_words",
    "parameter_share",
    "patch_search",
    "prompt_pairs",
    "search_start_fraction",
    "sweep_single_layers",
    "verify_layer_map",
]
