"""Guarded/raw cost on the published architectures, built at real size from their configs, projected to their defaults.

The tiny-pipeline table (``overhead.py``) times models whose whole run costs less than one real step, so its
ratios are dominated by fixed costs. Here every denoiser is built at its published size from
``tests/data/hub_configs/`` (random weights, bf16, CPU), with its text encoders at their real size where
they fit this machine's memory, and run at a reduced resolution and step count. Each call is split into

* per-call fixed cost: the policy scan, text encoding (the raw prompt; guarded flagged also records the
  sanitized prompt) and the pipeline's own setup. The calls return latents: the VAE decode, the same for a
  raw and a guarded call, is left out of both, which makes every ratio here an upper bound;
* per-step cost: the denoiser calls (guarded flagged: with the patch's hooks and, on SD3/Flux, extra rows),

for the raw pipeline and the guarded one (clean and flagged prompt, with the layer map the generator picks:
the shipped preset where one matches, else the all-layer fallback). Times are CPU seconds of the calling
thread with one torch thread (a machine shared with other jobs disturbs them far less than wall time).
The guarded/raw ratio and the added peak memory are projected to each model's default schedule (steps, CFG,
resolution):

    raw       = fixed + 22/2 x (T5 stand-in time) + steps x step x FLOP ratio (default vs measured
                resolution, the denoiser counted on the meta device)
    clean     = raw + the guard's own work (scan, patch-point check)
    flagged   = raw + own work + the sanitized prompt's recording (its T5 layers completed the same way)
                + patched steps x (hook bodies + step x FLOP ratio x (patched step / raw step - 1))

The guard's additions are measured directly (CPU time of the scan, of the recording, of the hook bodies),
so the noise of two separate denoising loops does not enter the projection; the extra-row cost of SD3 and
Flux is the ratio of the fastest patched and raw steps of the same rounds. The measured whole-call ratios
are shown beside the projection. Added peak memory is the VmHWM (peak resident set) difference between the
guarded flagged and the raw flagged call; its projection scales it (extra rows) with the denoiser's token count
(activations grow with the tokens, weights do not) on top of the published model's bf16 weights.

Stand-ins (documented in the results): the T5-XXL encoder (4.7 B parameters, 9.5 GB in bf16) does not fit
beside SD3's, PixArt's or IF's denoiser in the memory this machine lends one job, so those models get a T5
of the real width (d_model 4096, 64 heads, d_ff 10240) with 2 of its 24 layers; its measured per-layer time
x 24 replaces it in the projected fixed cost. Flux schnell (11.9 B parameters, 24 GB in bf16) does not fit:
it runs 2 of its 19 double-stream and 4 of its 38 single-stream blocks at real width, and the step time is
projected from the measured per-block times. Tokenizers are the test suite's small offline ones; prompts are
padded to the real lengths (CLIP 77, T5 ``max_sequence_length``), so the encoders see real sequence lengths.

The SD3 medium row also runs the flagged prompt with the early exit turned off (``gen.patch.early_exit``) in
the same rounds: the measured drop of the flagged ratio is the early exit's gain on the real-size model.

Compiled rows (``--compiled MODE``, :func:`measure_compiled`): the same model compiled with inductor, whole
(``torch.compile``), regionally (diffusers' ``compile_repeated_blocks``) or block by block (``per-block``: every
transformer block compiled in place, the loop over them eager), against the same pipeline compiled the same way
without safetext (its own denoiser module on the same weights). The projection is the one above with the
measured guarded/raw step ratio (every compiled step runs the patch points), an A/A control projected alike,
the graphs compiled over alternating clean/flagged calls after warm-up (0 = no recompilation), and the compiled
guarded flagged latents against the eager guarded ones beside the compiler's own rounding. Targets: SD1.5/SDXL
flagged <= 1.05x compiled raw; SD3/Flux (the target rows run through the blocks up to the mapped layer, on the
compiled path as on the eager one) no more than 0.05 above the eager row's guarded/raw ratio.

    nice -n 10 python benchmarks/real_scale.py --model sd3          # one model per process (memory)
    nice -n 10 python benchmarks/real_scale.py --model sd15 --compiled torch.compile --rounds 3
    python benchmarks/real_scale.py --report                         # real_scale.md / .json from the parts

Targets (judged on the projections): clean <= 1.005x everywhere; flagged <= 1.02x for SD1.5, SDXL, PixArt, IF
with their maps; SD3 medium with block 10 <= 1.25x; added peak memory <= 5% of the raw run.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import itertools
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    IFPipeline,
    PixArtAlphaPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel  # noqa: E402

from safetext.generator import SafeTextGenerator  # noqa: E402
from safetext.patching import start_step_for  # noqa: E402
from safetext.patching.inspection import denoiser_class_for  # noqa: E402
from safetext.patching import kv_patch  # noqa: E402
from safetext.patching.session import PatchSession  # noqa: E402
from safetext.policy import load_policy  # noqa: E402
from tests.tiny_tokenizers import build_clip_tokenizer, build_t5_tokenizer  # noqa: E402

CONFIGS = ROOT / "tests" / "data" / "hub_configs"
RESULTS = ROOT / "benchmarks" / "results"
PARTS = RESULTS / "real_scale"
CLEAN_PROMPT = 'A red sign that says "hello".'
FLAGGED_PROMPT = 'A red sign that says "shit".'
T5_LAYERS, T5_STAND_IN_LAYERS = 24, 2
FLUX_BLOCKS, FLUX_STAND_IN_BLOCKS = (19, 38), (2, 4)
TARGETS = {"clean": 1.005, "flagged_cross": 1.02, "flagged_sd3": 1.25, "memory": 0.05, "early_exit_drop": 0.15}
DTYPE = torch.bfloat16
# CPU time of the calling thread, with one torch thread: every op runs on it, and a machine shared with other
# jobs disturbs it far less than wall-clock time (which is recorded too, as ``wall_clock``)
clock = time.thread_time


# ----------------------------------------------------------------------------------------------------
# Real-size components (random weights)
# ----------------------------------------------------------------------------------------------------
def clip_l(tokenizer, projection: bool = False):
    """CLIP ViT-L/14 text encoder (SD1.5, SDXL/SD3 first encoder, Flux): 12 layers, width 768."""
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def clip_bigg(tokenizer):
    """OpenCLIP bigG/14 text encoder (SDXL, SD3 second encoder): 32 layers, width 1280, projection 1280."""
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config)


def t5_xxl_stand_in(tokenizer):
    """T5 v1.1 XXL encoder at real width with 2 of its 24 layers (the full encoder does not fit beside a denoiser)."""
    config = T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=T5_STAND_IN_LAYERS, num_heads=64,
        feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def vae(latent_channels: int, **config: Any) -> AutoencoderKL:
    """The SD/SDXL (4 latent channels) or SD3/Flux (16) autoencoder: 4 levels 128-512, scale factor 8."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=latent_channels, **config,
    )


def hub_config(folder: str, **overrides: Any) -> dict[str, Any]:
    return {**json.loads((CONFIGS / folder / "config.json").read_text()), **overrides}


def denoiser(folder: str, device: str = "cpu", **overrides: Any) -> torch.nn.Module:
    config = hub_config(folder, **overrides)
    with torch.device(device):
        return denoiser_class_for(config, folder).from_config(config)


