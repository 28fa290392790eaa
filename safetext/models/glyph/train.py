"""Training loop of the glyph model: resumable, logged, with sample grids and fp16 EMA exports.

Run through the CLI (``safetext train-glyph --config configs/glyph.yaml --out runs/glyph``). A run
writes, under ``out``:
    ckpt.pt            full state (model, EMA, optimizer, step), atomically replaced every N steps
    train_log.jsonl    one JSON line per logged step (loss terms, lr, seconds per step)
    samples/step_*.png sample grids from the EMA weights
    export/            the EMA weights as a diffusers pipeline (fp16 safetensors), ready to ship
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from safetext.models.glyph.build import GlyphModelConfig, build_glyph_pipeline, load_glyph_pipeline, save_glyph_pipeline
from safetext.models.glyph.data import COLORS, GlyphDataConfig, SignSampler, aux_targets, make_prompt
from safetext.models.glyph.pipeline import SPACE_TO_DEPTH, GlyphPipeline, denoiser_input, denoiser_output

logger = logging.getLogger("safetext.models.glyph.train")


@dataclass
class GlyphTrainConfig:
    """Hyper-parameters of a glyph training run (all overridable from a YAML file)."""

    seed: int = 0
    steps: int = 40000
    batch_size: int = 32
    lr: float = 5e-4
    lr_final: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    aux_weight: float = 0.1
    cond_dropout: float = 0.1
    special_fraction: float = 0.4
    font_size: int = 18
    jitter_x: int = 3
    jitter_y: int = 2
    log_every: int = 25
    checkpoint_every: int = 250
    export_every: int = 1000
    sample_every: int = 1000
    sample_steps: int = 20
    init_from: str | None = None
    model: GlyphModelConfig = field(default_factory=GlyphModelConfig)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "GlyphTrainConfig":
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
        model = raw.pop("model", {}) or {}
        if "block_out_channels" in model:
            model["block_out_channels"] = tuple(model["block_out_channels"])
        return cls(**raw, model=GlyphModelConfig(**model))

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * progress))


class AuxHead(torch.nn.Module):
    """Training-only head on the text encoder: word-byte mask, letter offset, colour (not shipped)."""

    def __init__(self, width: int, n_colors: int):
        super().__init__()
        self.proj = torch.nn.Linear(width, 2 + n_colors)

    def loss(self, hidden: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.proj(hidden.float())
        word_logit, offset, color_logits = out[..., 0], out[..., 1], out[..., 2:]
        is_word = targets["is_word"]
        l_word = F.binary_cross_entropy_with_logits(word_logit, is_word)
        l_off = ((offset - targets["offset"]) ** 2 * is_word).sum() / is_word.sum().clamp(min=1)
        l_col = F.cross_entropy(color_logits.reshape(-1, color_logits.shape[-1]), targets["color"].reshape(-1), ignore_index=-100)
        return l_word + l_off + l_col


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm.detach(), 1.0 - decay)


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def sample_grid(pipe: GlyphPipeline, words: list[str], steps: int, seed: int = 0) -> "Image.Image":  # noqa: F821
    """One image per word (colour cycling through the palette), tiled in a 4-column grid."""
    from PIL import Image

    prompts = [make_prompt(w, COLORS[i % len(COLORS)], 0) for i, w in enumerate(words)]
    gen = torch.Generator().manual_seed(seed)
    images = pipe(prompts, num_inference_steps=steps, generator=gen, output_type="pil").images
    w, h = images[0].size
    cols = 4
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * w, rows * h), (128, 128, 128))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def train_glyph(config: GlyphTrainConfig, out_dir: str | Path, max_minutes: float | None = None) -> Path:
    """Train (or resume) a glyph model; returns the export directory of the EMA weights.

    Args:
        config: hyper-parameters.
        out_dir: run directory; an existing ``ckpt.pt`` there is resumed.
        max_minutes: stop (after checkpointing and exporting) once this much wall time has passed.
    """
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False), encoding="utf-8")
    m = config.model
    scene = bool(m.sign_height and m.sign_width)
    sign_hw = (m.sign_height, m.sign_width) if scene else (m.height, m.width)
    data_cfg = GlyphDataConfig(
        sign_hw[0], sign_hw[1], config.font_size, config.jitter_x, config.jitter_y,
        canvas_height=m.height if scene else None, canvas_width=m.width if scene else None,
    )
    sampler = SignSampler(data_cfg, seed=config.seed, special_fraction=config.special_fraction)
    sign_size = list(sign_hw) if scene else None

    if config.init_from:
        # e.g. a bare-sign model fine-tuned into scenes: the convolutional UNet takes any size, and the
        # sign-relative coordinates keep the letters where the model learnt to put them
        pipe = load_glyph_pipeline(config.init_from)
        pipe.unet.register_to_config(sample_size=[m.height // SPACE_TO_DEPTH, m.width // SPACE_TO_DEPTH])
    else:
        pipe = build_glyph_pipeline(m, seed=config.seed)
    unet, text_encoder, tokenizer, scheduler = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    aux = AuxHead(config.model.text_width, len(COLORS))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    params = list(unet.parameters()) + list(text_encoder.parameters()) + list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step = 0
    ckpt_path = out / "ckpt.pt"
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        aux.load_state_dict(state["aux"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        logger.info("resumed from %s at step %d", ckpt_path, step)

    def checkpoint() -> None:
        _atomic_save(
            {
                "unet": unet.state_dict(),
                "text_encoder": text_encoder.state_dict(),
                "aux": aux.state_dict(),
                "ema_unet": ema_unet.state_dict(),
                "ema_text": ema_text.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
            },
            ckpt_path,
        )

    def ema_pipeline() -> GlyphPipeline:
        p = GlyphPipeline(
            unet=ema_unet, text_encoder=ema_text, tokenizer=tokenizer, scheduler=copy.deepcopy(scheduler), sign_size=sign_size
        )
        p.set_progress_bar_config(disable=True)
        return p

    def export_and_sample() -> None:
        save_glyph_pipeline(ema_pipeline(), out / "export", fp16=True)
        words = ["hello", "world", "garden", "smile", "fuck", "shit", "peace", "rainbow"]
        sample_grid(ema_pipeline(), words, config.sample_steps).save(out / "samples" / f"step_{step:06d}.png")

    log_f = (out / "train_log.jsonl").open("a", encoding="utf-8")
    start_time = time.time()
    pad_id = tokenizer.pad_token_id
    alphas = scheduler.alphas_cumprod
    unet.train()
    text_encoder.train()
    t_last = time.time()
    try:
        while step < config.steps:
            images, samples = sampler.batch(step, config.batch_size)
            rng = random.Random(f"drop:{config.seed}:{step}")
            keep = [rng.random() >= config.cond_dropout for _ in samples]
            prompts = [s.prompt if k else "" for s, k in zip(samples, keep)]
            tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
            hidden = text_encoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
            kept = torch.tensor(keep)
            aux_loss = torch.zeros(())
            if kept.any():
                kept_samples = [s for s, k in zip(samples, keep) if k]
                targets = aux_targets(kept_samples, tokens.input_ids[kept], pad_id)
                aux_loss = aux.loss(hidden[kept], targets)

            x0 = images * 2 - 1
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g)
            a = alphas[t].sqrt().view(-1, 1, 1, 1)
            s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
            x_t = a * x0 + s * noise
            v_target = a * noise - s * x0
            pred = denoiser_output(unet(denoiser_input(x_t, sign_size), t, encoder_hidden_states=hidden).sample)
            v_loss = F.mse_loss(pred, v_target)
            loss = v_loss + config.aux_weight * aux_loss
            loss_value = loss.detach()

            lr = config.lr_at(step)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            _ema_update(ema_unet, unet, config.ema_decay)
            _ema_update(ema_text, text_encoder, config.ema_decay)
            step += 1

            if step % config.log_every == 0:
                now = time.time()
                rec = {"step": step, "loss": loss_value.item(), "v_loss": v_loss.item(), "aux_loss": float(aux_loss.detach()), "lr": lr, "sec_per_step": (now - t_last) / config.log_every, "elapsed_min": (now - start_time) / 60}
                t_last = now
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                logger.info("step %d loss %.4f v %.4f aux %.4f", step, rec["loss"], rec["v_loss"], rec["aux_loss"])
            if step % config.checkpoint_every == 0:
                checkpoint()
            if step % config.export_every == 0 or step % config.sample_every == 0:
                export_and_sample()
            if max_minutes is not None and time.time() - start_time > max_minutes * 60:
                break
    finally:
        log_f.close()
    checkpoint()
    export_and_sample()
    return out / "export"
