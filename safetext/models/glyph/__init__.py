"""The embedded glyph model: a small pixel-space text-to-image pipeline that writes the prompt's word."""

from safetext.models.glyph.build import (
    GlyphModelConfig,
    build_glyph_pipeline,
    load_glyph_pipeline,
    save_glyph_pipeline,
    shipped_weights_dir,
)
from safetext.models.glyph.pipeline import GlyphPipeline

__all__ = [
    "GlyphModelConfig",
    "GlyphPipeline",
    "build_glyph_pipeline",
    "load_glyph_pipeline",
    "save_glyph_pipeline",
    "shipped_weights_dir",
]