@dataclass
class Spec:
    """One model: how to build it, how to call it measured, and its default schedule."""

    name: str
    label: str
    folder: str
    build: Callable[[], Any]
    measured: dict[str, Any]
    default_steps: int
    default_guidance: float
    default_resolution: int
    cfg: bool
    stand_ins: list[str] = field(default_factory=list)
    flux_blocks: tuple[int, int] | None = None


def build_sd15():
    tok = build_clip_tokenizer()
    return StableDiffusionPipeline(
        vae=vae(4, scaling_factor=0.18215), text_encoder=clip_l(tok), tokenizer=tok, unet=denoiser("sd-1.5"),
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_sdxl():
    tok, tok2 = build_clip_tokenizer(), build_clip_tokenizer()
    return StableDiffusionXLPipeline(
        vae=vae(4, scaling_factor=0.13025), text_encoder=clip_l(tok), text_encoder_2=clip_bigg(tok2), tokenizer=tok,
        tokenizer_2=tok2, unet=denoiser("sdxl-base-1.0"),
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )


def build_sd3():
    tok, tok2, tok3 = build_clip_tokenizer(), build_clip_tokenizer(), build_t5_tokenizer()
    return StableDiffusion3Pipeline(
        transformer=denoiser("sd3-medium"), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae(16, scaling_factor=1.5305, shift_factor=0.0609), text_encoder=clip_l(tok, projection=True),
        tokenizer=tok, text_encoder_2=clip_bigg(tok2), tokenizer_2=tok2, text_encoder_3=t5_xxl_stand_in(tok3),
        tokenizer_3=tok3,
    )


def build_pixart():
    tok = build_t5_tokenizer()
    return PixArtAlphaPipeline(
        tokenizer=tok, text_encoder=t5_xxl_stand_in(tok), vae=vae(4, scaling_factor=0.18215),
        transformer=denoiser("pixart-alpha-xl-2-1024-ms"), scheduler=DPMSolverMultistepScheduler(),
    )


def build_if():
    tok = build_t5_tokenizer()
    return IFPipeline(
        tokenizer=tok, text_encoder=t5_xxl_stand_in(tok), unet=denoiser("if-i-xl-v1.0"),
        scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                                dynamic_thresholding_ratio=0.95, sample_max_value=1.5),
        safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False,
    )


def build_flux():
    tok, tok2 = build_clip_tokenizer(), build_t5_tokenizer()
    double, single = FLUX_STAND_IN_BLOCKS
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae(16, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=clip_l(tok), tokenizer=tok, text_encoder_2=t5_xxl_stand_in(tok2), tokenizer_2=tok2,
        transformer=denoiser("flux.1-schnell", num_layers=double, num_single_layers=single),
    )


T5_NOTE = "T5-XXL encoder: real width, 2 of 24 layers (projected x24 per layer)"
SPECS = {
    "sd15": Spec("sd15", "SD 1.5", "sd-1.5", build_sd15, {"guidance_scale": 7.5}, 50, 7.5, 512, True),
    "sdxl": Spec("sdxl", "SDXL base 1.0", "sdxl-base-1.0", build_sdxl, {"guidance_scale": 5.0}, 50, 5.0, 1024, True),
    "sd3": Spec("sd3", "SD3 medium", "sd3-medium", build_sd3, {"guidance_scale": 7.0, "max_sequence_length": 256},
                28, 7.0, 1024, True, [T5_NOTE]),
    "pixart": Spec("pixart", "PixArt-alpha XL 1024", "pixart-alpha-xl-2-1024-ms", build_pixart,
                   {"guidance_scale": 4.5, "max_sequence_length": 120, "clean_caption": False,
                    "use_resolution_binning": False}, 20, 4.5, 1024, True, [T5_NOTE]),
    "if": Spec("if", "DeepFloyd IF-I-XL stage I", "if-i-xl-v1.0", build_if, {"guidance_scale": 7.0, "clean_caption": False},
               100, 7.0, 64, True, [T5_NOTE]),
    "flux": Spec("flux", "FLUX.1 schnell", "flux.1-schnell", build_flux,
                 {"guidance_scale": 0.0, "max_sequence_length": 256}, 4, 0.0, 1024, False,
                 [T5_NOTE, "transformer: 2 of 19 double-stream and 4 of 38 single-stream blocks (step projected per block)"],
                 FLUX_BLOCKS),
}
MEASURED_RESOLUTION = {"if": 32}
DEFAULT_RESOLUTION = 128
MEASURED_STEPS = 2


def materialize(build: Callable[[], Any]) -> Any:
    """Build a pipeline's modules in bf16 directly (no fp32 copy), eval mode, no grad."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            pipe = build()
    finally:
        torch.set_default_dtype(previous)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.to(DTYPE).eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------------
# Instrumentation
# ----------------------------------------------------------------------------------------------------
def peak_rss_reset() -> None:
    """Return freed heap to the system, then reset the peak resident set (VmHWM) so the next call's peak can be read."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


class Timers:
    """Wall time spent in modules (pre/post hooks): denoiser calls one by one, encoders and decoder summed."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.calls: dict[str, list[float]] = {}

    def attach(self, key: str, module: torch.nn.Module) -> None:
        def pre(*_: Any) -> None:
            self.starts[key] = clock()

        def post(*_: Any) -> None:
            self.calls.setdefault(key, []).append(clock() - self.starts.pop(key))

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def take(self) -> dict[str, list[float]]:
        calls, self.calls, self.starts = self.calls, {}, {}
        return calls


def attach_encoder_timers(timers: Timers, pipe: Any) -> None:
    """Time the pipeline's text encoders (``encode``) and, where one is T5, each of its layers (``t5_layer``)."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipe, name, None) is not None:
            timers.attach("encode", getattr(pipe, name))
    t5 = next((getattr(pipe, n) for n in ("text_encoder_3", "text_encoder_2", "text_encoder")
               if isinstance(getattr(pipe, n, None), T5EncoderModel)), None)
    if t5 is not None:
        for block in t5.encoder.block:
            timers.attach("t5_layer", block)


SPENT = {"hooks": 0.0, "recording": 0.0, "own": 0.0}


