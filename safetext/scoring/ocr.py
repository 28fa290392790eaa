"""OCR backends behind one small interface, chosen by name from a registry.

>>> ocr = get_ocr("rapidocr", mode="crop")          # doctest: +SKIP
>>> ocr.read(word_image)                            # doctest: +SKIP
OcrResult(text='hello', confidence=0.9998)

Built-in backends (both optional, see :mod:`safetext.scoring.ocr_backends`):

- ``rapidocr``: PP-OCR ONNX models shipped inside the rapidocr wheel, run by onnxruntime; works
  offline. ``pip install 'safetext[ocr]'``.
- ``easyocr``: loads weights only from a local directory the user provides; never downloads.

A backend is a subclass of :class:`OcrBackend` that implements ``_load_engine`` and
``_read_rgb``. Add one with a single call::

    register_ocr_backend("my-ocr", MyOcrBackend)

Images are PIL images, numpy HWC arrays (uint8, or float in [0, 1]) or torch CHW/HWC tensors
(float in [0, 1], or uint8), with 1 or 3 channels; see :mod:`safetext.scoring._images`.
"""

from __future__ import annotations

import abc
import logging
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from safetext.errors import BackendError
from safetext.scoring._images import image_to_uint8_rgb, images_to_chw_list, chw_to_uint8_rgb

__all__ = [
    "OcrBackend",
    "OcrResult",
    "OCR_EXTRA_HINT",
    "RegionOcr",
    "TEXT_REGION_MARGIN",
    "get_ocr",
    "ocr_for_pipeline",
    "text_region",
    "register_ocr_backend",
    "registered_ocr_backends",
]

logger = logging.getLogger("safetext.scoring")

OCR_EXTRA_HINT = "pip install 'safetext[ocr]'"
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class OcrResult:
    """What OCR read in one image.

    Attributes:
        text: The text read; several detected lines are joined with single spaces in reading
            order. Empty when nothing was read.
        confidence: The recognizer's confidence in [0, 1] (the mean over joined lines); 0.0 when
            nothing was read.
    """

    text: str
    confidence: float

    @classmethod
    def from_lines(cls, lines: Iterable[tuple[str, float]]) -> "OcrResult":
        """Join (text, confidence) lines, skipping blank ones; no lines gives ``("", 0.0)``."""
        kept = [(text.strip(), float(score)) for text, score in lines if text and text.strip()]
        if not kept:
            return cls("", 0.0)
        return cls(" ".join(text for text, _ in kept), math.fsum(s for _, s in kept) / len(kept))


class OcrBackend(abc.ABC):
    """Base class of OCR backends: lazy, thread-safe engine loading and image conversion.

    Subclasses set ``name`` and implement :meth:`_load_engine` (import the package and build the
    engine; called once, under a lock) and :meth:`_read_rgb` (run the engine on one uint8 RGB
    array). :class:`safetext.scoring.ocr_backends.RapidOcrBackend` is the reference
    implementation. Calls to one backend object are serialized; use one object per thread for
    parallel reading.
    """

    name: str = "ocr"

    def __init__(self) -> None:
        self._engine: Any = None
        self._load_lock = threading.Lock()
        self._read_lock = threading.Lock()

    @abc.abstractmethod
    def _load_engine(self) -> Any:
        """Build the OCR engine. Raise :class:`BackendError` with the fix when it cannot load."""

    @abc.abstractmethod
    def _read_rgb(self, engine: Any, rgb: np.ndarray) -> OcrResult:
        """Read one uint8 RGB image of shape (H, W, 3)."""

    @property
    def loaded(self) -> bool:
        """Whether the engine has been built (it is built on the first read)."""
        return self._engine is not None

    def _get_engine(self) -> Any:
        engine = self._engine
        if engine is None:
            with self._load_lock:
                if self._engine is None:
                    self._engine = self._load_engine()
                    logger.debug("loaded OCR engine %s", self.name)
                engine = self._engine
        return engine

    def _read_converted(self, rgb: np.ndarray) -> OcrResult:
        engine = self._get_engine()
        with self._read_lock:
            return self._read_rgb(engine, rgb)

    def read(self, image: Any) -> OcrResult:
        """Read the text in one image.

        Args:
            image: A PIL image, a numpy HWC array (uint8, or float in [0, 1]) or a torch CHW/HWC
                tensor (float in [0, 1], or uint8) with 1 or 3 channels.

        Returns:
            An :class:`OcrResult`.

        Raises:
            ValueError: ``image`` is not a supported image.
            BackendError: The OCR engine cannot be loaded.
        """
        return self._read_converted(image_to_uint8_rgb(image, "image"))

    def read_many(self, images: Sequence[Any] | Any) -> list[OcrResult]:
        """Read several images: a list/tuple of images, an NHWC numpy array or an NCHW tensor.

        All images are validated before any is read, so a bad item fails the call up front.

        Returns:
            One :class:`OcrResult` per image, in order.
        """
        converted = [chw_to_uint8_rgb(chw) for chw in images_to_chw_list(images, "images")]
        return [self._read_converted(rgb) for rgb in converted]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(loaded={self.loaded})"


#: Pixels of scene kept around a declared text region when cropping for OCR.
TEXT_REGION_MARGIN = 2

Box = tuple[int, int, int, int]


