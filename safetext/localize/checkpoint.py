"""Checkpoints of a sweep: every candidate's per-pair scores, one JSON file per process.

After each candidate a process rewrites its file atomically (write to a temporary file, then
``os.replace``), so an interrupted sweep loses at most the candidate in flight, and a reader never
sees a half-written file. A resumed sweep skips every candidate already in the file; since the search
decisions depend only on the scores, a resumed sweep reaches the same layer map.

The file starts with a *fingerprint* of everything the scores depend on (model config and K/V weights,
prompt pairs, pipeline settings, scorer, number of processes). Resuming with anything changed is
refused rather than mixing scores of two different sweeps::

    {"format": "safetext-localize-sweep/1", "fingerprint": "9f2c...", "rank": 0, "processes": 2,
     "pairs": [0, 1, 2], "results": {"5@0": [{"movement": 0.93, "flipped": true, ...}, ...]}}

Scores are lists aligned with ``pairs`` (this process's pair indices), so the main process can merge
the shards of all processes back into pair order (:func:`gather_scores`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from safetext.localize.records import LocalizationError, PairScore

logger = logging.getLogger("safetext.localize")

CHECKPOINT_FORMAT = "safetext-localize-sweep/1"


def shard_file(directory: str | Path, rank: int, processes: int) -> Path:
    """Path of process ``rank``'s checkpoint in ``directory``."""
    return Path(directory) / f"sweep-rank{rank}-of-{processes}.json"


class SweepCheckpoint:
    """Per-process store of per-pair scores, persisted after every candidate (or in memory only).

    Args:
        path: the JSON file (``None``: keep results in memory, nothing is written).
        fingerprint: hash of the sweep's inputs (see the module docstring).
        rank: this process's index.
        processes: number of processes of the sweep.
        pair_indices: the pair indices this process scores, in order.
    """

    def __init__(
        self, path: Path | None, fingerprint: str, rank: int, processes: int, pair_indices: Sequence[int]
    ) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.rank = rank
        self.processes = processes
        self.pair_indices = tuple(pair_indices)
        self.results: dict[str, list[PairScore]] = {}

    @classmethod
    def open(
        cls,
        directory: str | Path | None,
        fingerprint: str,
        *,
        rank: int = 0,
        processes: int = 1,
        pair_indices: Sequence[int],
        resume: bool = False,
    ) -> "SweepCheckpoint":
        """Open (and with ``resume``, load) this process's checkpoint in ``directory``.

        Raises:
            LocalizationError: a checkpoint exists and ``resume`` is False; or ``resume`` is True and
                the checkpoint belongs to a different sweep (fingerprint, processes or pairs differ).
        """
        if directory is None:
            return cls(None, fingerprint, rank, processes, pair_indices)
        path = shard_file(directory, rank, processes)
        checkpoint = cls(path, fingerprint, rank, processes, pair_indices)
        if not path.exists():
            return checkpoint
        if not resume:
            raise LocalizationError(
                f"{path} already holds a sweep checkpoint; pass resume=True (CLI: --resume) to continue that "
                "sweep, or remove the file (or choose another output directory) to start over"
            )
        checkpoint._load()
        return checkpoint

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise LocalizationError(f"cannot read sweep checkpoint {self.path}: {error}; remove it to start over") from None
        if data.get("format") != CHECKPOINT_FORMAT:
            raise LocalizationError(f"{self.path} is not a safetext sweep checkpoint ({CHECKPOINT_FORMAT})")
        if data.get("fingerprint") != self.fingerprint or tuple(data.get("pairs", ())) != self.pair_indices:
            raise LocalizationError(
                f"{self.path} was written by a different sweep (model, prompt pairs, pipeline settings, scorer or "
                "number of processes differ); resume with the same settings, or remove it to start over"
            )
        for key, scores in data.get("results", {}).items():
            self.results[key] = [PairScore.from_dict(score) for score in scores]
        logger.info("resumed sweep checkpoint %s with %d scored candidates", self.path, len(self.results))

    def __contains__(self, key: str) -> bool:
        return key in self.results

    def get(self, key: str) -> list[PairScore]:
        return self.results[key]

    def record(self, key: str, scores: Sequence[PairScore]) -> None:
        """Store one candidate's scores (one per pair of this process) and persist the file."""
        if len(scores) != len(self.pair_indices):
            raise LocalizationError(f"{key}: {len(scores)} scores for {len(self.pair_indices)} pairs")
        self.results[key] = list(scores)
        self.save()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "rank": self.rank,
            "processes": self.processes,
            "pairs": list(self.pair_indices),
            "results": {key: [score.to_dict() for score in scores] for key, scores in self.results.items()},
        }

    def save(self) -> None:
        """Atomically rewrite the file (no-op for an in-memory checkpoint)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(self.to_dict(), stream)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _read_shard(own: SweepCheckpoint, rank: int, keys: Sequence[str]) -> SweepCheckpoint:
    """Another process's checkpoint file, checked against this sweep's fingerprint."""
    assert own.path is not None
    path = shard_file(own.path.parent, rank, own.processes)
    if not path.exists():
        raise LocalizationError(f"process {rank} wrote no sweep file {path}; did it fail?")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("fingerprint") != own.fingerprint:
        raise LocalizationError(f"{path} belongs to a different sweep than process {own.rank}'s; remove stale files")
    other = SweepCheckpoint(path, own.fingerprint, rank, own.processes, data["pairs"])
    other.results = {key: [PairScore.from_dict(s) for s in value] for key, value in data["results"].items() if key in keys}
    return other


def gather_scores(checkpoint: SweepCheckpoint, keys: Iterable[str], pair_count: int) -> dict[str, list[PairScore]]:
    """Per-pair scores of every key over all pairs, in pair order, merged from every process's file.

    With one process the checkpoint's own results are used; otherwise each process's file is read
    (call after every process has finished the keys, i.e. after ``wait_for_everyone``).

    Raises:
        LocalizationError: a shard file is missing or lacks a key, or the shards do not cover every pair.
    """
    keys = list(dict.fromkeys(keys))
    if checkpoint.processes == 1:
        shards = [checkpoint]
    else:
        if checkpoint.path is None:
            raise LocalizationError("a multi-process sweep needs a checkpoint directory to exchange scores")
        shards = [
            checkpoint if rank == checkpoint.rank else _read_shard(checkpoint, rank, keys)
            for rank in range(checkpoint.processes)
        ]
    merged: dict[str, list[PairScore]] = {}
    for key in keys:
        by_pair: dict[int, PairScore] = {}
        for shard in shards:
            if shard.pair_indices and key not in shard.results:
                raise LocalizationError(f"process {shard.rank} has no scores for candidate {key}")
            for index, score in zip(shard.pair_indices, shard.results.get(key, ())):
                by_pair[index] = score
        if sorted(by_pair) != list(range(pair_count)):
            raise LocalizationError(f"candidate {key}: scores cover {len(by_pair)} of {pair_count} pairs")
        merged[key] = [by_pair[index] for index in range(pair_count)]
    return merged