def timed(function: Callable, key: str) -> Callable:
    """``function`` adding its CPU time to ``SPENT[key]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[key] += clock() - started

    return wrapper


def instrument(gen: SafeTextGenerator) -> None:
    """Time the patch's hook bodies (its per-step work), the sanitized prompt's recording and the generator's own work.

    ``own``: the policy scan and the patch-point check of every call (all a clean guarded call adds to the
    untouched pipeline call).
    """
    for name in ("_on_denoiser_call", "_inject_projection", "_copy_projection", "_on_attention", "_on_layer",
                 "_drop_extra_rows", "_exit_rows", "_after_exit"):
        setattr(PatchSession, name, timed(getattr(PatchSession, name), "hooks"))
    kv_patch.record_denoiser_inputs = timed(kv_patch.record_denoiser_inputs, "recording")
    gen._decide = timed(gen._decide, "own")
    gen.patch.prepare = timed(gen.patch.prepare, "own")


# ----------------------------------------------------------------------------------------------------
# FLOP ratios on the meta device (default vs measured resolution)
# ----------------------------------------------------------------------------------------------------
def denoiser_inputs(spec: Spec, model: torch.nn.Module, resolution: int, batch: int) -> dict[str, Any]:
    """Denoiser call arguments at ``resolution`` on meta, with the real text lengths."""
    config = model.config
    meta = {"device": "meta", "dtype": DTYPE}
    if spec.name in ("sd15", "sdxl", "if"):
        side = resolution if spec.name == "if" else resolution // 8
        text = {"sd15": (77, 768), "sdxl": (77, 2048), "if": (77, 4096)}[spec.name]
        inputs = {"sample": torch.empty(batch, config.in_channels, side, side, **meta), "timestep": torch.ones(batch, device="meta"),
                  "encoder_hidden_states": torch.empty(batch, *text, **meta)}
        if spec.name == "sdxl":
            inputs["added_cond_kwargs"] = {"text_embeds": torch.empty(batch, 1280, **meta),
                                           "time_ids": torch.empty(batch, 6, **meta)}
        return inputs
    side = resolution // 8
    if spec.name == "pixart":
        return {"hidden_states": torch.empty(batch, 4, side, side, **meta), "timestep": torch.ones(batch, device="meta"),
                "encoder_hidden_states": torch.empty(batch, 120, 4096, **meta),
                "added_cond_kwargs": {"resolution": torch.empty(batch, 2, **meta), "aspect_ratio": torch.empty(batch, 1, **meta)}}
    if spec.name == "sd3":
        return {"hidden_states": torch.empty(batch, 16, side, side, **meta), "timestep": torch.ones(batch, device="meta"),
                "encoder_hidden_states": torch.empty(batch, 77 + 256, 4096, **meta),
                "pooled_projections": torch.empty(batch, 2048, **meta)}
    tokens = (side // 2) ** 2
    return {"hidden_states": torch.empty(batch, tokens, 64, **meta), "timestep": torch.ones(batch, device="meta"),
            "encoder_hidden_states": torch.empty(batch, 256, 4096, **meta), "pooled_projections": torch.empty(batch, 768, **meta),
            "img_ids": torch.zeros(tokens, 3, device="meta"), "txt_ids": torch.zeros(256, 3, device="meta")}


def flops(model: torch.nn.Module, inputs: dict[str, Any]) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops()


def flop_ratios(spec: Spec, measured_resolution: int) -> dict[str, float]:
    """Denoiser and VAE-decode FLOPs per call, default over measured resolution (full-depth Flux)."""
    batch = 2 if spec.cfg else 1
    previous = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        model = denoiser(spec.folder, device="meta")
        den = [flops(model, denoiser_inputs(spec, model, r, batch)) for r in (measured_resolution, spec.default_resolution)]
        ratios = {"denoiser_flops_measured": den[0], "denoiser_flops_default": den[1], "denoiser": den[1] / den[0]}
        if spec.name != "if":
            with torch.device("meta"):
                decoder = vae(16 if spec.name in ("sd3", "flux") else 4)
            dec = [flops(decoder.decoder, {"sample": torch.empty(1, decoder.config.latent_channels, r // 8, r // 8,
                                                            device="meta", dtype=DTYPE)})
                   for r in (measured_resolution, spec.default_resolution)]
            ratios["vae"] = dec[1] / dec[0]
        text = {"sd3": 77 + 256, "flux": 256}.get(spec.name, 0)  # joint attention carries the text tokens along
        side = {"if": 1, "sd3": 16, "flux": 16}.get(spec.name, 8)  # pixels per token (IF: pixel space, patch 2 / 2x2 packing)
        ratios["tokens"] = ((spec.default_resolution // side) ** 2 + text) / ((measured_resolution // side) ** 2 + text)
    finally:
        torch.set_default_dtype(previous)
    return ratios


# ----------------------------------------------------------------------------------------------------
# Measurement of one model
# ----------------------------------------------------------------------------------------------------
def measure(spec: Spec, rounds: int, steps: int, exit_only: bool = False) -> dict[str, Any]:
    resolution = MEASURED_RESOLUTION.get(spec.name, DEFAULT_RESOLUTION)
    # latents out: the VAE decode is the same for raw and guarded calls and is left out of both (conservative)
    output_type = "pt" if spec.name == "if" else "latent"
    kwargs = {**spec.measured, "num_inference_steps": steps, "height": resolution, "width": resolution, "output_type": output_type}
    built = clock()
    pipe = materialize(spec.build)
    build_seconds = clock() - built
    weights_gib = sum(p.numel() * p.element_size() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                      for p in c.parameters()) / 2**30
    gen = SafeTextGenerator(pipe, policy=load_policy("default"))
    den = gen.patch.denoiser
    timers = Timers()
    timers.attach("denoiser", den)
    attach_encoder_timers(timers, pipe)
    if getattr(pipe, "vae", None) is not None:
        timers.attach("decode", pipe.vae.decoder)
    if spec.flux_blocks:
        for block in den.transformer_blocks:
            timers.attach("double_block", block)
        for block in den.single_transformer_blocks:
            timers.attach("single_block", block)
    instrument(gen)

    variants = ["raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged"]
    if spec.name == "sd3":
        variants.append("guarded_flagged_no_exit")
    if exit_only:  # the early exit's gain alone: flagged with and without it against raw, in the same rounds
        variants = ["raw_flagged", "guarded_flagged", "guarded_flagged_no_exit"]

    def call(variant: str) -> dict[str, Any]:
        prompt = CLEAN_PROMPT if "clean" in variant else FLAGGED_PROMPT
        gen.patch.early_exit = not variant.endswith("no_exit")
        target = pipe if variant.startswith("raw") else gen
        generator = torch.Generator().manual_seed(0)
        SPENT.update(hooks=0.0, recording=0.0, own=0.0)
        gc.collect()
        peak_rss_reset()
        rss = status_kib("VmRSS")
        wall, real = clock(), time.perf_counter()
        output = target(prompt, generator=generator, **kwargs)
        wall, real = clock() - wall, time.perf_counter() - real
        record = {"wall": wall, "wall_clock": real, "peak_added_kib": status_kib("VmHWM") - rss,
                  "hook_seconds": SPENT["hooks"], "recording_cpu": SPENT["recording"], "own_cpu": SPENT["own"],
                  **timers.take(), "image": output.images}
        verdict = getattr(output, "verdict", None)
        if verdict is not None:
            details = verdict.details
            record["scan"] = details["timings"]["scan_seconds"]  # wall clock, as the verdict reports it
            record["action"] = verdict.action.value
            for key in ("layers", "start_step", "start_fraction", "early_exit", "layer_map", "layer_map_source", "identity_swap"):
                if key in details:
                    record[key] = details[key]
        return record

    # no separate warm-up: every time is the fastest of the rounds, so the first (cold) round never counts alone
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    checks = {"clean_identical": True, "flagged_changed": True, "exit_equal": True}
    for index in range(rounds):
        order = variants[index % len(variants):] + variants[: index % len(variants)]
        images = {}
        for variant in order:
            record = call(variant)
            images[variant] = record.pop("image")
            runs[variant].append(record)
            print(f"  {spec.name} round {index} {variant}: {record['wall']:.2f} s", flush=True)
        if "raw_clean" in images:
            checks["clean_identical"] &= torch.equal(images["raw_clean"], images["guarded_clean"])
        checks["flagged_changed"] &= not torch.equal(images["raw_flagged"], images["guarded_flagged"])
        if "guarded_flagged_no_exit" in images:
            difference = (images["guarded_flagged"].float() - images["guarded_flagged_no_exit"].float()).abs().max().item()
            checks["exit_max_abs_difference"] = max(checks.get("exit_max_abs_difference", 0.0), difference)
            checks["exit_equal"] &= difference == 0
    return {"spec": spec.name, "resolution": resolution, "steps": steps, "rounds": rounds, "weights_gib": weights_gib,
            "build_seconds": build_seconds, "flops": flop_ratios(spec, resolution), "runs": runs, "checks": checks,
            "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------------
# Compiled denoisers at real size
# ----------------------------------------------------------------------------------------------------
COMPILE_MODES = ("torch.compile", "compile_repeated_blocks", "per-block")
COMPILED_VARIANTS = ("raw_clean", "guarded_clean", "raw_flagged", "guarded_flagged", "raw_clean_control")
COMPILED_TARGET = 1.05  # UNet families: compiled guarded flagged / compiled raw
COMPILED_EXTRA_ROWS_MARGIN = 0.05  # SD3/Flux: compiled ratio no more than this above the eager guarded/raw ratio


def denoiser_attribute(pipe: Any) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def raw_twin(pipe: Any) -> Any:
    """The same pipeline with its own denoiser module sharing the weights (compiled raw: no safetext anywhere).

    The denoiser is deep-copied with its parameters and buffers in the copy's memo, so the copy is a separate
    module tree (its own classes, hooks and compiled code) on the same tensors: no second copy of the weights.
    """
    attribute = denoiser_attribute(pipe)
    module = getattr(pipe, attribute)
    memo = {id(tensor): tensor for tensor in itertools.chain(module.parameters(), module.buffers())}
    components = {**pipe.components, attribute: copy.deepcopy(module, memo), "scheduler": copy.deepcopy(pipe.scheduler)}
    twin = type(pipe)(**components)
    twin.set_progress_bar_config(disable=True)
    return twin


def compile_denoiser(pipe: Any, mode: str) -> None:
    """Compile the pipeline's denoiser (inductor): the whole module, diffusers' regional compile, or every block."""
    attribute = denoiser_attribute(pipe)
    module = getattr(pipe, attribute)
    if mode == "torch.compile":
        setattr(pipe, attribute, torch.compile(module))
    elif mode == "compile_repeated_blocks":
        module.compile_repeated_blocks()
    else:  # per-block: every transformer block compiled in place, the loop over them stays eager
        for name in ("transformer_blocks", "single_transformer_blocks"):
            for block in getattr(module, name, ()):
                block.compile()


def measure_compiled(spec: Spec, mode: str, rounds: int, steps: int, alternating: int) -> dict[str, Any]:
    """Compiled raw vs compiled guarded at real size: the eager rows' method plus recompilations and tolerance.

    Two pipelines share every component but the denoiser module (:func:`raw_twin`); both are compiled the
    same way. The eager guarded and raw flagged outputs are taken first (the reference for the compiled
    guarded output, and the compiler's own rounding). Warm-up: every variant once (each traces here); then
    ``alternating`` guarded calls alternating clean/flagged count the graphs dynamo compiles (0 = no
    recompilation); then ``rounds`` rounds of the variants (an A/A control: raw clean timed twice), in an
    order rotating round by round.
    """
    resolution = MEASURED_RESOLUTION.get(spec.name, DEFAULT_RESOLUTION)
    kwargs = {**spec.measured, "num_inference_steps": steps, "height": resolution, "width": resolution, "output_type": "latent"}
    pipe = materialize(spec.build)
    raw_pipe = raw_twin(pipe)
    weights_gib = sum(p.numel() * p.element_size() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                      for p in c.parameters()) / 2**30
    gen = SafeTextGenerator(pipe, policy=load_policy("default"))

    def run(target: Any, prompt: str) -> Any:
        return target(prompt, generator=torch.Generator().manual_seed(0), **kwargs)

    eager_flagged = run(gen, FLAGGED_PROMPT).images
    eager_raw_flagged = run(raw_pipe, FLAGGED_PROMPT).images
    torch._dynamo.reset()
    compile_denoiser(pipe, mode)
    compile_denoiser(raw_pipe, mode)
    timers = Timers()
    attach_encoder_timers(timers, pipe)
    gen.patch.prepare()  # the resident patch points first: their denoiser hooks run before the timer's
    for target in (pipe, raw_pipe):  # what the pipeline calls; its hooks run outside the compiled code
        timers.attach("denoiser", getattr(target, denoiser_attribute(target)))
    instrument(gen)

    def call(variant: str) -> dict[str, Any]:
        target = raw_pipe if variant.startswith("raw") else gen
        SPENT.update(hooks=0.0, recording=0.0, own=0.0)
        gc.collect()
        wall, real = clock(), time.perf_counter()
        output = run(target, CLEAN_PROMPT if "clean" in variant else FLAGGED_PROMPT)
        wall, real = clock() - wall, time.perf_counter() - real
        record = {"wall": wall, "wall_clock": real, "peak_added_kib": 0, "hook_seconds": SPENT["hooks"],
                  "recording_cpu": SPENT["recording"], "own_cpu": SPENT["own"], **timers.take(), "image": output.images}
        verdict = getattr(output, "verdict", None)
        if verdict is not None:
            record["action"] = verdict.action.value
            for key in ("layers", "start_step", "start_fraction", "early_exit", "layer_map", "layer_map_source",
                        "compile_mode", "acted_steps"):
                if key in verdict.details:
                    record[key] = verdict.details[key]
        return record

    graphs = lambda: int(counters["stats"]["unique_graphs"])  # noqa: E731
    started, before = time.perf_counter(), graphs()
    first = {variant: call(variant) for variant in COMPILED_VARIANTS}
    warmup_seconds, warm = time.perf_counter() - started, graphs()
    print(f"  {spec.name} {mode}: warm-up {warmup_seconds:.0f} s, {warm - before} graph(s)", flush=True)
    for index in range(alternating):
        call("guarded_clean" if index % 2 == 0 else "guarded_flagged")
    alternating_graphs = graphs() - warm
    print(f"  {spec.name} {mode}: {alternating_graphs} new graph(s) in {alternating} alternating calls", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in COMPILED_VARIANTS}
    timed_start = graphs()
    clean_identical = True
    for index in range(rounds):
        shift = index % len(COMPILED_VARIANTS)
        images = {}
        for variant in COMPILED_VARIANTS[shift:] + COMPILED_VARIANTS[:shift]:
            record = call(variant)
            images[variant] = record.pop("image")
            runs[variant].append(record)
            print(f"  {spec.name} {mode} round {index} {variant}: {record['wall']:.2f} s", flush=True)
        clean_identical &= torch.equal(images["raw_clean"], images["guarded_clean"])
    images = {variant: record.pop("image") for variant, record in first.items()}
    difference = lambda a, b: float((a.float() - b.float()).abs().max())  # noqa: E731
    checks = {
        "clean_identical": clean_identical and torch.equal(images["raw_clean"], images["guarded_clean"]),
        "clean_max_abs_difference": difference(images["guarded_clean"], images["raw_clean"]),
        "flagged_changed": not torch.equal(images["raw_flagged"], images["guarded_flagged"]),
        "flagged_vs_eager_guarded": difference(images["guarded_flagged"], eager_flagged),
        "compiler_rounding_raw": difference(images["raw_flagged"], eager_raw_flagged),
        "patch_effect_eager": difference(eager_flagged, eager_raw_flagged),
        "graphs_at_warmup": warm - before, "graphs_in_alternating_calls": alternating_graphs,
        "alternating_calls": alternating, "graphs_in_timed_rounds": graphs() - timed_start,
        "warmup_seconds": warmup_seconds, "flagged_action": first["guarded_flagged"].get("action"),
        "acted_steps_min": min(min(c.values()) for c in first["guarded_flagged"]["acted_steps"].values()),
    }
    return {"spec": spec.name, "compile": mode, "resolution": resolution, "steps": steps, "rounds": rounds,
            "weights_gib": weights_gib, "flops": flop_ratios(spec, resolution), "runs": runs, "checks": checks,
            "torch_threads": torch.get_num_threads()}


def project_compiled(spec: Spec, part: dict[str, Any], eager_flagged_ratio: float | None) -> dict[str, Any]:
    """The compiled rows projected to the default schedule: the eager rows' formula with measured compiled steps.

    On a compiled denoiser the guard also works inside every step, clean ones included (the operator's call on
    every text K/V projection, and for a flagged request the row replacement), so the guarded step is measured
    against the raw step of the same rounds (fastest of each):

    * cross-attention families (``inject``): that work is text-sized (the K/V of the 77 text tokens, a fixed
      number of operator calls), so the measured difference guarded - raw step (CPU s, at least 0) is added per
      step as it is, like the eager rows' hook time (not scaled with the image's FLOPs); the hook bodies, already
      inside the step, are added again (conservative);
    * ``extra_rows`` families (SD3, Flux): the target rows are image-sized, so the measured step ratio scales
      with the raw step, as in the eager rows.

    The A/A control (raw clean against itself), projected the same way, is the noise floor.
    """
    runs, guarded, start_measured, raw, raw_clean, clean, flagged = decomposed(part)
    control = decompose(runs["raw_clean_control"], part["steps"])
    ratios = part["flops"]
    steps = spec.default_steps
    start = start_step_for(float(guarded.get("start_fraction", 0.0)), steps)
    t5_scale = (T5_LAYERS - T5_STAND_IN_LAYERS) / T5_STAND_IN_LAYERS if any("T5" in s for s in spec.stand_ins) else 0.0
    extra_rows = guarded.get("early_exit") is not None

    def raw_time(d: dict[str, float]) -> float:
        return d["fixed"] + t5_scale * d["t5_total"] + steps * d["step_unpatched"] * ratios["denoiser"]

    def added(step: float, reference: float) -> float:
        """Per-step cost the guard adds at the default resolution, from a measured step and its raw reference."""
        if extra_rows:
            return reference * ratios["denoiser"] * (step / reference - 1)
        return max(0.0, step - reference)

    clean_step_ratio = clean["step_unpatched"] / raw_clean["step_unpatched"]
    control_step_ratio = control["step_unpatched"] / raw_clean["step_unpatched"]
    flagged_step_ratio = flagged["step_patched"] / raw["step_unpatched"]
    unpatched = flagged["step_unpatched"] if start_measured else raw["step_unpatched"] * clean_step_ratio
    clean_default = raw_time(raw_clean) + clean["own"] + steps * added(clean["step_unpatched"], raw_clean["step_unpatched"])
    control_default = raw_time(raw_clean) + steps * added(control["step_unpatched"], raw_clean["step_unpatched"])
    recording = flagged["recording"] + t5_scale * max(0.0, flagged["t5_total"] - raw["t5_total"])
    flagged_default = (raw_time(raw) + flagged["own"] + recording + start * added(unpatched, raw["step_unpatched"])
                       + (steps - start) * (added(flagged["step_patched"], raw["step_unpatched"]) + flagged["hook_per_step"]))
    flagged_ratio = flagged_default / raw_time(raw)
    if extra_rows:
        target = None if eager_flagged_ratio is None else eager_flagged_ratio + COMPILED_EXTRA_ROWS_MARGIN
    else:
        target = COMPILED_TARGET
    return {
        "model": spec.label, "compile": part["compile"], "layers": guarded.get("layers"),
        "layer_map_source": guarded.get("layer_map_source"), "early_exit": guarded.get("early_exit"),
        "compile_mode": guarded.get("compile_mode"), "checks": part["checks"],
        "measured": {
            "resolution": part["resolution"], "steps": part["steps"], "start_step": start_measured,
            "raw_seconds": raw["wall"], "raw_fixed": raw["fixed"], "raw_step": raw["step_unpatched"],
            "clean_ratio": clean["wall"] / raw_clean["wall"], "flagged_ratio": flagged["wall"] / raw["wall"],
            "control_ratio": control["wall"] / raw_clean["wall"], "clean_step_ratio": clean_step_ratio,
            "flagged_step_ratio": flagged_step_ratio, "control_step_ratio": control_step_ratio,
            "own": clean["own"], "recording": flagged["recording"], "hook_per_step": flagged["hook_per_step"],
        },
        "default": {"resolution": spec.default_resolution, "steps": steps, "start_step": start,
                    "denoiser_flop_ratio": ratios["denoiser"]},
        "projected": {"raw_seconds": raw_time(raw), "clean_ratio": clean_default / raw_time(raw_clean),
                      "flagged_ratio": flagged_ratio, "control_ratio": control_default / raw_time(raw_clean),
                      "eager_flagged_ratio": eager_flagged_ratio, "target": target},
    }


def compiled_report_lines(parts: dict[str, dict[str, Any]], eager_rows: dict[str, dict[str, Any]]) -> list[str]:
    """The "Compiled denoisers" section of real_scale.md."""
    rows = []
    for key, part in parts.items():
        spec = SPECS[part["spec"]]
        eager = eager_rows.get(spec.name)
        rows.append(project_compiled(spec, part, None if eager is None else eager["projected"]["flagged_ratio"]))
    if not rows:
        return []
    lines = [
        "",
        "## Compiled denoisers (inductor), projected to the default schedule",
        "",
        "Compiled raw = the same pipeline with its own copy of the denoiser module on the same weights, compiled "
        "the same way, no safetext. Ratios are compiled guarded / compiled raw, projected like the eager rows from the "
        "measured compiled steps (every compiled step, clean ones included, runs the patch points' operator): on "
        "SD1.5/SDXL the guarded step's measured excess over the raw step (text-sized work) is added per step, on "
        "SD3/Flux the measured step ratio scales with the raw step (image-sized target rows); "
        f"*A/A* is the raw clean call against itself, projected the same way (the noise floor). Targets: SD1.5/SDXL "
        f"(cross-attention) flagged <= {COMPILED_TARGET}x; SD3/Flux (the target rows run through the blocks up to the "
        f"mapped layer) flagged no more than {COMPILED_EXTRA_ROWS_MARGIN} above the eager guarded/raw ratio of the "
        "eager row above. *New graphs*: graphs dynamo compiled during the alternating clean/flagged guarded calls "
        "after warm-up / during the timed rounds (0 = no recompilation). Outputs are bf16 latents: *flagged vs "
        "eager guarded* is the max abs difference of the compiled and the eager guarded flagged latents, beside "
        "the compiler's own rounding (compiled raw vs eager raw) and the patch's effect (eager guarded vs raw).",
        "",
        "| model | compile | measured: res, steps (patched from) | projected: clean / flagged / A/A | target | "
        "measured step ratio clean / flagged / A/A | new graphs (calls) | warm-up s (graphs) | clean = compiled raw | "
        "flagged vs eager guarded / compiler rounding / patch effect | early exit | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m, p, c = row["measured"], row["projected"], row["checks"]
        target = p["target"]
        if target is None:
            mark = "no eager row to compare"
        else:
            mark = f"<= {target:.3f}x " + ("met" if p["flagged_ratio"] <= target else "**missed**")
            if p["eager_flagged_ratio"] is not None and row["early_exit"] is not None:
                mark += f" (eager {p['eager_flagged_ratio']:.3f}x + {COMPILED_EXTRA_ROWS_MARGIN})"
        clean = "bit-identical" if c["clean_identical"] else "**differs**"
        if not c["clean_identical"] and "clean_max_abs_difference" in c:
            clean += f" (max abs {c['clean_max_abs_difference']:.3g})"
        exit_info = row["early_exit"]
        exit_text = "n/a" if exit_info is None else (
            f"used, {exit_info.get('blocks_after')} blocks after" if exit_info.get("used") else f"not used: {exit_info.get('fallback', '')}")
        lines.append(
            f"| {row['model']} | {row['compile']} | {m['resolution']}px, {m['steps']} ({m['start_step']}) | "
            f"{p['clean_ratio']:.4f}x / {p['flagged_ratio']:.4f}x / {p['control_ratio']:.4f}x | {mark} | "
            f"{m['clean_step_ratio']:.3f} / {m['flagged_step_ratio']:.3f} / {m['control_step_ratio']:.3f} | "
            f"{c['graphs_in_alternating_calls']} ({c['alternating_calls']}) / {c['graphs_in_timed_rounds']} | "
            f"{c['warmup_seconds']:.0f} ({c['graphs_at_warmup']}) | "
            f"{clean} | {c['flagged_vs_eager_guarded']:.3g} / "
            f"{c['compiler_rounding_raw']:.3g} / {c['patch_effect_eager']:.3g} | {exit_text} | {c['flagged_action']} |"
        )
    lines += [
        "",
        "Measured whole-call ratios (fastest of the rounds, CPU s): "
        + "; ".join(
            f"{row['model']} {row['compile']}: raw {row['measured']['raw_seconds']:.2f} s "
            f"({row['measured']['raw_fixed']:.2f} + {row['measured']['steps']} x {row['measured']['raw_step']:.2f}), clean "
            f"{row['measured']['clean_ratio']:.3f}, flagged {row['measured']['flagged_ratio']:.3f}, A/A "
            f"{row['measured']['control_ratio']:.3f}, recording {row['measured']['recording']:.2f} s, hooks "
            f"{1000 * row['measured']['hook_per_step']:.1f} ms/step"
            for row in rows
        ) + ".",
    ]
    return lines


# ----------------------------------------------------------------------------------------------------
# Decomposition and projection
# ----------------------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def best(values: list[float]) -> float:
    """The fastest of repeated timings: what the code costs when the shared machine disturbs it least."""
    return min(values) if values else 0.0


def decompose(runs: list[dict[str, Any]], start: int) -> dict[str, float]:
    """Fastest fixed and per-step costs of one variant's runs (steps before ``start`` are unpatched)."""
    fixed, unpatched, patched, encode, decode, t5, hooks, double, single = ([] for _ in range(9))
    for run in runs:
        calls = run.get("denoiser", [])
        fixed.append(run["wall"] - sum(calls))
        unpatched.extend(calls[:start])
        patched.extend(calls[start:])
        encode.append(sum(run.get("encode", [])))
        decode.append(sum(run.get("decode", [])))
        t5.append(sum(run.get("t5_layer", [])))
        hooks.append(run["hook_seconds"] / max(1, len(calls[start:])))
        double.append(med(run.get("double_block", [])))
        single.append(med(run.get("single_block", [])))
    return {"fixed": best(fixed), "step_unpatched": best(unpatched), "step_patched": best(patched), "encode": best(encode),
            "decode": best(decode), "t5_total": best(t5), "hook_per_step": best(hooks), "double_block": best(double),
            "single_block": best(single), "wall": best([r["wall"] for r in runs]),
            "wall_clock": best([r["wall_clock"] for r in runs]),
            "peak_added_gib": med([r["peak_added_kib"] for r in runs]) / 2**20,
            "own": best([r.get("own_cpu", 0.0) for r in runs]), "recording": best([r.get("recording_cpu", 0.0) for r in runs]),
            "scan": best([r.get("scan", 0.0) for r in runs])}


