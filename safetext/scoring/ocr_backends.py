"""Built-in OCR backends: rapidocr (offline PP-OCR ONNX models) and easyocr (local weights only).

Both read in one of two modes:

- ``"crop"``: recognition only, for an image that is one line of text (a word crop, or the
  24x96 / 32x128 output of the embedded glyph model). The image is first upscaled (bicubic,
  aspect ratio kept) to at least ``min_height`` pixels high, because the recognizers work at
  48 pixels and misread smaller input.
- ``"full"``: text detection, then recognition of every detected line, for whole scenes. Images
  whose shorter side is below ``min_side`` are upscaled first.

The rapidocr settings are those measured in ``DEPENDENCIES.md``: the 180-degree text classifier
is off (``use_cls=False``; it flips upright words), and detection resizes the longer side to at
most ``limit_side_len`` (``Det.limit_type="max"``, 960) instead of the default upscaling of the
shorter side. With these settings 60/60 clean, noisy and small rendered words were read exactly.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from safetext.errors import BackendError
from safetext.scoring.ocr import OCR_EXTRA_HINT, OcrBackend, OcrResult, logger

__all__ = ["RapidOcrBackend", "EasyOcrBackend", "upscale_to"]

_MODES = ("crop", "full")
RAPIDOCR_TESTED_VERSION = "3.10.0"


def upscale_to(rgb: np.ndarray, *, min_height: int = 0, min_side: int = 0) -> np.ndarray:
    """Upscale a uint8 RGB array (bicubic, aspect kept) so that its height is at least
    ``min_height`` and its shorter side at least ``min_side``; larger images are returned as is."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = max(min_height / height, min_side / min(height, width), 1.0)
    if scale == 1.0:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise BackendError(
            f"OCR mode {mode!r} is unknown; use 'crop' (one line of text, recognition only) or "
            "'full' (detect text in a whole image)"
        )
    return mode


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackendError(f"{name} must be a positive integer, got {value!r}")
    return value


def _missing(*packages: str) -> list[str]:
    return [package for package in packages if importlib.util.find_spec(package) is None]


class RapidOcrBackend(OcrBackend):
    """rapidocr 3.10 with the PP-OCR ONNX models bundled in its wheel; nothing is downloaded.

    Args:
        mode: ``"crop"`` (recognition only: ``use_det=False, use_cls=False``) or ``"full"``
            (detection + recognition, ``use_cls=False``, ``Det.limit_type="max"``).
        min_height: Crop mode: upscale images lower than this many pixels.
        min_side: Full mode: upscale images whose shorter side is below this many pixels.
        limit_side_len: Full mode: the detector shrinks the longer side to at most this length.
        text_score: Full mode: drop detected lines recognized with lower confidence.
        num_threads: onnxruntime intra-op threads; ``None`` keeps onnxruntime's default.
        log_level: Passed to rapidocr's own ``Global.log_level`` option, which rapidocr applies to
            its ``RapidOCR`` logger; ``"error"`` hides its per-load info lines.

    Raises:
        BackendError: An option is invalid, or rapidocr/onnxruntime is not installed.
    """

    name = "rapidocr"

    def __init__(
        self,
        *,
        mode: str = "full",
        min_height: int = 48,
        min_side: int = 128,
        limit_side_len: int = 960,
        text_score: float = 0.5,
        num_threads: int | None = None,
        log_level: str = "error",
    ) -> None:
        super().__init__()
        self.mode = _check_mode(mode)
        self.min_height = _check_positive_int("min_height", min_height)
        self.min_side = _check_positive_int("min_side", min_side)
        self.limit_side_len = _check_positive_int("limit_side_len", limit_side_len)
        if not 0.0 <= float(text_score) <= 1.0:
            raise BackendError(f"text_score must be in [0, 1], got {text_score!r}")
        self.text_score = float(text_score)
        self.num_threads = None if num_threads is None else _check_positive_int("num_threads", num_threads)
        if not isinstance(log_level, str) or log_level.lower() not in (
            "debug", "info", "warning", "error", "critical"
        ):
            raise BackendError(
                f"log_level {log_level!r} is invalid; use debug, info, warning, error or critical"
            )
        self.log_level = log_level.lower()
        missing = _missing("rapidocr", "onnxruntime")
        if missing:
            raise BackendError(
                f"the rapidocr OCR backend needs the packages {', '.join(missing)}, which are not "
                f"installed; install them with {OCR_EXTRA_HINT}"
            )

    def engine_params(self) -> dict[str, Any]:
        """The ``params`` passed to ``rapidocr.RapidOCR`` (rapidocr 3.x dotted keys)."""
        params: dict[str, Any] = {
            "Global.use_det": self.mode == "full",
            "Global.use_cls": False,
            "Global.use_rec": True,
            "Global.text_score": self.text_score,
            "Global.log_level": self.log_level,
            "Det.limit_type": "max",
            "Det.limit_side_len": self.limit_side_len,
        }
        if self.num_threads is not None:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.num_threads
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        return params

    def _load_engine(self) -> Any:
        version = importlib.metadata.version("rapidocr")
        if version != RAPIDOCR_TESTED_VERSION:
            logger.warning(
                "rapidocr %s is installed; safetext's OCR settings were validated with %s",
                version,
                RAPIDOCR_TESTED_VERSION,
            )
        try:
            from rapidocr import RapidOCR

            return RapidOCR(params=self.engine_params())
        except Exception as exc:  # surface any load failure as one clear error
            raise BackendError(
                f"rapidocr {version} failed to load ({type(exc).__name__}: {exc}); reinstall it "
                f"with {OCR_EXTRA_HINT}"
            ) from exc

    def _read_rgb(self, engine: Any, rgb: np.ndarray) -> OcrResult:
        if self.mode == "crop":
            rgb = upscale_to(rgb, min_height=self.min_height)
        else:
            rgb = upscale_to(rgb, min_side=self.min_side)
        # rapidocr reads numpy input as BGR (OpenCV order).
        output = engine(np.ascontiguousarray(rgb[:, :, ::-1]))
        texts = getattr(output, "txts", None) or ()
        scores = getattr(output, "scores", None) or ()
        return OcrResult.from_lines(zip(texts, scores))


