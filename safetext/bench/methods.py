"""The methods a toxicity benchmark compares, behind one small interface and one registry.

Every method gets the same prompt, the policy's verdict on it and a generator seeded per prompt,
and returns an image (or a refusal). Built-in methods:

* ``unguarded``: the raw pipeline.
* ``safetext``: :class:`~safetext.generator.SafeTextGenerator` with the policy and the model's layer
  map (the product).
* ``negative_prompt``: the raw pipeline with the negative prompt ``text "<word>"`` for each flagged
  word (what a user would try first).
* ``prompt_swap``: the raw pipeline on the sanitized prompt (the word is gone, and so is the image).
* ``block``: refuse flagged prompts (no image: 0 toxic text, similarity undefined).
* ``all_layers``: K/V injection of the sanitized prompt on every text-attention layer, from the layer
  map's start step (what localization buys over patching everything).

Prompts the policy does not flag run the raw pipeline in every method, so on clean prompts each
method must reproduce the unguarded image bit for bit. Add a method with one call::

    register_method("my_method", MyMethod)
"""

from __future__ import annotations

import abc
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from safetext.errors import PolicyViolation
from safetext.policy.verdict import Verdict

__all__ = [
    "BenchMethod",
    "DEFAULT_METHODS",
    "MethodContext",
    "MethodResult",
    "create_method",
    "negative_prompt_for",
    "register_method",
    "registered_methods",
]

DEFAULT_METHODS = ("unguarded", "safetext", "negative_prompt", "prompt_swap", "block", "all_layers")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class MethodContext:
    """What every method needs, built once per benchmark process.

    Attributes:
        pipe: the diffusers pipeline.
        policy: a loaded ``safetext.policy.Policy``.
        layer_map: the :class:`~safetext.patching.LayerMap` used by ``safetext`` (its start step is also
            the start of ``all_layers``).
        call_kwargs: pipeline arguments shared by every call (``num_inference_steps``, ``guidance_scale``
            ...); ``output_type`` is forced to ``"np"``.
    """

    pipe: Any
    policy: Any
    layer_map: Any
    call_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodResult:
    """One method's output for one prompt.

    Attributes:
        image: (H, W, 3) float32 in [0, 1], or ``None`` when refused.
        refused: the method refused to generate.
        patched: the method changed the generation (patch, negative prompt, swapped prompt).
    """

    image: np.ndarray | None
    refused: bool = False
    patched: bool = False


class BenchMethod(abc.ABC):
    """Base class of benchmark methods. ``UnguardedMethod`` is the reference implementation.

    Subclasses set ``name`` and ``description`` and implement :meth:`generate`.

    Args:
        context: the shared :class:`MethodContext`.
    """

    name: str = ""
    description: str = ""

    def __init__(self, context: MethodContext) -> None:
        self.context = context

    def call(self, prompt: str, generator: torch.Generator, **overrides: Any) -> np.ndarray:
        """One raw pipeline call; the first image as (H, W, 3) float32."""
        kwargs = {**self.context.call_kwargs, **overrides, "output_type": "np"}
        output = self.context.pipe(prompt=prompt, generator=generator, **kwargs)
        return _first_image(output)

    @abc.abstractmethod
    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        """Generate for ``prompt`` (``verdict`` is the policy's scan of it)."""


def _first_image(output: Any) -> np.ndarray:
    images = output.images if hasattr(output, "images") else output[0]
    image = images[0]
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = np.transpose(image, (1, 2, 0))
    return np.asarray(image, dtype=np.float32)


class UnguardedMethod(BenchMethod):
    name = "unguarded"
    description = "the raw pipeline"

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        return MethodResult(self.call(prompt, generator))


class SafetextMethod(BenchMethod):
    name = "safetext"
    description = "SafeTextGenerator: K/V patch of the layer map's layers"

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        from safetext.generator import SafeTextGenerator

        self.guard = SafeTextGenerator(context.pipe, policy=context.policy, layer_map=context.layer_map)

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        kwargs = {**self.context.call_kwargs, "output_type": "np"}
        try:
            output = self.guard(prompt=prompt, generator=generator, **kwargs)
        except PolicyViolation:
            return MethodResult(None, refused=True)
        return MethodResult(_first_image(output), patched=bool(output.verdict.details.get("patched_prompts")))


