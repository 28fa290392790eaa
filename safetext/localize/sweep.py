"""The sweep engine: generate the source prompts with a candidate's K/V patch, score, checkpoint, gather.

A :class:`PatchSweep` holds what every stage of a localization shares: the pipeline, the prompt pairs
(this process's shard of them), the pipeline settings, the scorer, the unpatched reference images
and the checkpoint. :meth:`PatchSweep.evaluate` scores a list of :class:`PatchCandidate` objects:

* one pipeline call per candidate (per ``batch_size`` chunk of pairs; default: the whole shard in one
  call), so each candidate's layers are patched exactly once and the target prompts are encoded once
  per call (:class:`~safetext.patching.KVPatch` records them by letting the pipeline encode them);
* every pair keeps its own seed (one ``torch.Generator`` per pair), so a pair's image does not
  depend on which other pairs share its batch or its process;
* after each candidate the per-pair scores go to the checkpoint file, then an optional
  ``on_result(candidate, score)`` callback runs (progress reporting; raising there interrupts the
  sweep with the checkpoint intact);
* candidates already in the checkpoint are not generated again;
* finally every process waits for the others and reads their shard files, so the averages (and
  every decision taken from them) are over all pairs and identical in every process.

    >>> sweep = PatchSweep(pipe, prompt_pairs(16), scorer="ocr", call_kwargs={"num_inference_steps": 20})
    >>> scores = sweep.evaluate([PatchCandidate((5,)), PatchCandidate((5, 6), 0.2)])
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from safetext.localize.checkpoint import SweepCheckpoint, gather_scores
from safetext.localize.records import CandidateScore, LocalizationError, PairScore, PatchCandidate, PromptPair
from safetext.localize.scorers import PatchScorer, SweepReferences, get_scorer, images_to_tensors
from safetext.localize.shards import ProcessGroup, current_process_group, shard_indices
from safetext.patching.kv_patch import KVPatch
from safetext.patching.layer_map import ModelFingerprint
from safetext.patching.layers import discover_text_layers, find_denoiser

logger = logging.getLogger("safetext.localize")

#: Pipeline arguments a sweep sets itself (one prompt per pair, one seeded generator per pair, numpy output).
RESERVED_CALL_ARGUMENTS: tuple[str, ...] = (
    "prompt",
    "generator",
    "output_type",
    "num_images_per_prompt",
    "latents",
    "prompt_embeds",
    "return_dict",
)

ResultCallback = Callable[[PatchCandidate, "CandidateScore | None"], None]


def check_call_kwargs(call_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate the pipeline settings of a sweep (steps, guidance, size, ...).

    Raises:
        LocalizationError: a reserved argument (the sweep sets it per pair) was given.
    """
    kwargs = dict(call_kwargs or {})
    reserved = sorted(set(kwargs) & set(RESERVED_CALL_ARGUMENTS))
    if reserved:
        raise LocalizationError(
            f"call_kwargs may not set {', '.join(reserved)}: the sweep sets them itself (the prompts come from "
            "the prompt pairs, one seeded generator per pair, numpy output); pass only settings such as "
            "num_inference_steps, guidance_scale, height, width"
        )
    return kwargs


def model_weights_digest(pipe: Any) -> str:
    """A cheap digest of the text K/V weights (sums per projection): tells two fine-tunes apart."""
    denoiser = find_denoiser(pipe)
    sums = []
    for layer in discover_text_layers(pipe):
        for name in (layer.key, layer.value):
            weight = getattr(denoiser.get_submodule(name), "weight", None)
            sums.append(None if weight is None else float(weight.detach().double().sum()))
    return hashlib.sha256(json.dumps(sums).encode()).hexdigest()