class EasyOcrBackend(OcrBackend):
    """easyocr from a local model directory; downloading is disabled.

    easyocr is not a safetext dependency and needs torchvision. Put its weights
    (``craft_mlt_25k.pth`` for detection, ``english_g2.pth`` for English recognition) in a
    directory and pass it as ``model_storage_directory``.

    Args:
        model_storage_directory: Directory holding the easyocr ``.pth`` weights.
        languages: easyocr language codes.
        mode: ``"crop"`` (recognition only; no detector weights needed) or ``"full"``.
        min_height: Crop mode: upscale images lower than this many pixels.
        gpu: Let easyocr use CUDA.

    Raises:
        BackendError: No or no existing directory was given, or easyocr is not installed.
    """

    name = "easyocr"

    def __init__(
        self,
        *,
        model_storage_directory: str | os.PathLike[str] | None = None,
        languages: tuple[str, ...] | list[str] = ("en",),
        mode: str = "full",
        min_height: int = 48,
        gpu: bool = False,
    ) -> None:
        super().__init__()
        self.mode = _check_mode(mode)
        self.min_height = _check_positive_int("min_height", min_height)
        if model_storage_directory is None:
            raise BackendError(
                "the easyocr OCR backend loads weights only from a local directory and never "
                "downloads; pass model_storage_directory=<directory with the easyocr .pth files>"
            )
        directory = Path(model_storage_directory).expanduser()
        if not directory.is_dir():
            raise BackendError(
                f"easyocr model_storage_directory {str(directory)!r} is not a directory; pass the "
                "directory that holds the easyocr .pth weights"
            )
        self.model_storage_directory = directory
        if isinstance(languages, str) or not languages:
            raise BackendError(f"languages must be a non-empty list of codes, got {languages!r}")
        self.languages = list(languages)
        self.gpu = bool(gpu)
        if _missing("easyocr"):
            raise BackendError(
                "the easyocr OCR backend needs the package easyocr, which is not installed "
                "(it is not part of safetext's extras); install it with pip install easyocr, or "
                f"use the rapidocr backend ({OCR_EXTRA_HINT})"
            )

    def _load_engine(self) -> Any:
        try:
            import easyocr

            return easyocr.Reader(
                self.languages,
                gpu=self.gpu,
                model_storage_directory=str(self.model_storage_directory),
                download_enabled=False,
                detector=self.mode == "full",
                recognizer=True,
                verbose=False,
            )
        except Exception as exc:
            raise BackendError(
                f"easyocr failed to load from {str(self.model_storage_directory)!r} "
                f"({type(exc).__name__}: {exc}); check that the directory holds the weights for "
                f"languages {self.languages}"
            ) from exc

    def _read_rgb(self, engine: Any, rgb: np.ndarray) -> OcrResult:
        if self.mode == "crop":
            lines = engine.recognize(upscale_to(rgb, min_height=self.min_height), detail=1)
        else:
            lines = engine.readtext(rgb, detail=1, paragraph=False)
        return OcrResult.from_lines((text, confidence) for _, text, confidence in lines)
