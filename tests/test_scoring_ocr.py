"""OCR registry and backends. rapidocr runs for real on words rendered with DejaVu Sans Mono."""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

import safetext.scoring.ocr_backends as ocr_backends
from safetext.errors import BackendError
from safetext.scoring import (
    EasyOcrBackend,
    OcrBackend,
    OcrResult,
    RapidOcrBackend,
    get_ocr,
    register_ocr_backend,
    registered_ocr_backends,
)
from safetext.scoring import ocr as ocr_module


def _find_font() -> Path:
    """DejaVu Sans Mono Bold from the system, else the copy matplotlib ships (test extra)."""
    system = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf")
    if system.is_file():
        return system
    try:
        import matplotlib
    except ImportError:
        return system
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono-Bold.ttf"


FONT = _find_font()
WORDS = ["hello", "stop", "coffee", "river", "GARDEN", "Zebra", "night", "open", "cake", "SIGN"]

needs_font = pytest.mark.skipif(not FONT.is_file(), reason=f"font {FONT} is not installed")


def render_word(word: str, width: int, height: int) -> Image.Image:
    """Black word centred on white, the largest size that fits in 90% x 80% of the image."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for size in range(height, 3, -1):
        font = ImageFont.truetype(str(FONT), size)
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        if right - left <= 0.9 * width and bottom - top <= 0.8 * height:
            break
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), word, font=font, fill="black")
    return image


def sign_scene(word: str, size: int = 256) -> Image.Image:
    image = Image.new("RGB", (512, 512), (120, 160, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 180, 450, 320), fill=(240, 230, 200))
    font = ImageFont.truetype(str(FONT), 64)
    draw.text((90, 215), word, font=font, fill=(20, 20, 20))
    return image.resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def crop_ocr() -> OcrBackend:
    pytest.importorskip("rapidocr")
    return get_ocr("rapidocr", mode="crop", num_threads=1)


@pytest.fixture(scope="module")
def full_ocr() -> OcrBackend:
    pytest.importorskip("rapidocr")
    return get_ocr("rapidocr", mode="full", num_threads=1)


# ---------------------------------------------------------------- rapidocr, for real


@needs_font
@pytest.mark.parametrize(("height", "width"), [(24, 96), (32, 128)])
def test_rapidocr_reads_rendered_words_exactly(crop_ocr, height, width):
    images = [render_word(word, width, height) for word in WORDS]
    results = crop_ocr.read_many(images)
    exact = [result.text for result, word in zip(results, WORDS) if result.text == word]
    assert len(exact) >= 9, [result.text for result in results]
    for result in results:
        assert isinstance(result, OcrResult) and 0.5 < result.confidence <= 1.0


@needs_font
def test_rapidocr_accepts_every_image_type(crop_ocr):
    pil = render_word("river", 96, 24)
    uint8 = np.array(pil)
    chw = torch.from_numpy(uint8).permute(2, 0, 1).float() / 255
    inputs = [pil, uint8, uint8.astype(np.float32) / 255, chw, chw.permute(1, 2, 0), pil.convert("L")]
    texts = [crop_ocr.read(image).text for image in inputs]
    assert texts == ["river"] * len(inputs)
    with pytest.raises(ValueError, match="tensors must be CHW or HWC"):
        crop_ocr.read(chw[None])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        crop_ocr.read(chw * 2)


@needs_font
def test_rapidocr_full_mode_detects_the_sign(full_ocr):
    for size in (128, 512):
        result = full_ocr.read(sign_scene("DANGER", size))
        assert result.text == "DANGER", size
        assert result.confidence > 0.9


def test_blank_images_read_as_empty(crop_ocr, full_ocr):
    blank = np.full((32, 128, 3), 255, dtype=np.uint8)
    assert crop_ocr.read(blank) == OcrResult("", 0.0)
    assert full_ocr.read(np.full((128, 128, 3), 128, dtype=np.uint8)) == OcrResult("", 0.0)


@needs_font
def test_rapidocr_is_quiet(capfd):
    pytest.importorskip("rapidocr")
    backend = get_ocr("rapidocr", mode="crop", num_threads=1)
    assert not backend.loaded  # nothing loads until the first read
    assert backend.read(render_word("cake", 96, 24)).text == "cake"
    assert backend.loaded
    captured = capfd.readouterr()
    assert "RapidOCR" not in captured.err + captured.out


def test_rapidocr_engine_params_follow_the_measured_settings():
    pytest.importorskip("rapidocr")
    crop = RapidOcrBackend(mode="crop", num_threads=2)
    full = RapidOcrBackend(mode="full", limit_side_len=640)
    assert crop.engine_params()["Global.use_det"] is False
    assert crop.engine_params()["Global.use_cls"] is False
    assert crop.engine_params()["EngineConfig.onnxruntime.intra_op_num_threads"] == 2
    assert full.engine_params()["Global.use_det"] is True
    assert full.engine_params()["Global.use_cls"] is False
    assert full.engine_params()["Det.limit_type"] == "max"
    assert full.engine_params()["Det.limit_side_len"] == 640
    assert "EngineConfig.onnxruntime.intra_op_num_threads" not in full.engine_params()


def test_upscale_keeps_aspect_and_reaches_min_height():
    rgb = np.zeros((24, 96, 3), dtype=np.uint8)
    assert ocr_backends.upscale_to(rgb, min_height=48).shape == (48, 192, 3)
    assert ocr_backends.upscale_to(rgb, min_side=128).shape == (128, 512, 3)
    assert ocr_backends.upscale_to(rgb, min_height=16) is rgb


# ---------------------------------------------------------------- registry and errors


def test_unknown_backend_lists_registered_ones():
    with pytest.raises(BackendError) as info:
        get_ocr("tesseract")
    assert str(info.value).startswith("unknown OCR backend 'tesseract'; registered backends: easyocr, rapidocr")
    assert {"easyocr", "rapidocr"} <= set(registered_ocr_backends())


def test_bad_options_are_backend_errors():
    with pytest.raises(BackendError, match="does not accept the options \\['colour'\\]"):
        get_ocr("rapidocr", colour="red")
    with pytest.raises(BackendError, match="OCR mode 'words' is unknown; use 'crop'"):
        get_ocr("rapidocr", mode="words")
    with pytest.raises(BackendError, match="min_height must be a positive integer, got 0"):
        get_ocr("rapidocr", min_height=0)


def test_missing_rapidocr_names_the_pip_extra(monkeypatch):
    real = ocr_backends.importlib.util.find_spec
    monkeypatch.setattr(
        ocr_backends.importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    with pytest.raises(BackendError) as info:
        get_ocr("rapidocr")
    assert str(info.value) == (
        "the rapidocr OCR backend needs the packages onnxruntime, which are not installed; install "
        "them with pip install 'safetext[ocr]'"
    )


class CountingBackend(OcrBackend):
    """A backend whose engine counts loads and 'reads' the image's mean brightness."""

    name = "counting"

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.loads = 0
        self.fail_first = fail_first

    def _load_engine(self):
        time.sleep(0.05)
        self.loads += 1
        if self.fail_first and self.loads == 1:
            raise BackendError("first load fails")
        return object()

    def _read_rgb(self, engine, rgb):
        return OcrResult(str(int(rgb.mean())), 1.0)