def missing_weights_gib(spec: Spec) -> float:
    """bf16 weights the stand-ins leave out (22 T5-XXL layers; Flux's other blocks), counted on the meta device."""
    missing = 0
    if any("T5" in note for note in spec.stand_ins):
        with torch.device("meta"):
            tokenizer = build_t5_tokenizer()
            layer = t5_xxl_stand_in(tokenizer).encoder.block[1]
        missing += (T5_LAYERS - T5_STAND_IN_LAYERS) * sum(p.numel() for p in layer.parameters())
    if spec.flux_blocks:
        model = denoiser(spec.folder, device="meta", num_layers=1, num_single_layers=1)
        (double, single), (measured_double, measured_single) = spec.flux_blocks, FLUX_STAND_IN_BLOCKS
        missing += (double - measured_double) * sum(p.numel() for p in model.transformer_blocks[0].parameters())
        missing += (single - measured_single) * sum(p.numel() for p in model.single_transformer_blocks[0].parameters())
    return missing * 2 / 2**30


def decomposed(part: dict[str, Any]) -> tuple:
    """A measured part's runs, its first guarded flagged run and its first patched step, and the raw flagged, raw
    clean, guarded clean and guarded flagged calls split by :func:`decompose` into fixed and per-step time."""
    runs = part["runs"]
    guarded = runs["guarded_flagged"][0]
    start_measured = guarded.get("start_step", 0)
    return (runs, guarded, start_measured, decompose(runs["raw_flagged"], part["steps"]),
            decompose(runs["raw_clean"], part["steps"]), decompose(runs["guarded_clean"], part["steps"]),
            decompose(runs["guarded_flagged"], start_measured))