def text_region(pipe: Any, margin: int = TEXT_REGION_MARGIN) -> Callable[[int, int], Box] | None:
    """Where a pipeline writes its text, when it declares it; ``None`` for the whole image.

    A pipeline declares a region with ``sign_box(height, width, margin=...) -> (top, left, bottom,
    right)`` plus ``sign_size`` / ``default_size`` (the embedded glyph model drawing its sign in a
    scene does). A pipeline whose sign fills the image, or any other pipeline, reads whole images.

    Returns:
        A function from an image's (height, width) to its crop box, or ``None``.
    """
    box = getattr(pipe, "sign_box", None)
    sign, default = getattr(pipe, "sign_size", None), getattr(pipe, "default_size", None)
    if not callable(box) or sign is None or default is None or tuple(sign) == tuple(default):
        return None
    return lambda height, width: tuple(int(v) for v in box(height, width, margin=margin))


class RegionOcr:
    """An OCR backend that reads only a region of each image (e.g. the sign of a scene).

    Args:
        backend: the OCR backend (anything with ``read``; ``read_many`` is built on it).
        region: function from an image's (height, width) to its ``(top, left, bottom, right)`` box.

    Other attributes (``mode``, ``loaded``, ...) are the backend's.
    """

    def __init__(self, backend: Any, region: Callable[[int, int], Box]) -> None:
        self.backend = backend
        self.region = region

    def crop(self, image: Any) -> np.ndarray:
        """The region of ``image`` as a uint8 RGB array."""
        rgb = image_to_uint8_rgb(image, "image")
        top, left, bottom, right = self.region(rgb.shape[0], rgb.shape[1])
        if not (0 <= top < bottom <= rgb.shape[0] and 0 <= left < right <= rgb.shape[1]):
            raise ValueError(
                f"text region {(top, left, bottom, right)} does not fit a {rgb.shape[0]}x{rgb.shape[1]} image; "
                "pass images of the size the pipeline generated"
            )
        return np.ascontiguousarray(rgb[top:bottom, left:right])

    def read(self, image: Any) -> OcrResult:
        return self.backend.read(self.crop(image))

    def read_many(self, images: Sequence[Any] | Any) -> list[OcrResult]:
        crops = [self.crop(chw_to_uint8_rgb(chw)) for chw in images_to_chw_list(images, "images")]
        if hasattr(self.backend, "read_many"):
            return list(self.backend.read_many(crops))
        return [self.backend.read(crop) for crop in crops]

    def __getattr__(self, name: str) -> Any:
        if name in ("backend", "region"):
            raise AttributeError(name)
        return getattr(self.backend, name)

    def __repr__(self) -> str:
        return f"RegionOcr({self.backend!r})"


def ocr_for_pipeline(backend: Any, pipe: Any) -> Any:
    """``backend`` cropped to the pipeline's :func:`text_region`, or ``backend`` itself when it has none.

    Idempotent: a :class:`RegionOcr` is returned unchanged.
    """
    if isinstance(backend, RegionOcr):
        return backend
    region = text_region(pipe)
    return backend if region is None else RegionOcr(backend, region)


_registry: dict[str, Callable[..., OcrBackend]] = {}
_registry_lock = threading.Lock()


def register_ocr_backend(
    name: str, factory: Callable[..., OcrBackend], *, replace: bool = False
) -> None:
    """Make an OCR backend available to :func:`get_ocr` under ``name``.

    Args:
        name: Lower-case name (letters, digits, ``_ . -``), e.g. ``"rapidocr"``.
        factory: Called with the options given to :func:`get_ocr`; returns an
            :class:`OcrBackend`. A backend class works as its own factory.
        replace: Allow replacing a backend already registered under ``name``.

    Raises:
        BackendError: The name is invalid or taken, or the factory is not callable.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise BackendError(
            f"OCR backend name {name!r} is invalid; use lower-case letters, digits, '_', '.', '-'"
        )
    if not callable(factory):
        raise BackendError(f"OCR backend factory for {name!r} is not callable: {factory!r}")
    with _registry_lock:
        if name in _registry and not replace:
            raise BackendError(
                f"OCR backend {name!r} is already registered; pass replace=True to replace it"
            )
        _registry[name] = factory


def registered_ocr_backends() -> tuple[str, ...]:
    """Names of the registered OCR backends, sorted."""
    with _registry_lock:
        return tuple(sorted(_registry))


def get_ocr(name: str = "rapidocr", **options: Any) -> OcrBackend:
    """Create an OCR backend by name. The engine itself loads lazily on the first read.

    Args:
        name: A registered backend name (see :func:`registered_ocr_backends`).
        **options: Passed to the backend, e.g. ``mode="crop"`` for rapidocr.

    Returns:
        A new :class:`OcrBackend`.

    Raises:
        BackendError: The name is unknown, the options are invalid, or the backend's package is
            not installed (the message names the pip extra).
    """
    with _registry_lock:
        factory = _registry.get(name)
        known = ", ".join(sorted(_registry))
    if factory is None:
        raise BackendError(
            f"unknown OCR backend {name!r}; registered backends: {known}. Register others with "
            "safetext.scoring.register_ocr_backend(name, factory)"
        )
    try:
        backend = factory(**options)
    except TypeError as exc:
        raise BackendError(
            f"OCR backend {name!r} does not accept the options {sorted(options)}: {exc}"
        ) from exc
    if not isinstance(backend, OcrBackend):
        raise BackendError(
            f"OCR backend factory for {name!r} returned {type(backend).__name__}, not an OcrBackend"
        )
    return backend


def _rapidocr(**options: Any) -> OcrBackend:
    from safetext.scoring.ocr_backends import RapidOcrBackend

    return RapidOcrBackend(**options)


def _easyocr(**options: Any) -> OcrBackend:
    from safetext.scoring.ocr_backends import EasyOcrBackend

    return EasyOcrBackend(**options)


register_ocr_backend("rapidocr", _rapidocr)
register_ocr_backend("easyocr", _easyocr)
