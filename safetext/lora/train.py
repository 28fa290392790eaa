"""LoRA training restricted to chosen attention layers: seeded, resumable, denoiser-only.

:func:`train_lora` injects a peft LoRA adapter on the projections of the selected attention modules
(a LayerMap's layers, or every cross-attention layer as the baseline), trains it with the noise
prediction loss of the pipeline's scheduler (``epsilon`` or ``v_prediction``), and saves it in diffusers
format so the pipeline's own ``load_lora_weights`` reads it. Only the LoRA parameters train: the text
encoder(s), the VAE and every other denoiser weight stay bit-identical. No EMA.

Every random draw of optimizer step ``s`` (batch order, caption dropout, VAE sample, noise, timesteps)
comes from generators seeded by ``(seed, s)``, so a run resumed from its checkpoint reproduces the
uninterrupted run exactly. A run directory holds:

    checkpoint.pt                      LoRA weights, optimizer state, step (atomically replaced)
    train_log.jsonl                    one line per optimizer step (loss, lr)
    pytorch_lora_weights.safetensors   the trained adapter (diffusers format), written at the end
    lora_targets.json                  which modules were adapted, rank, alpha, parameter counts

Register K/V patch hooks after loading these weights: see :mod:`safetext.lora.adapter`.

    >>> from safetext.lora import LoraTrainConfig, train_lora
    >>> result = train_lora(pipe, "data/signs", layer_map, LoraTrainConfig(rank=64, alpha=64, steps=500),
    ...                     out_dir="runs/lora")  # doctest: +SKIP
    >>> result.targeted_module_names[:1]  # doctest: +SKIP
    ('mid_block.attentions.0.transformer_blocks.0.attn2.to_k',)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from safetext.errors import PatchError, UnsupportedArchitectureError
from safetext.lora.adapter import (
    DEFAULT_ADAPTER_NAME,
    INIT_CHOICES,
    existing_adapters,
    inject_lora,
    lora_parameters,
    remove_lora,
    save_lora_weights,
)
from safetext.lora.checkpoint import open_log, read_checkpoint, write_checkpoint
from safetext.lora.data import CaptionedImageDataset, load_captioned_images
from safetext.lora.objectives import get_objective
from safetext.lora.targets import DEFAULT_PROJECTIONS, LoraSelector, LoraTargets, resolve_lora_targets

logger = logging.getLogger("safetext.lora")

SUMMARY_FILE = "lora_targets.json"
#: Fields that may change between a run and its resumption (everything else must match).
_RESUMABLE_CHANGES = ("steps", "checkpoint_every")


@dataclass(frozen=True)
class LoraTrainConfig:
    """Hyper-parameters of a LoRA run.

    Args:
        rank: LoRA rank (the paper: 64).
        alpha: ``lora_alpha``; the update is scaled by ``alpha / rank``.
        steps: optimizer steps (each of ``grad_accum`` micro-batches of ``batch_size``).
        lr: AdamW learning rate (constant after ``lr_warmup_steps`` of linear warm-up).
        lr_warmup_steps: linear warm-up steps.
        batch_size: images per micro-batch.
        grad_accum: micro-batches accumulated per optimizer step.
        weight_decay: AdamW weight decay (on the LoRA parameters only).
        max_grad_norm: gradient clipping norm (0 disables clipping).
        caption_dropout: probability of training a sample on the empty prompt (keeps CFG's unconditional branch).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (0: only at the end).
        seed: seed of the LoRA initialisation and of every random draw of the run.
        projections: the Linears adapted under each selected attention module.
        init_lora_weights: peft initialisation (``"gaussian"``, ``True`` or ``False``).
        adapter_name: name of the adapter on the denoiser.
        size: ``(height, width)`` of the training images; ``None``: the denoiser's native size.
    """

    rank: int = 64
    alpha: float = 64.0
    steps: int = 500
    lr: float = 1e-4
    lr_warmup_steps: int = 0
    batch_size: int = 4
    grad_accum: int = 1
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    caption_dropout: float = 0.0
    checkpoint_every: int = 100
    seed: int = 0
    projections: tuple[str, ...] = DEFAULT_PROJECTIONS
    init_lora_weights: bool | str = "gaussian"
    adapter_name: str = DEFAULT_ADAPTER_NAME
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        checks = {
            "rank": self.rank >= 1,
            "alpha": self.alpha > 0,
            "steps": self.steps >= 0,
            "lr": self.lr > 0,
            "lr_warmup_steps": self.lr_warmup_steps >= 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "weight_decay": self.weight_decay >= 0,
            "max_grad_norm": self.max_grad_norm >= 0,
            "caption_dropout": 0 <= self.caption_dropout < 1,
            "checkpoint_every": self.checkpoint_every >= 0,
            "init_lora_weights": self.init_lora_weights in INIT_CHOICES,
            "size": self.size is None or (len(self.size) == 2 and min(self.size) > 0),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid LoRA training config: {values} (see LoraTrainConfig's docstring for valid ranges)")
        object.__setattr__(self, "projections", tuple(self.projections))
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if step < self.lr_warmup_steps:
            return self.lr * (step + 1) / self.lr_warmup_steps
        return self.lr


@dataclass(frozen=True)
class LoraTrainResult:
    """What a run did.

    Attributes:
        targets: the resolved selection (attention modules and projections).
        targeted_module_names: modules holding the adapter's ``lora_A``, read back from the model.
        adapter_name: the adapter's name on ``pipe.unet``.
        lora_parameters: trainable LoRA parameters.
        denoiser_parameters: parameters of the denoiser without the adapter.
        steps: optimizer steps completed.
        resumed_from: the checkpoint step the run continued from, or ``None``.
        losses: mean loss of each optimizer step, from step 1 (including steps before a resume).
        weights_path: the saved ``pytorch_lora_weights.safetensors`` (``None`` without ``out_dir``).
    """

    targets: LoraTargets
    targeted_module_names: tuple[str, ...]
    adapter_name: str
    lora_parameters: int
    denoiser_parameters: int
    steps: int
    resumed_from: int | None
    losses: tuple[float, ...] = field(repr=False)
    weights_path: Path | None


def _fingerprint(config: LoraTrainConfig, targets: LoraTargets, dataset: CaptionedImageDataset) -> dict[str, Any]:
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in _RESUMABLE_CHANGES}
    settings["projections"] = list(config.projections)
    settings["size"] = list(dataset.size)
    settings["target_modules"] = list(targets.module_names)
    settings["dataset_records"] = len(dataset)
    return settings


class _EpochOrder:
    """Sample order: a fresh seeded permutation of the dataset per epoch, addressable by position."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self._perms = size, seed, {}

    def indices(self, start: int, count: int) -> list[int]:
        out = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, self.size)
            if epoch not in self._perms:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perms[epoch] = torch.randperm(self.size, generator=generator).tolist()
            out.append(self._perms[epoch][offset])
        return out