def project(spec: Spec, part: dict[str, Any]) -> dict[str, Any]:
    """Measured inputs and the guarded/raw ratios and added peak memory projected to the default schedule.

    Each guarded cost is the raw call plus what the guard measurably adds, so the noise of two separate
    denoising loops does not enter the projection: the clean call adds its own work (scan, patch-point
    check); the flagged call adds that, the sanitized prompt's recording (CPU time, its missing T5 layers
    added) and, per patched step, the hook bodies (``inject``) or the measured extra-row cost
    (``extra_rows``: patched step over raw step, fastest of the same rounds).
    """
    runs, guarded, start_measured, raw, raw_clean, clean, flagged = decomposed(part)
    ratios = part["flops"]
    steps, cfg_batch = spec.default_steps, 2 if spec.cfg else 1
    fraction = float(guarded.get("start_fraction", 0.0))
    start = start_step_for(fraction, steps)
    t5_scale = (T5_LAYERS - T5_STAND_IN_LAYERS) / T5_STAND_IN_LAYERS if any("T5" in s for s in spec.stand_ins) else 0.0
    extra_rows = guarded.get("early_exit") is not None

    def step_time(d: dict[str, float], key: str) -> float:
        value = d[key]
        if spec.flux_blocks:  # the measured blocks extended to the full depth
            (double, single), (measured_double, measured_single) = spec.flux_blocks, FLUX_STAND_IN_BLOCKS
            value += (double - measured_double) * d["double_block"] + (single - measured_single) * d["single_block"]
        return value * ratios["denoiser"]

    def raw_time(d: dict[str, float]) -> float:
        return d["fixed"] + t5_scale * d["t5_total"] + steps * step_time(d, "step_unpatched")

    def flagged_time(d: dict[str, float]) -> tuple[float, float]:
        """Projected guarded flagged time and the patched step's cost relative to the raw step."""
        relative = step_time(d, "step_patched") / step_time(raw, "step_unpatched") if extra_rows else 1.0
        per_step = step_time(raw, "step_unpatched") * (relative - 1) + d["hook_per_step"]
        recording = d["recording"] + t5_scale * max(0.0, d["t5_total"] - raw["t5_total"])
        return raw_time(raw) + d["own"] + recording + (steps - start) * per_step, relative

    raw_default = raw_time(raw)
    clean_default = raw_time(raw_clean) + clean["own"]
    flagged_default, relative = flagged_time(flagged)
    token_ratio = ratios["tokens"]
    weights_default = part["weights_gib"] + missing_weights_gib(spec)  # the published model's weights, in bf16
    raw_peak_default = weights_default + raw["peak_added_gib"] * token_ratio
    # extra rows add activations (they grow with the tokens); injected K/V add the target's K/V per mapped layer and
    # the recorded prompt inputs (rows x text tokens x width), which do not depend on the image size
    added_default = max(0.0, flagged["peak_added_gib"] - raw["peak_added_gib"]) * (token_ratio if extra_rows else 1.0)
    result = {
        "model": spec.label, "layer_map": guarded.get("layer_map"), "layer_map_source": guarded.get("layer_map_source"),
        "layers": guarded.get("layers"), "start_fraction": fraction, "early_exit": guarded.get("early_exit"),
        "measured": {
            "resolution": part["resolution"], "steps": part["steps"], "start_step": start_measured,
            "weights_gib": part["weights_gib"], "raw_seconds": raw["wall"], "raw_fixed": raw["fixed"],
            "raw_step": raw["step_unpatched"], "encode": raw["encode"], "t5_stand_in": raw["t5_total"],
            "clean_ratio": clean["wall"] / raw_clean["wall"],
            "clean_step_ratio": clean["step_unpatched"] / raw_clean["step_unpatched"],
            "own": clean["own"], "scan_wall": flagged["scan"], "recording": flagged["recording"],
            "flagged_ratio": flagged["wall"] / raw["wall"], "flagged_step_relative": relative,
            "hook_per_step": flagged["hook_per_step"], "raw_peak_added_gib": raw["peak_added_gib"],
            "flagged_peak_added_gib": flagged["peak_added_gib"], "checks": part["checks"],
            "wall_clock_raw": raw["wall_clock"], "wall_clock_flagged": flagged["wall_clock"],
        },
        "default": {"resolution": spec.default_resolution, "steps": steps, "cfg_batch": cfg_batch, "start_step": start,
                    "denoiser_flop_ratio": ratios["denoiser"], "token_ratio": token_ratio},
        "projected": {
            "raw_seconds": raw_default, "clean_ratio": clean_default / raw_time(raw_clean), "weights_gib": weights_default,
            "flagged_ratio": flagged_default / raw_default, "raw_peak_gib": raw_peak_default,
            "added_peak_gib": added_default, "added_peak_share": added_default / raw_peak_default,
        },
        "stand_ins": spec.stand_ins,
    }
    if "guarded_flagged_no_exit" in runs:
        full = decompose(runs["guarded_flagged_no_exit"], start_measured)
        full_default, full_relative = flagged_time(full)
        result["measured"].update(
            no_exit_flagged_ratio=full["wall"] / raw["wall"], no_exit_step_relative=full_relative,
            exit_ratio_drop=full["wall"] / raw["wall"] - flagged["wall"] / raw["wall"],
            no_exit_peak_added_gib=full["peak_added_gib"],
        )
        result["projected"]["no_exit_flagged_ratio"] = full_default / raw_default
    return result


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def exit_summary(part: dict[str, Any]) -> dict[str, Any]:
    """SD3 flagged ratio with and without the early exit, fastest of the rounds and per round."""
    runs = part["runs"]
    start = runs["guarded_flagged"][0].get("start_step", 0)
    raw = decompose(runs["raw_flagged"], part["steps"])
    fast = decompose(runs["guarded_flagged"], start)
    full = decompose(runs["guarded_flagged_no_exit"], start)
    round_drops = [
        (f["wall"] - e["wall"]) / r["wall"]
        for r, e, f in zip(runs["raw_flagged"], runs["guarded_flagged"], runs["guarded_flagged_no_exit"], strict=True)
    ]
    return {
        "patched_steps": part["steps"] - start, "exit_ratio": fast["wall"] / raw["wall"],
        "no_exit_ratio": full["wall"] / raw["wall"], "drop": (full["wall"] - fast["wall"]) / raw["wall"],
        "round_drops": round_drops, "exit_step": fast["step_patched"] / raw["step_unpatched"],
        "no_exit_step": full["step_patched"] / raw["step_unpatched"],
        "difference": part["checks"].get("exit_max_abs_difference", 0.0),
    }


