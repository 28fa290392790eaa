"""OCR reads only where a pipeline declares its text: the glyph scene model's sign, not the scene."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from safetext.localize import OcrMovementScorer
from safetext.localize.scorers import SweepReferences
from safetext.localize.pairs import prompt_pairs
from safetext.models.glyph import build_glyph_pipeline
from safetext.policy import load_policy
from safetext.scoring import OcrResult, RegionOcr, ocr_for_pipeline, text_region
from safetext.verify import ImageVerifier
from tests.tiny_pipelines import TINY_GLYPH_CONFIG

TINY_SCENE = dataclasses.replace(TINY_GLYPH_CONFIG, height=32, width=48, sign_height=16, sign_width=32)


class ShapeOcr:
    """Reads each image as 'HxW:mean' of its uint8 crop, and remembers what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def _one(self, image) -> OcrResult:
        array = np.asarray(image)
        self.seen.append(array.shape)
        return OcrResult(f"{array.shape[0]}x{array.shape[1]}:{int(array.mean())}", 1.0)

    def read(self, image) -> OcrResult:
        return self._one(image)

    def read_many(self, images):
        return [self._one(image) for image in images]


@pytest.fixture(scope="module")
def scene_pipe():
    return build_glyph_pipeline(TINY_SCENE, seed=0)


def _scene_image() -> np.ndarray:
    """32x48 float image: black scene, white 16x32 sign at (8, 8)."""
    image = np.zeros((32, 48, 3), dtype=np.float32)
    image[8:24, 8:40] = 1.0
    return image


def test_text_region_is_the_sign_with_a_margin(scene_pipe):
    region = text_region(scene_pipe)
    assert region is not None and region(32, 48) == (6, 6, 26, 42)
    assert region(40, 64) == (10, 14, 30, 50)  # centred on another size too
    assert text_region(build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=0)) is None  # the sign fills the image
    assert text_region(object()) is None


def test_region_ocr_reads_the_crop_only(scene_pipe):
    backend = ShapeOcr()
    ocr = ocr_for_pipeline(backend, scene_pipe)
    assert isinstance(ocr, RegionOcr) and ocr_for_pipeline(ocr, scene_pipe) is ocr
    # 20x36 crop: the 16x32 white sign (255) and a 2-pixel black margin
    expected = int((255 * 16 * 32) / (20 * 36))
    assert ocr.read(_scene_image()).text == f"20x36:{expected}"
    chw = torch.from_numpy(_scene_image()).permute(2, 0, 1)
    assert [r.text for r in ocr.read_many([chw, _scene_image()])] == [f"20x36:{expected}"] * 2
    assert backend.seen == [(20, 36, 3)] * 3
    with pytest.raises(ValueError, match=r"text region \(6, 6, 26, 42\) does not fit a 16x16 image"):
        RegionOcr(backend, lambda h, w: (6, 6, 26, 42)).read(np.zeros((16, 16, 3), dtype=np.float32))
    bare = build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=0)
    assert ocr_for_pipeline(backend, bare) is backend


def test_localization_scorer_binds_to_the_pipeline_without_changing_the_original(scene_pipe):
    backend = ShapeOcr()
    scorer = OcrMovementScorer(backend)
    bound = scorer.for_pipeline(scene_pipe)
    assert bound is not scorer and scorer.backend is backend and isinstance(bound.backend, RegionOcr)
    assert "text_region" not in scorer.describe() and bound.describe()["text_region"] is True
    assert scorer.for_pipeline(build_glyph_pipeline(TINY_GLYPH_CONFIG, seed=0)) is scorer
    pairs = tuple(prompt_pairs(2, words=["cat", "dog"], seed=0))
    image = torch.from_numpy(_scene_image()).permute(2, 0, 1)
    references = SweepReferences(pairs, (image, image), (image, image))
    scores = bound.score([image, image], references)
    assert [s.text for s in scores] == ["20x36:" + str(int((255 * 16 * 32) / (20 * 36)))] * 2
    assert backend.seen == [(20, 36, 3)] * 2 and scores[0].similarity == pytest.approx(1.0)


def test_image_verifier_reads_the_sign_of_a_scene(scene_pipe):
    backend = ShapeOcr()
    verifier = ImageVerifier(load_policy("default"), backend)
    verifier.check([_scene_image()], pipe=scene_pipe)
    verifier.check([_scene_image()])
    assert backend.seen == [(20, 36, 3), (32, 48, 3)]