def test_register_and_use_a_custom_backend(monkeypatch):
    monkeypatch.setattr(ocr_module, "_registry", dict(ocr_module._registry))
    register_ocr_backend("counting", CountingBackend)
    with pytest.raises(BackendError, match="'counting' is already registered; pass replace=True"):
        register_ocr_backend("counting", CountingBackend)
    register_ocr_backend("counting", CountingBackend, replace=True)
    with pytest.raises(BackendError, match="name 'Bad Name' is invalid"):
        register_ocr_backend("Bad Name", CountingBackend)
    register_ocr_backend("not-a-backend", lambda: "nope")
    with pytest.raises(BackendError, match="returned str, not an OcrBackend"):
        get_ocr("not-a-backend")
    backend = get_ocr("counting")
    images = [np.full((2, 2, 3), value, np.uint8) for value in (10, 200)]
    assert backend.read_many(images) == [OcrResult("10", 1.0), OcrResult("200", 1.0)]
    assert backend.read_many(np.stack(images)) == [OcrResult("10", 1.0), OcrResult("200", 1.0)]
    assert "counting" in registered_ocr_backends()


def test_engine_loads_once_across_threads():
    backend = CountingBackend()
    results: list[OcrResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.read(np.zeros((2, 2, 3), np.uint8))))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.loads == 1
    assert results == [OcrResult("0", 1.0)] * 8


