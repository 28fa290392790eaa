"""The resumable state of a LoRA run: one ``checkpoint.pt`` per run directory, checked before resuming.

A checkpoint holds the step, the adapter's weights (peft format), the optimizer state, the per-step
losses and a fingerprint of the run's settings (hyper-parameters, exact target modules, dataset size).
Resuming with different settings would silently train another run, so it is refused with the list of
differences; only ``steps`` (to extend a run) and ``checkpoint_every`` may change. The file is written
to a temporary name and renamed, so an interruption never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("safetext.lora")

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_FORMAT = 1


def read_checkpoint(out: Path | None, resume: bool, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` for a fresh run.

    Args:
        out: the run directory (``None``: an in-memory run, never resumed).
        resume: whether the caller asked to continue an existing run.
        fingerprint: the settings of the run about to start.

    Raises:
        ValueError: a checkpoint exists but ``resume`` is False, the file is not a LoRA checkpoint, or
            the settings differ from the checkpoint's (the message lists the differences).
    """
    path = out / CHECKPOINT_FILE if out is not None else None
    if path is None or not path.is_file():
        if resume and out is not None:
            logger.info("no checkpoint in %s; starting a new run", out)
        return None
    if not resume:
        raise ValueError(
            f"{out} already holds a LoRA checkpoint ({CHECKPOINT_FILE}); pass resume=True (--resume) to continue it "
            "or choose another output directory"
        )
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a safetext LoRA checkpoint; remove it or choose another output directory")
    saved = state["fingerprint"]
    differ = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differ:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}" for k in differ[:6])
        raise ValueError(f"cannot resume {path}: the run settings changed ({details}); use the same settings or a new directory")
    return state


def write_checkpoint(
    out: Path,
    step: int,
    lora_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    losses: list[float],
    fingerprint: dict[str, Any],
) -> Path:
    """Atomically replace ``out/checkpoint.pt`` with the state after optimizer step ``step``."""
    path = out / CHECKPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "lora": {k: v.detach().to("cpu").clone() for k, v in lora_state.items()},
        "optimizer": optimizer_state,
        "losses": list(losses),
        "fingerprint": fingerprint,
    }
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def open_log(out: Path, resumed_step: int | None):
    """Open ``out/train_log.jsonl`` for appending, keeping only the lines up to the resumed step.

    A run interrupted after its last checkpoint logged steps that the resumed run repeats; dropping
    them keeps one line per step.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOG_FILE
    kept = []
    if resumed_step is not None and path.is_file():
        kept = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= resumed_step]
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
    return path.open("a", encoding="utf-8")
