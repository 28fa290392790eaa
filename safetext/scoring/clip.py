"""CLIP-T: image-text agreement from a CLIP model the user keeps in a local directory.

No pip package ships CLIP weights and safetext never downloads any, so CLIP-T is computed only
when the caller passes a directory saved with ``CLIPModel.save_pretrained`` and
``CLIPProcessor.save_pretrained`` (for example a copy of ``openai/clip-vit-large-patch14``).
Without one, :func:`load_clip_scorer` raises :class:`~safetext.errors.BackendError` with
:data:`CLIP_T_SKIP_MESSAGE`, which benchmark code reports as the reason the column is missing.

Scale: CLIP-T = ``100 * max(cos(image_embedding, text_embedding), 0)``, the convention of
torchmetrics' ``CLIPScore`` and of most text-to-image papers, in [0, 100]. The paper's research
code uses the original CLIPScore weight ``2.5 * max(cos, 0)``, so its numbers equal ours times
0.025 when the same CLIP model is used.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import torch

from safetext.errors import BackendError
from safetext.scoring._images import image_to_uint8_rgb, is_image_batch

__all__ = ["CLIP_T_SKIP_MESSAGE", "ClipScorer", "load_clip_scorer"]

CLIP_T_SKIP_MESSAGE = (
    "CLIP-T skipped: no local CLIP directory was given. Pass one (a directory written by "
    "CLIPModel.save_pretrained and CLIPProcessor.save_pretrained, e.g. a local copy of "
    "openai/clip-vit-large-patch14); safetext never downloads weights."
)


def _features(output: Any) -> torch.Tensor:
    # transformers 4.x returns the projected features; 5.x returns an output whose pooler_output
    # holds them.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipScorer:
    """Compute CLIP-T with a local CLIP model. The model loads lazily (once, thread-safe).

    Args:
        model_dir: Directory with ``config.json`` and weights of a ``CLIPModel`` plus the
            processor files (tokenizer and image processor).
        device: Torch device for the model.
        batch_size: Image-text pairs per forward pass in :meth:`score_many`.

    Raises:
        BackendError: The directory does not exist or has no ``config.json``, or transformers is
            not installed.

    Example:
        >>> scorer = ClipScorer("/models/clip-vit-large-patch14")  # doctest: +SKIP
        >>> scorer.score(image, 'A sign that says "hello".')       # doctest: +SKIP
        27.4
    """

    def __init__(
        self, model_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu", batch_size: int = 16
    ) -> None:
        directory = Path(model_dir).expanduser()
        if not directory.is_dir():
            raise BackendError(
                f"CLIP directory {str(directory)!r} does not exist; pass a local directory saved "
                "with CLIPModel.save_pretrained and CLIPProcessor.save_pretrained"
            )
        if not (directory / "config.json").is_file():
            raise BackendError(
                f"CLIP directory {str(directory)!r} has no config.json; save the model into it with "
                "CLIPModel.save_pretrained(directory)"
            )
        if importlib.util.find_spec("transformers") is None:
            raise BackendError("CLIP-T needs the package transformers; install it with pip install transformers")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BackendError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model_dir = directory
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    from transformers import CLIPModel, CLIPProcessor

                    try:
                        model = CLIPModel.from_pretrained(self.model_dir, local_files_only=True)
                        processor = CLIPProcessor.from_pretrained(self.model_dir, local_files_only=True)
                    except (OSError, ValueError) as exc:
                        raise BackendError(
                            f"cannot load CLIP from {str(self.model_dir)!r} ({type(exc).__name__}: "
                            f"{exc}); the directory needs the model (CLIPModel.save_pretrained) and "
                            "the processor (CLIPProcessor.save_pretrained)"
                        ) from exc
                    self._loaded = (model.to(self.device).eval(), processor)
                loaded = self._loaded
        return loaded

    def cosine_many(self, images: Sequence[Any] | Any, texts: Sequence[str]) -> list[float]:
        """Cosine similarity of each image's CLIP embedding with its text's, in [-1, 1].

        Args:
            images: A batch (list/tuple, NHWC numpy array, NCHW tensor) of accepted images.
            texts: One text per image; longer texts are truncated to the model's context.

        Returns:
            One cosine per pair, in order.
        """
        if not is_image_batch(images):
            raise ValueError("images must be a batch (list, NHWC array or NCHW tensor); use score() for one image")
        if isinstance(texts, str) or any(not isinstance(text, str) for text in texts):
            raise ValueError("texts must be a list of strings, one per image")
        rgb = [image_to_uint8_rgb(image, f"images[{index}]") for index, image in enumerate(images)]
        if len(rgb) != len(texts):
            raise ValueError(f"got {len(rgb)} images but {len(texts)} texts; pass one text per image")
        from PIL import Image

        model, processor = self._load()
        max_length = model.config.text_config.max_position_embeddings
        cosines: list[float] = []
        for start in range(0, len(rgb), self.batch_size):
            pil = [Image.fromarray(array) for array in rgb[start : start + self.batch_size]]
            batch_texts = list(texts[start : start + self.batch_size])
            inputs = processor(
                text=batch_texts,
                images=pil,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
            )
            with torch.inference_mode():
                pixel_values = inputs["pixel_values"].to(self.device)
                image_features = _features(model.get_image_features(pixel_values=pixel_values))
                text_features = _features(
                    model.get_text_features(
                        input_ids=inputs["input_ids"].to(self.device),
                        attention_mask=inputs["attention_mask"].to(self.device),
                    )
                )
                similarity = torch.nn.functional.cosine_similarity(
                    image_features.double(), text_features.double(), dim=-1
                )
            cosines.extend(float(value) for value in similarity.cpu())
        return cosines

    def score_many(self, images: Sequence[Any] | Any, texts: Sequence[str]) -> list[float]:
        """CLIP-T of each image-text pair: ``100 * max(cosine, 0)``, in [0, 100]."""
        return [100.0 * max(cosine, 0.0) for cosine in self.cosine_many(images, texts)]

    def score(self, image: Any, text: str) -> float:
        """CLIP-T of one image and one text: ``100 * max(cosine, 0)``, in [0, 100]."""
        return self.score_many([image], [text])[0]

    def __repr__(self) -> str:
        return f"ClipScorer(model_dir={str(self.model_dir)!r}, loaded={self._loaded is not None})"


def load_clip_scorer(model_dir: str | os.PathLike[str] | None, **options: Any) -> ClipScorer:
    """Create a :class:`ClipScorer`, or explain why CLIP-T is skipped.

    Args:
        model_dir: A local CLIP directory, or ``None`` when the user gave none.
        **options: Passed to :class:`ClipScorer` (``device``, ``batch_size``).

    Raises:
        BackendError: ``model_dir`` is ``None`` (message :data:`CLIP_T_SKIP_MESSAGE`) or invalid.
    """
    if model_dir is None or (isinstance(model_dir, str) and not model_dir.strip()):
        raise BackendError(CLIP_T_SKIP_MESSAGE)
    return ClipScorer(model_dir, **options)
