"""Build, save and load the glyph pipeline.

``build_glyph_pipeline(GlyphModelConfig())`` makes a freshly initialised pipeline (training starts from
it; tests use it as a small random-weight model). ``load_glyph_pipeline()`` loads the weights shipped
in the package (``safetext/models/glyph/weights``) or any directory written by ``save_pretrained``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

from safetext.models.glyph.pipeline import COORD_CHANNELS, SPACE_TO_DEPTH, GlyphPipeline

logger = logging.getLogger("safetext.models.glyph")

WEIGHTS_DIR_NAME = "weights"


@dataclass(frozen=True)
class GlyphModelConfig:
    """Architecture of the glyph model.

    Args:
        height, width: image size in pixels (the UNet sees height/2 x width/2 after space-to-depth).
        block_out_channels: UNet channels per resolution (Down, CrossAttnDown, CrossAttnDown).
        text_width: width of the byte-level text encoder and the cross-attention dimension.
        text_layers: transformer layers of the text encoder.
        heads: attention heads (UNet cross-attention and text encoder).
        max_length: padded prompt length in bytes.
        sign_height, sign_width: the sign's size when it stands in a larger scene (``height`` x ``width``
            is then the scene); ``None`` when the sign fills the image.
    """

    height: int = 24
    width: int = 96
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    text_width: int = 128
    text_layers: int = 3
    heads: int = 4
    max_length: int = 64
    norm_groups: int = 8
    sign_height: int | None = None
    sign_width: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        rescale_betas_zero_snr=True,
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=False,
    )


def build_tokenizer(max_length: int) -> ByT5Tokenizer:
    return ByT5Tokenizer(model_max_length=max_length)


def build_glyph_pipeline(config: GlyphModelConfig = GlyphModelConfig(), seed: int = 0) -> GlyphPipeline:
    """A freshly initialised (random-weight) glyph pipeline, deterministic in ``seed``."""
    torch.manual_seed(seed)
    c = config
    unet = UNet2DConditionModel(
        sample_size=(c.height // SPACE_TO_DEPTH, c.width // SPACE_TO_DEPTH),
        in_channels=3 * SPACE_TO_DEPTH**2 + COORD_CHANNELS,
        out_channels=3 * SPACE_TO_DEPTH**2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(c.block_out_channels),
        layers_per_block=1,
        cross_attention_dim=c.text_width,
        attention_head_dim=c.heads,
        norm_num_groups=c.norm_groups,
    )
    tokenizer = build_tokenizer(c.max_length)
    text_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=c.text_width,
        d_kv=c.text_width // c.heads,
        d_ff=c.text_width * 2,
        num_layers=c.text_layers,
        num_heads=c.heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=64,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = T5EncoderModel(text_config)
    sign = [c.sign_height, c.sign_width] if c.sign_height and c.sign_width else None
    return GlyphPipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=build_scheduler(), sign_size=sign)


def shipped_weights_dir() -> Path:
    """Directory of the weights shipped inside the package."""
    return Path(str(resources.files("safetext"))) / "models" / "glyph" / WEIGHTS_DIR_NAME


def load_glyph_pipeline(path: str | Path | None = None, torch_dtype: torch.dtype = torch.float32) -> GlyphPipeline:
    """Load a glyph pipeline saved with ``save_pretrained`` (default: the shipped weights).

    Nothing is downloaded: ``path`` must be a local directory.

    Args:
        path: a directory holding ``model_index.json`` (default: the package's shipped weights).
        torch_dtype: dtype to load into (weights are stored in fp16; fp32 is the CPU default).
    """
    directory = Path(path) if path is not None else shipped_weights_dir()
    if not (directory / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no glyph pipeline at {directory} (model_index.json missing); train one with "
            "`safetext train-glyph` or pass the directory written by save_pretrained"
        )
    pipe = GlyphPipeline.from_pretrained(str(directory), dtype=torch_dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_glyph_pipeline(pipe: GlyphPipeline, path: str | Path, fp16: bool = True) -> None:
    """Save in diffusers format (safetensors); fp16 by default to keep the shipped files small."""
    if fp16:
        import copy

        pipe = copy.deepcopy(pipe)
        pipe.unet.to(torch.float16)
        pipe.text_encoder.to(torch.float16)
    pipe.save_pretrained(str(path), safe_serialization=True)