def _micro_generator(seed: int, micro_step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 2_654_435_761 + micro_step * 97_531 + 1) % (2**63))


def _training_scheduler(pipe: Any) -> Any:
    from diffusers import DDPMScheduler

    config = pipe.scheduler.config
    if "beta_schedule" not in config and "trained_betas" not in config:
        raise UnsupportedArchitectureError(
            f"{type(pipe.scheduler).__name__} has no beta schedule (flow matching?); LoRA training needs a DDPM-family scheduler"
        )
    scheduler = DDPMScheduler.from_config(config)
    if scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise UnsupportedArchitectureError(
            f"scheduler prediction_type {scheduler.config.prediction_type!r} is not supported; use 'epsilon' or 'v_prediction'"
        )
    return scheduler


def train_lora(
    pipe: Any,
    data: str | Path | CaptionedImageDataset,
    selector: LoraSelector,
    config: LoraTrainConfig = LoraTrainConfig(),
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> LoraTrainResult:
    """Train a LoRA adapter on the selected attention layers of ``pipe.unet``, in place.

    On success ``pipe.unet`` keeps the trained adapter (active; its train/eval mode and the
    ``requires_grad`` flags of its own weights as they were) and ``out_dir`` holds the weights. On any
    failure the adapter is removed and ``pipe`` is as it was (a checkpoint already written stays, so
    ``resume=True`` continues from it).

    Args:
        pipe: a supported pipeline (see :mod:`safetext.lora.objectives`) whose denoiser has no adapter yet.
        data: a dataset folder / JSONL file (:func:`~safetext.lora.data.load_captioned_images`) or a dataset.
        selector: ``"all-cross-attention"``, a ``LayerMap``, or a list of attention-module names.
        config: hyper-parameters.
        out_dir: run directory (checkpoint, log, weights); ``None`` trains in memory only.
        resume: continue from ``out_dir/checkpoint.pt`` (its settings must match, ``steps`` may grow).
        progress: show a tqdm progress bar.

    Raises:
        UnsupportedArchitectureError: the pipeline or its scheduler is not supported.
        LayerMapError: the selector matches no attention module.
        ValueError: bad data, a checkpoint in ``out_dir`` without ``resume``, or changed settings on resume.
    """
    objective = get_objective(pipe)
    if not hasattr(type(pipe), "save_lora_weights"):
        raise UnsupportedArchitectureError(f"{type(pipe).__name__} has no diffusers LoRA loader mixin (save_lora_weights)")
    denoiser = pipe.unet
    if existing_adapters(denoiser):
        raise PatchError(
            f"{type(denoiser).__name__} already carries adapters {existing_adapters(denoiser)}; fuse and unload them "
            "(pipe.fuse_lora(); pipe.unload_lora_weights()) or train on a fresh pipeline"
        )
    targets = resolve_lora_targets(denoiser, selector, config.projections)
    size = config.size or tuple(objective.default_size(pipe))
    dataset = data if isinstance(data, CaptionedImageDataset) else load_captioned_images(data, size)
    out = Path(out_dir) if out_dir is not None else None
    fingerprint = _fingerprint(config, targets, dataset)
    state = read_checkpoint(out, resume, fingerprint)
    scheduler = _training_scheduler(pipe)
    if denoiser.dtype != torch.float32:
        raise ValueError(
            f"LoRA training runs in float32, but {type(denoiser).__name__} is {denoiser.dtype}; load the pipeline "
            "with torch_dtype=torch.float32 (the default of load_glyph_pipeline)"
        )

    base_flags = [(p, p.requires_grad) for p in denoiser.parameters()]
    denoiser_parameters = sum(p.numel() for p, _ in base_flags)
    was_training = denoiser.training
    touched = inject_lora(denoiser, targets, config.rank, config.alpha, config.init_lora_weights, config.adapter_name, config.seed)
    try:
        steps_done, losses = _run(pipe, objective, scheduler, dataset, config, out, state, fingerprint, progress)
    except BaseException:
        remove_lora(denoiser, config.adapter_name)
        raise
    finally:
        denoiser.train(was_training)
        for param, flag in base_flags:
            param.requires_grad_(flag)

    params = lora_parameters(denoiser, config.adapter_name)
    lora_count = sum(p.numel() for p in params.values())
    weights = None
    if out is not None:
        weights = save_lora_weights(pipe, out, config.adapter_name)
        summary = {
            **targets.to_dict(),
            "targeted_module_names": list(touched),
            "rank": config.rank,
            "alpha": config.alpha,
            "lora_parameters": lora_count,
            "denoiser_parameters": denoiser_parameters,
            "steps": steps_done,
            "final_loss": losses[-1] if losses else None,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return LoraTrainResult(
        targets=targets,
        targeted_module_names=touched,
        adapter_name=config.adapter_name,
        lora_parameters=lora_count,
        denoiser_parameters=denoiser_parameters,
        steps=steps_done,
        resumed_from=state["step"] if state else None,
        losses=tuple(losses),
        weights_path=weights,
    )


def _run(pipe, objective, scheduler, dataset, config, out, state, fingerprint, progress) -> tuple[int, list[float]]:
    """The optimisation loop; returns (steps completed, per-step losses)."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    denoiser = pipe.unet
    params = lora_parameters(denoiser, config.adapter_name)
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=config.weight_decay)
    step, losses = 0, []
    if state is not None:
        result = set_peft_model_state_dict(denoiser, state["lora"], adapter_name=config.adapter_name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if unexpected:
            raise ValueError(f"checkpoint LoRA keys do not fit the model: {unexpected[:4]}")
        optimizer.load_state_dict(state["optimizer"])
        step, losses = int(state["step"]), list(state["losses"])
        logger.info("resumed LoRA training at step %d", step)

    def checkpoint() -> None:
        lora = get_peft_model_state_dict(denoiser, adapter_name=config.adapter_name)
        write_checkpoint(out, step, lora, optimizer.state_dict(), losses, fingerprint)

    log = open_log(out, state["step"] if state else None) if out is not None else None
    device = next(denoiser.parameters()).device
    order = _EpochOrder(len(dataset), config.seed)
    prediction_type = scheduler.config.prediction_type
    denoiser.train()
    bar = tqdm(total=config.steps, initial=min(step, config.steps), disable=not progress, desc="train-lora", unit="step")
    try:
        while step < config.steps:
            lr = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for k in range(config.grad_accum):
                micro = step * config.grad_accum + k
                generator = _micro_generator(config.seed, micro)
                pixels, captions = dataset.batch(order.indices(micro * config.batch_size, config.batch_size))
                if config.caption_dropout > 0:
                    drop = torch.rand(len(captions), generator=generator) < config.caption_dropout
                    captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
                with torch.no_grad():
                    conditioning = objective.encode_prompts(pipe, captions)
                    clean = objective.encode_images(pipe, pixels, generator)
                noise = torch.randn(clean.shape, generator=generator).to(device=device, dtype=clean.dtype)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), generator=generator).to(device)
                noisy = scheduler.add_noise(clean, noise, timesteps)
                target = noise if prediction_type == "epsilon" else scheduler.get_velocity(clean, noise, timesteps)
                prediction = objective.predict(pipe, noisy, timesteps, conditioning)
                loss = F.mse_loss(prediction.float(), target.float())
                (loss / config.grad_accum).backward()
                step_loss += loss.item() / config.grad_accum
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
            optimizer.step()
            step += 1
            losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if log is not None:
                log.write(json.dumps({"step": step, "loss": step_loss, "lr": lr}) + "\n")
                log.flush()
            if out is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint()
        if out is not None:
            checkpoint()
    finally:
        bar.close()
        if log is not None:
            log.close()
    return step, losses