def test_failed_load_leaves_backend_clean():
    backend = CountingBackend(fail_first=True)
    with pytest.raises(BackendError, match="first load fails"):
        backend.read(np.zeros((2, 2, 3), np.uint8))
    assert not backend.loaded
    assert backend.read(np.zeros((2, 2, 3), np.uint8)) == OcrResult("0", 1.0)
    assert backend.loads == 2


def test_read_many_validates_every_image_first():
    backend = CountingBackend()
    with pytest.raises(TypeError, match=r"images\[1\] has type str"):
        backend.read_many([np.zeros((2, 2, 3), np.uint8), "x.png"])
    assert backend.loads == 0


def test_result_joins_lines():
    assert OcrResult.from_lines([("NO", 0.9), (" ", 0.1), ("ENTRY", 0.7)]) == OcrResult("NO ENTRY", 0.8)
    assert OcrResult.from_lines([]) == OcrResult("", 0.0)


# ---------------------------------------------------------------- easyocr (local weights only)


def test_easyocr_needs_a_local_directory(tmp_path):
    with pytest.raises(BackendError, match="never downloads; pass model_storage_directory="):
        get_ocr("easyocr")
    missing = tmp_path / "nope"
    with pytest.raises(BackendError, match=f"model_storage_directory '{missing}' is not a directory"):
        get_ocr("easyocr", model_storage_directory=missing)


def test_easyocr_not_installed_is_a_clear_error(tmp_path, monkeypatch):
    real = ocr_backends.importlib.util.find_spec
    monkeypatch.setattr(
        ocr_backends.importlib.util, "find_spec", lambda name, *a: None if name == "easyocr" else real(name, *a)
    )
    with pytest.raises(BackendError) as info:
        get_ocr("easyocr", model_storage_directory=tmp_path)
    assert "needs the package easyocr, which is not installed" in str(info.value)
    assert "pip install 'safetext[ocr]'" in str(info.value)


def test_easyocr_adapter_loads_offline_and_parses_results(tmp_path, monkeypatch):
    calls: dict[str, object] = {}

    class FakeReader:
        def __init__(self, lang_list, **kwargs):
            calls["init"] = (lang_list, kwargs)

        def readtext(self, image, **kwargs):
            calls["readtext"] = (image.shape, kwargs)
            return [([[0, 0]] * 4, "NO", 0.9), ([[0, 0]] * 4, "ENTRY", 0.5)]

        def recognize(self, image, **kwargs):
            calls["recognize"] = (image.shape, kwargs)
            return [([[0, 0]] * 4, "stop", 0.75)]

    fake = types.ModuleType("easyocr")
    fake.__spec__ = importlib.machinery.ModuleSpec("easyocr", None)
    fake.Reader = FakeReader
    monkeypatch.setitem(sys.modules, "easyocr", fake)

    full = get_ocr("easyocr", model_storage_directory=tmp_path)
    assert isinstance(full, EasyOcrBackend)
    assert full.read(np.zeros((64, 64, 3), np.uint8)) == OcrResult("NO ENTRY", 0.7)
    languages, kwargs = calls["init"]
    assert languages == ["en"]
    assert kwargs["download_enabled"] is False
    assert kwargs["model_storage_directory"] == str(tmp_path)
    assert kwargs["detector"] is True and kwargs["gpu"] is False
    assert calls["readtext"] == ((64, 64, 3), {"detail": 1, "paragraph": False})

    crop = get_ocr("easyocr", model_storage_directory=tmp_path, mode="crop")
    assert crop.read(np.zeros((24, 96, 3), np.uint8)) == OcrResult("stop", 0.75)
    assert calls["init"][1]["detector"] is False
    assert calls["recognize"] == ((48, 192, 3), {"detail": 1})
