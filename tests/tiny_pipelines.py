"""Tiny random-weight diffusers pipelines for tests.

Every builder constructs a complete pipeline from configs, in fp32 on the CPU, with tokenizers built in
memory: nothing is downloaded, so the module works with ``HF_HUB_OFFLINE=1``. Each builder draws its
weights from a fixed seed in a forked RNG, so two builds of the same pipeline are identical and the
caller's RNG state is untouched. One full generation with :data:`TINY_CALL_KWARGS` takes a fraction of
a second on one CPU thread.

The denoisers are small but keep the structure the patching code must handle: text attention in the
down, mid and up blocks of the UNets (``attn2`` cross-attention, or added K/V for IF), joint attention
with a text stream (``add_k_proj``/``add_v_proj``) for SD3 and Flux, Flux single-stream blocks, and
PixArt cross-attention with a padding mask.

Example:
    >>> import torch
    >>> from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS
    >>> pipe = TINY_BUILDERS["sd15"]()
    >>> out = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **TINY_CALL_KWARGS["sd15"])
    >>> tuple(out.images.shape)
    (1, 3, 32, 32)
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    IFPipeline,
    PixArtAlphaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from tests.tiny_tokenizers import build_clip_tokenizer, build_t5_tokenizer

CLIP_HIDDEN_SIZE = 32
T5_MODEL_DIM = 32
SEED = 0


# ----------------------------------------------------------------------------------------------------
# Text encoders and VAE
# ----------------------------------------------------------------------------------------------------
def _clip_text_config(tokenizer: CLIPTokenizer, projection_dim: int = CLIP_HIDDEN_SIZE) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CLIP_HIDDEN_SIZE,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",
    )


def _t5_encoder(tokenizer: T5Tokenizer, d_model: int = T5_MODEL_DIM) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _tiny_vae(latent_channels: int = 4, **config: Any) -> AutoencoderKL:
    """Two-level AutoencoderKL: ``vae_scale_factor`` is 2, so a 32x32 image has 16x16 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        **config,
    )


def _seeded(builder: Callable[[], Any]) -> Callable[[], Any]:
    """Draw the builder's weights from ``torch.manual_seed(SEED)`` without touching the caller's RNG."""

    @functools.wraps(builder)
    def build():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            return builder()

    return build


def _eval(pipe):
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------
@_seeded
def build_sd15() -> StableDiffusionPipeline:
    """Tiny SD1.x-style pipeline with ``attn2`` cross-attention in down, mid and up blocks.

    Text attention layers, in forward order (``to_k``/``to_v`` under each): ``down_blocks.0.attentions.0``,
    ``mid_block.attentions.0``, ``up_blocks.1.attentions.{0,1}`` — each ``.transformer_blocks.0.attn2``.

    Returns:
        `StableDiffusionPipeline`: fp32, CPU, DDIM scheduler, no safety checker.
    """
    tokenizer = build_clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=CLIP_HIDDEN_SIZE,
        attention_head_dim=2,
    )
    vae = _tiny_vae()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _eval(pipe)


@_seeded
def build_sdxl() -> StableDiffusionXLPipeline:
    """Tiny SDXL-style pipeline: two CLIP text encoders and ``text_time`` added conditioning.

    Like SDXL, the cross-attention blocks hold several transformer blocks. Text attention layers in
    forward order (``attn2.to_k``/``attn2.to_v`` under each): ``down_blocks.1.attentions.0.transformer_blocks.{0,1}``,
    ``mid_block.attentions.0.transformer_blocks.{0,1}``, ``up_blocks.0.attentions.{0,1}.transformer_blocks.{0,1}``
    (8 layers). ``attn2`` reads the concatenated hidden states of both encoders (32 + 32 = 64 features).

    Returns:
        `StableDiffusionXLPipeline`: fp32, CPU, Euler scheduler.
    """
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer_2))
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=2 * CLIP_HIDDEN_SIZE,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # six micro-conditioning numbers (original size, crop, target size) plus the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_embed_dim + text_encoder_2.config.projection_dim,
    )
    vae = _tiny_vae()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    return _eval(pipe)