def negative_prompt_for(verdict: Verdict) -> str:
    """``text "<word>"`` for each flagged word, comma-separated (empty when nothing is flagged)."""
    words = dict.fromkeys(f.text for f in verdict.findings if verdict.flagged and f.action.severity >= 2)
    return ", ".join(f'text "{word}"' for word in words)


class NegativePromptMethod(BenchMethod):
    name = "negative_prompt"
    description = 'negative prompt text "<word>" for each flagged word'

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        if "negative_prompt" not in inspect.signature(context.pipe.__call__).parameters:
            raise TypeError(
                f"{type(context.pipe).__name__}.__call__ has no negative_prompt argument, so the negative_prompt "
                "method cannot run on it; leave it out with --methods"
            )

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        negative = negative_prompt_for(verdict)
        if not negative:
            return MethodResult(self.call(prompt, generator))
        return MethodResult(self.call(prompt, generator, negative_prompt=negative), patched=True)


class PromptSwapMethod(BenchMethod):
    name = "prompt_swap"
    description = "generate the sanitized prompt"

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        swapped = verdict.sanitized_prompt if verdict.flagged and verdict.sanitized_prompt else prompt
        return MethodResult(self.call(swapped, generator), patched=swapped != prompt)


class BlockMethod(BenchMethod):
    name = "block"
    description = "refuse flagged prompts"

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        if verdict.flagged:
            return MethodResult(None, refused=True)
        return MethodResult(self.call(prompt, generator))


class AllLayersMethod(BenchMethod):
    name = "all_layers"
    description = "K/V injection on every text-attention layer, from the layer map's start step"

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        from safetext.patching import KVPatch

        self.patch = KVPatch(context.pipe, layers=None, start_fraction=context.layer_map.start_fraction)

    def generate(self, prompt: str, verdict: Verdict, generator: torch.Generator) -> MethodResult:
        if not verdict.flagged or verdict.sanitized_prompt == prompt:
            return MethodResult(self.call(prompt, generator))
        kwargs = {**self.context.call_kwargs, "output_type": "np"}
        output, _ = self.patch.generate(target_prompt=verdict.sanitized_prompt, prompt=prompt, generator=generator, **kwargs)
        return MethodResult(_first_image(output), patched=True)


_REGISTRY: dict[str, Callable[[MethodContext], BenchMethod]] = {}


def register_method(name: str, factory: Callable[[MethodContext], BenchMethod], *, replace: bool = False) -> None:
    """Make a method available to :func:`create_method` (and ``--methods``) under ``name``.

    Args:
        name: lower_snake_case name.
        factory: called with the :class:`MethodContext`; a :class:`BenchMethod` subclass works as its own.
        replace: allow replacing a method registered under ``name``.

    Raises:
        ValueError: the name is invalid or taken, or the factory is not callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"method name {name!r} is invalid; use lower_snake_case (e.g. 'my_method')")
    if not callable(factory):
        raise ValueError(f"method factory for {name!r} is not callable: {factory!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"method {name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = factory


def registered_methods() -> tuple[str, ...]:
    """Registered method names: the built-ins in benchmark order, then any others sorted."""
    builtin = [name for name in DEFAULT_METHODS if name in _REGISTRY]
    return tuple(builtin + sorted(set(_REGISTRY) - set(builtin)))


def create_method(name: str, context: MethodContext) -> BenchMethod:
    """Build a registered method for ``context``.

    Raises:
        ValueError: the name is not registered.
    """
    if name not in _REGISTRY:
        raise ValueError(f"benchmark method {name!r} is unknown; choose from {', '.join(registered_methods())}")
    return _REGISTRY[name](context)


for _method in (UnguardedMethod, SafetextMethod, NegativePromptMethod, PromptSwapMethod, BlockMethod, AllLayersMethod):
    register_method(_method.name, _method)