def sweep_fingerprint(
    pipe: Any, pairs: Sequence[PromptPair], call_kwargs: Mapping[str, Any], scorer: PatchScorer, processes: int
) -> str:
    """Hash of everything a sweep's scores depend on (model, weights, pairs, settings, scorer, processes)."""
    payload = {
        "model": ModelFingerprint.of(pipe).model_dump(mode="json"),
        "weights": model_weights_digest(pipe),
        "pairs": [pair.to_dict() for pair in pairs],
        "call_kwargs": {key: repr(value) for key, value in sorted(call_kwargs.items())},
        "scorer": scorer.describe(),
        "processes": processes,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


class PatchSweep:
    """Generate-and-score engine shared by every stage of a localization.

    Args:
        pipe: a diffusers text-to-image pipeline safetext can patch.
        pairs: the prompt pairs (at least one).
        scorer: a :class:`~safetext.localize.scorers.PatchScorer` or its name (default: OCR).
        call_kwargs: pipeline settings for every call (``num_inference_steps``, ``guidance_scale``, ...).
        workdir: directory of the checkpoint files (``None``: keep scores in memory; required with
            several processes).
        resume: continue the checkpoint in ``workdir`` instead of refusing to overwrite it.
        process_group: accelerate ``PartialState`` or compatible (default: from the launch environment).
        batch_size: pairs per pipeline call (default: all pairs of this process in one call).
        progress: show a progress bar (main process only).
        on_result: called as ``on_result(candidate, score_over_this_process's_pairs)`` after each
            newly scored candidate, once its scores are checkpointed.

    Raises:
        LocalizationError: no pairs, reserved ``call_kwargs``, a bad ``batch_size``, several processes
            without ``workdir``, or a checkpoint conflict.
    """

    def __init__(
        self,
        pipe: Any,
        pairs: Sequence[PromptPair],
        scorer: PatchScorer | str | None = None,
        *,
        call_kwargs: Mapping[str, Any] | None = None,
        workdir: str | Path | None = None,
        resume: bool = False,
        process_group: ProcessGroup | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        on_result: ResultCallback | None = None,
    ) -> None:
        self.pairs = tuple(pairs)
        if not self.pairs or not all(isinstance(pair, PromptPair) for pair in self.pairs):
            raise LocalizationError("a sweep needs at least one PromptPair (see safetext.localize.prompt_pairs)")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise LocalizationError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.pipe = pipe
        self.scorer = get_scorer(scorer).for_pipeline(pipe)
        self.call_kwargs = check_call_kwargs(call_kwargs)
        self.layers = discover_text_layers(pipe)
        self.group = process_group if process_group is not None else current_process_group()
        if self.group.num_processes > 1 and workdir is None:
            raise LocalizationError(
                f"a sweep over {self.group.num_processes} processes exchanges scores through files: pass workdir"
            )
        self.shard = shard_indices(self.group, len(self.pairs))
        self.batch_size = batch_size
        self.progress = progress
        self.on_result = on_result
        self.fingerprint = sweep_fingerprint(pipe, self.pairs, self.call_kwargs, self.scorer, self.group.num_processes)
        self.checkpoint = SweepCheckpoint.open(
            workdir,
            self.fingerprint,
            rank=self.group.process_index,
            processes=self.group.num_processes,
            pair_indices=self.shard,
            resume=resume,
        )
        self.pipeline_calls = 0
        self.patched_calls: Counter[int] = Counter()
        self._references: SweepReferences | None = None

    # -- generation ---------------------------------------------------------------------------------
    def _chunks(self) -> list[list[int]]:
        """Positions (into this process's shard) of each pipeline call's pairs."""
        size = self.batch_size or max(1, len(self.shard))
        positions = list(range(len(self.shard)))
        return [positions[start : start + size] for start in range(0, len(positions), size)]

    def _call_kwargs(self, prompts: Sequence[str], positions: Sequence[int]) -> dict[str, Any]:
        seeds = [self.pairs[self.shard[position]].seed for position in positions]
        return {
            **self.call_kwargs,
            "prompt": list(prompts),
            "generator": [torch.Generator().manual_seed(seed) for seed in seeds],
            "output_type": "np",
        }

    def _pairs_at(self, positions: Sequence[int]) -> list[PromptPair]:
        return [self.pairs[self.shard[position]] for position in positions]

    def references(self) -> SweepReferences:
        """Unpatched source and target images of this process's pairs (generated once, on first use)."""
        if self._references is None:
            pairs, sources, targets = [], [], []
            for positions in self._chunks():
                chunk = self._pairs_at(positions)
                for prompts, bucket in (([p.source_prompt for p in chunk], sources), ([p.target_prompt for p in chunk], targets)):
                    output = self.pipe(**self._call_kwargs(prompts, positions))
                    self.pipeline_calls += 1
                    bucket.extend(images_to_tensors(output.images))
                pairs.extend(chunk)
            self._references = SweepReferences(tuple(pairs), tuple(sources), tuple(targets))
        return self._references

    def _score_candidate(self, candidate: PatchCandidate) -> list[PairScore]:
        references = self.references()
        patch = KVPatch(self.pipe, layers=list(candidate.layers), start_fraction=candidate.start_fraction)
        scores: list[PairScore] = []
        for positions in self._chunks():
            chunk = self._pairs_at(positions)
            call = self._call_kwargs([pair.source_prompt for pair in chunk], positions)
            output, _ = patch.run(call, {"prompt": [pair.target_prompt for pair in chunk]})
            self.pipeline_calls += 1
            self.patched_calls.update(candidate.layers)
            scores.extend(self.scorer.score(images_to_tensors(output.images), references.subset(positions)))
        return scores

    # -- evaluation ---------------------------------------------------------------------------------
    def _bar(self, total: int, desc: str, quiet: bool = False) -> tqdm:
        show = self.progress and self.group.is_main_process and not quiet
        return tqdm(total=total, desc=desc, unit="candidate", disable=not show)

    def evaluate(self, candidates: Sequence[PatchCandidate], desc: str = "patch search") -> dict[PatchCandidate, CandidateScore]:
        """Score every candidate over all pairs (scoring only those not in the checkpoint).

        Args:
            candidates: the candidates (duplicates are scored once).
            desc: label of the progress bar.

        Returns:
            ``{candidate: CandidateScore}`` in the order given.
        """
        wanted = list(dict.fromkeys(candidates))
        for candidate in wanted:
            if candidate.layers[-1] >= len(self.layers):
                raise LocalizationError(
                    f"candidate {candidate.key} names layer {candidate.layers[-1]}, but the model has "
                    f"{len(self.layers)} text-attention layers (0..{len(self.layers) - 1})"
                )
        todo = [candidate for candidate in wanted if candidate.key not in self.checkpoint]
        with self._bar(len(todo), desc, quiet=not todo) as bar:
            for candidate in todo:
                scores = self._score_candidate(candidate) if self.shard else []
                self.checkpoint.record(candidate.key, scores)
                bar.update(1)
                if self.on_result is not None:
                    self.on_result(candidate, CandidateScore.of(candidate, scores) if scores else None)
        self.group.wait_for_everyone()
        merged = gather_scores(self.checkpoint, [candidate.key for candidate in wanted], len(self.pairs))
        return {candidate: CandidateScore.of(candidate, merged[candidate.key]) for candidate in wanted}

    def reference_scores(self) -> tuple[CandidateScore, CandidateScore]:
        """Scores of the unpatched source images (the starting point) and target images (the ceiling)."""
        keys = ("source", "target")
        if any(key not in self.checkpoint for key in keys):
            references = self.references()
            self.checkpoint.record("source", self.scorer.score(list(references.source_images), references))
            self.checkpoint.record("target", self.scorer.score(list(references.target_images), references))
        self.group.wait_for_everyone()
        merged = gather_scores(self.checkpoint, keys, len(self.pairs))
        return (
            CandidateScore.of(None, merged["source"], label="source"),
            CandidateScore.of(None, merged["target"], label="target"),
        )

    def __repr__(self) -> str:
        return (
            f"PatchSweep({len(self.pairs)} pairs, {len(self.layers)} layers, scorer={self.scorer!r}, "
            f"process {self.group.process_index}/{self.group.num_processes})"
        )