@_seeded
def build_sd3() -> StableDiffusion3Pipeline:
    """Tiny SD3-style pipeline: MMDiT joint attention, two CLIP encoders and a T5 encoder.

    Text K/V live in the text stream of each joint block: ``transformer_blocks.{0,1}.attn.add_k_proj`` and
    ``.add_v_proj`` (block 1, the last, is ``context_pre_only``). The prompt sequence is the 77 CLIP
    tokens (hidden states of both encoders concatenated to 64 features) followed by the T5 tokens.

    Returns:
        `StableDiffusion3Pipeline`: fp32, CPU, flow-matching Euler scheduler, 16-channel VAE latents.
    """
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    tokenizer_3 = build_t5_tokenizer()
    text_encoder = CLIPTextModelWithProjection(_clip_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer_2))
    # The pipeline zero-pads the 64 concatenated CLIP features up to the T5 width.
    text_encoder_3 = _t5_encoder(tokenizer_3, d_model=2 * CLIP_HIDDEN_SIZE)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=text_encoder_3.config.d_model,
        caption_projection_dim=32,
        pooled_projection_dim=text_encoder.config.projection_dim + text_encoder_2.config.projection_dim,
        pos_embed_max_size=16,
    )
    vae = _tiny_vae(latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return _eval(pipe)


@_seeded
def build_if() -> IFPipeline:
    """Tiny DeepFloyd IF stage-I pipeline: pixel-space UNet with added-K/V text attention.

    The T5 embeddings go through ``encoder_hid_proj`` and are read by ``add_k_proj``/``add_v_proj`` (the
    ``to_k``/``to_v`` of these layers project the image tokens). Text attention layers in forward order:
    ``down_blocks.1.attentions.0``, ``mid_block.attentions.0``, ``up_blocks.0.attentions.{0,1}``.

    Returns:
        `IFPipeline`: fp32, CPU, DDPM scheduler with learned variance; no safety checker or watermarker.
        Call it with ``clean_caption=False`` (captions are not cleaned offline).
    """
    tokenizer = build_t5_tokenizer()
    text_encoder = _t5_encoder(tokenizer)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=3,
        out_channels=6,  # noise and learned variance
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        encoder_hid_dim=text_encoder.config.d_model,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        variance_type="learned_range",
        prediction_type="epsilon",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.0,
    )
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    return _eval(pipe)


@_seeded
def build_pixart() -> PixArtAlphaPipeline:
    """Tiny PixArt-alpha pipeline: DiT with ``attn2`` cross-attention on T5 tokens and a padding mask.

    Text attention layers: ``transformer_blocks.{0,1}.attn2`` (``to_k``/``to_v``); ``attn1`` is self-attention.

    Returns:
        `PixArtAlphaPipeline`: fp32, CPU, DPM-Solver++ scheduler. Call it with ``clean_caption=False``.
    """
    tokenizer = build_t5_tokenizer()
    text_encoder = _t5_encoder(tokenizer)
    transformer = PixArtTransformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=8,  # noise and learned sigma
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=text_encoder.config.d_model,
    )
    vae = _tiny_vae()
    scheduler = DPMSolverMultistepScheduler()
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    return _eval(pipe)


@_seeded
def build_flux() -> FluxPipeline:
    """Tiny Flux pipeline: one double-stream and one single-stream block, CLIP and T5 encoders.

    Text K/V: ``transformer_blocks.0.attn.add_k_proj``/``add_v_proj`` (double-stream text branch) and, in
    ``single_transformer_blocks.0.attn.to_k``/``to_v``, the rows of the text tokens, which come first in
    the joint sequence ``[text, image]``. The transformer is guidance-distilled like FLUX.1-dev
    (``guidance_embeds=True``), so ``guidance_scale`` is an embedding, not classifier-free guidance;
    pass ``true_cfg_scale > 1`` with a ``negative_prompt`` to run true CFG.

    Returns:
        `FluxPipeline`: fp32, CPU, flow-matching Euler scheduler with dynamic shifting.
    """
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_t5_tokenizer()
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    text_encoder_2 = _t5_encoder(tokenizer_2)
    latent_channels = 4
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,  # latents are packed in 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_encoder_2.config.d_model,
        pooled_projection_dim=text_encoder.config.hidden_size,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    vae = _tiny_vae(latent_channels=latent_channels, scaling_factor=0.3611, shift_factor=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return _eval(pipe)


TINY_BUILDERS: dict[str, Callable[[], Any]] = {
    "sd15": build_sd15,
    "sdxl": build_sdxl,
    "sd3": build_sd3,
    "if": build_if,
    "pixart": build_pixart,
    "flux": build_flux,
}

_COMMON_CALL_KWARGS = {"height": 32, "width": 32, "num_inference_steps": 4, "output_type": "pt"}

TINY_CALL_KWARGS: dict[str, dict[str, Any]] = {
    "sd15": {**_COMMON_CALL_KWARGS, "guidance_scale": 5.0},
    "sdxl": {**_COMMON_CALL_KWARGS, "guidance_scale": 5.0},
    "sd3": {**_COMMON_CALL_KWARGS, "guidance_scale": 5.0, "max_sequence_length": 32},
    "if": {**_COMMON_CALL_KWARGS, "guidance_scale": 5.0, "clean_caption": False},
    "pixart": {
        **_COMMON_CALL_KWARGS,
        "guidance_scale": 4.5,
        "clean_caption": False,
        "max_sequence_length": 32,
        "use_resolution_binning": False,
    },
    "flux": {**_COMMON_CALL_KWARGS, "guidance_scale": 3.5, "max_sequence_length": 32},
}


def tiny_glyph_config():
    """Config of a tiny random-weight glyph pipeline (16x32 images, 7 text-attention layers)."""
    from safetext.models.glyph import GlyphModelConfig

    return GlyphModelConfig(height=16, width=32, block_out_channels=(8, 16, 32), text_width=32, text_layers=1, heads=2, max_length=48, norm_groups=4)


TINY_GLYPH_CONFIG = tiny_glyph_config()


def build_tiny_glyph(seed: int = 0):
    """A tiny random-weight glyph pipeline (``TINY_GLYPH_CONFIG``) with its progress bar off."""
    from safetext.models.glyph import build_glyph_pipeline

    pipe = build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe
