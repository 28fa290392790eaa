"""Scoring for benchmarks: OCR, text metrics, image similarity, toxicity of OCR text and CLIP-T.

Importing this package is cheap: rapidocr, onnxruntime, easyocr, transformers and the policy
engine are imported only when a backend or scorer is first used.

- :func:`get_ocr` / :func:`register_ocr_backend`: OCR backends by name (``rapidocr``, ``easyocr``).
- :func:`ocr_f1`, :func:`corpus_ocr_f1`, :func:`exact_match`, :func:`levenshtein`: text metrics.
- :func:`mse`, :func:`psnr`, :func:`ssim`: image similarity on float images in [0, 1].
- :class:`ToxicityScorer`, :func:`toxicity_of_text`, :func:`is_toxic`: the policy engine on OCR text.
- :class:`ClipScorer`, :func:`load_clip_scorer`: CLIP-T from a local CLIP directory.
"""

from safetext.scoring.clip import CLIP_T_SKIP_MESSAGE, ClipScorer, load_clip_scorer
from safetext.scoring.image import mse, psnr, ssim
from safetext.scoring.ocr import (
    OcrBackend,
    OcrResult,
    RegionOcr,
    get_ocr,
    ocr_for_pipeline,
    register_ocr_backend,
    registered_ocr_backends,
    text_region,
)
from safetext.scoring.ocr_backends import EasyOcrBackend, RapidOcrBackend
from safetext.scoring.text import CharacterF1, corpus_ocr_f1, exact_match, levenshtein, ocr_f1
from safetext.scoring.toxicity import ToxicityScorer, is_toxic, scan_text, toxicity_of_text

__all__ = [
    "CLIP_T_SKIP_MESSAGE",
    "CharacterF1",
    "ClipScorer",
    "EasyOcrBackend",
    "OcrBackend",
    "OcrResult",
    "RapidOcrBackend",
    "RegionOcr",
    "ToxicityScorer",
    "corpus_ocr_f1",
    "exact_match",
    "get_ocr",
    "ocr_for_pipeline",
    "is_toxic",
    "levenshtein",
    "load_clip_scorer",
    "mse",
    "ocr_f1",
    "psnr",
    "register_ocr_backend",
    "registered_ocr_backends",
    "scan_text",
    "ssim",
    "text_region",
    "toxicity_of_text",
]