def verdict_mark(value: float, target: float) -> str:
    return "met" if value <= target else "**missed**"


def report() -> None:
    parts = {path.stem: json.loads(path.read_text()) for path in sorted(PARTS.glob("*.json"))}
    exit_run = parts.pop("sd3_exit", None)
    compiled_parts = {name: parts.pop(name) for name in list(parts) if "_compiled_" in name}
    rows = {name: project(SPECS[name], parts[name]) for name in SPECS if name in parts}
    missing = [SPECS[name].label for name in SPECS if name not in parts]
    lines = [
        "# Real-scale overhead: published architectures, random weights, projected to their default schedules",
        "",
        f"Produced by `benchmarks/real_scale.py` (torch {torch.__version__}, {platform.machine()}, bf16 on CPU, "
        f"{next(iter(parts.values()))['torch_threads'] if parts else '?'} torch thread(s); a machine shared with other jobs). "
        "Times are the fastest of the measured rounds (steps: of all calls of a kind), in CPU seconds of the calling thread (one torch thread). **Measured** columns are runs of the real-size "
        "model at the reduced resolution and step count; **projected** columns extend them to the model's default "
        "schedule (see the script's docstring for the formula). Targets: clean <= 1.005x, flagged <= 1.02x "
        "(SD1.5, SDXL, PixArt, IF), SD3 medium block 10 <= 1.25x, added peak memory <= 5% of raw.",
        "",
        "## Projected to the default schedule",
        "",
        "| model | map (source) | default: res, steps, start, CFG | projected raw s | clean | flagged | raw peak GiB | added peak GiB (% of raw) | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        p, d = row["projected"], row["default"]
        layers = row["layers"] or []
        shown = ", ".join(layers) if len(layers) <= 3 else f"all {len(layers)} text layers"
        flagged_target = TARGETS["flagged_sd3"] if name == "sd3" else TARGETS["flagged_cross"] if name != "flux" else None
        marks = [f"clean {verdict_mark(p['clean_ratio'], TARGETS['clean'])}"]
        if flagged_target is not None:
            marks.append(f"flagged {verdict_mark(p['flagged_ratio'], flagged_target)}")
        marks.append(f"memory {verdict_mark(p['added_peak_share'], TARGETS['memory'])}")
        flagged = f"{p['flagged_ratio']:.3f}x"
        if "no_exit_flagged_ratio" in p:
            flagged += f" (no early exit {p['no_exit_flagged_ratio']:.3f}x)"
        lines.append(
            f"| {row['model']} | {shown} ({row['layer_map_source']}) | {d['resolution']}px, {d['steps']}, step "
            f"{d['start_step']}, batch {d['cfg_batch']} | {p['raw_seconds']:.0f} | {p['clean_ratio']:.4f}x | {flagged} | "
            f"{p['raw_peak_gib']:.1f} | "
            f"{p['added_peak_gib']:.3f} ({100 * p['added_peak_share']:.2f}%) | {'; '.join(marks)} |"
        )
    lines += [
        "",
        "## Measured inputs (reduced resolution and steps)",
        "",
        "| model | res, steps (first patched) | weights GiB | raw s: fixed + steps x step | encode s (T5 stand-in) | clean ratio (step ratio) | guard's own ms | recording s | flagged ratio | patched step / raw step | hooks ms/step | call peak GiB raw / flagged | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        m = row["measured"]
        checks = m["checks"]
        check = ("clean bit-identical" if checks["clean_identical"] else "**clean differs**") + (
            ", flagged changed" if checks["flagged_changed"] else ", **flagged unchanged**")
        flagged = f"{m['flagged_ratio']:.3f}"
        if "no_exit_flagged_ratio" in m:
            flagged += f" (no exit {m['no_exit_flagged_ratio']:.3f})"
        lines.append(
            f"| {row['model']} | {m['resolution']}px, {m['steps']} ({m['start_step']}) | {m['weights_gib']:.1f} | "
            f"{m['raw_seconds']:.2f}: {m['raw_fixed']:.2f} + {m['steps']} x {m['raw_step']:.2f} | {m['encode']:.2f} "
            f"({m['t5_stand_in']:.2f}) | {m['clean_ratio']:.3f} ({m['clean_step_ratio']:.3f}) | {1000 * m['own']:.1f} | "
            f"{m['recording']:.2f} | {flagged} | {m['flagged_step_relative']:.3f} | {1000 * m['hook_per_step']:.2f} | "
            f"{m['raw_peak_added_gib']:.3f} / {m['flagged_peak_added_gib']:.3f} | {check} |"
        )
    exit_parts = [("main run", parts["sd3"])] if "sd3" in parts else []
    if exit_run is not None:
        exit_parts.append(("early-exit run", exit_run))
    if exit_parts:
        lines += [
            "",
            "## SD3 medium early exit (measured: real-size transformer, reduced resolution, same rounds)",
            "",
            "Block-10 map (the shipped preset), CFG. Flagged ratio = guarded flagged / raw flagged call, fastest of "
            "the rounds each; per round: the same ratio within one round (the variants run back to back).",
            "",
            "| run | res, steps (patched) | rounds | flagged ratio without exit | with exit | drop | drop per round | patched step / raw step without -> with exit | images with vs without exit | target drop >= 0.15 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        summaries = {}
        for label, part in exit_parts:
            summary = exit_summary(part)
            summaries[label] = summary
            lines.append(
                f"| {label} | {part['resolution']}px, {part['steps']} ({summary['patched_steps']}) | {part['rounds']} | "
                f"{summary['no_exit_ratio']:.3f}x | {summary['exit_ratio']:.3f}x | {summary['drop']:.3f} | "
                f"{', '.join(f'{d:.3f}' for d in summary['round_drops'])} | {summary['no_exit_step']:.3f}x -> "
                f"{summary['exit_step']:.3f}x | max abs difference {summary['difference']:.3g} (bf16 latents) | "
                f"{'met' if summary['drop'] >= TARGETS['early_exit_drop'] else '**missed**'} |"
            )
        if "sd3" in rows:
            p = rows["sd3"]["projected"]
            lines += [
                "",
                f"Projected to 1024px, 28 steps (from the main run): {p['no_exit_flagged_ratio']:.3f}x without the exit, "
                f"{p['flagged_ratio']:.3f}x with it. Early exit in the verdict: `{rows['sd3']['early_exit']}`. The exit "
                "changes the user's rows only through batch-size dependent kernels (bf16 matmuls here); the tests show "
                "bit-identity in float32 for calls of two rows or more.",
            ]
        rows_json_exit = summaries
    else:
        rows_json_exit = {}
    lines += compiled_report_lines(compiled_parts, rows)
    notes = [f"- {SPECS[name].label}: " + "; ".join(row["stand_ins"]) for name, row in rows.items() if row["stand_ins"]]
    lines += ["", "## Stand-ins and notes", "", *notes]
    if missing:
        lines.append(
            f"- not measured in this run (machine time): {', '.join(missing)}; `--model NAME` measures one. FLUX.1 "
            "schnell does not fit at full size (11.9 B parameters, 23.8 GB in bf16): its run measures 2 of 19 "
            "double-stream and 4 of 38 single-stream blocks at real width and projects the step from the per-block times."
        )
    lines += [
        "- Flux has no shipped map: the generator falls back to every text layer (57 blocks), so the target row "
        "runs through every block (no early exit gain) and doubles a one-row batch; no flagged target is set for it.",
        "- SD1.5 and PixArt have no shipped map either: the all-layer fallback patches every cross-attention layer; "
        "these families inject precomputed K/V, so their per-step cost is the hooks' row replacement.",
        "- Peak memory is the process's VmHWM over one call minus its resident set before the call (heap trimmed "
        "first); the projection scales the raw call peak, and on SD3/Flux (extra rows) the added peak, with the "
        "denoiser's token count (on cross-attention models the added memory is the target's K/V per mapped layer "
        "and the recorded prompt inputs, text-sized, so it stays as measured) and adds them to "
        "the published model's bf16 weights (stand-ins completed: the 22 missing T5-XXL layers, Flux's other "
        "blocks), the raw peak of a pipeline that keeps every component in memory.",
    ]
    (RESULTS / "real_scale.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "real_scale.json").write_text(
        json.dumps({"targets": TARGETS, "models": rows, "sd3_early_exit": rows_json_exit,
                    "compiled": {name: project_compiled(SPECS[part["spec"]], part, rows.get(part["spec"], {}).get("projected", {}).get("flagged_ratio"))
                                 for name, part in compiled_parts.items()}}, indent=2) + "\n"
    )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(SPECS), help="measure one model (writes results/real_scale/<model>.json)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=MEASURED_STEPS)
    parser.add_argument("--report", action="store_true", help="write real_scale.md/json from the measured parts")
    parser.add_argument("--exit-only", action="store_true",
                        help="sd3: flagged with and without the early exit only (writes real_scale/sd3_exit.json)")
    parser.add_argument("--compiled", choices=COMPILE_MODES,
                        help="compiled raw vs compiled guarded (writes real_scale/<model>_compiled_<mode>.json)")
    parser.add_argument("--alternating", type=int, default=20, help="--compiled: alternating clean/flagged calls")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    if args.model and args.compiled:
        part = measure_compiled(SPECS[args.model], args.compiled, args.rounds, args.steps, args.alternating)
        PARTS.mkdir(parents=True, exist_ok=True)
        slug = args.compiled.replace(".", "_").replace("-", "_")
        (PARTS / f"{args.model}_compiled_{slug}.json").write_text(json.dumps(part, indent=1, default=str) + "\n")
    elif args.model:
        part = measure(SPECS[args.model], args.rounds, args.steps, args.exit_only)
        PARTS.mkdir(parents=True, exist_ok=True)
        name = f"{args.model}_exit" if args.exit_only else args.model
        (PARTS / f"{name}.json").write_text(json.dumps(part, indent=1, default=str) + "\n")
    if args.report:
        report()


if __name__ == "__main__":
    main()
