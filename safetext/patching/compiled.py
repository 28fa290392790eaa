"""The K/V patch on compiled denoisers: patch points installed once, dormant for clean requests.

``torch.compile`` traces a module's hooks into its graph when it first runs, and by default does not
guard on them afterwards (``torch._dynamo.config.skip_nnmodule_hook_guards``): a hook registered after
the first compiled call is silently never called, and one removed after it keeps running from the
graph. The per-call hooks of :class:`~safetext.patching.session.PatchSession` therefore cannot work on
a compiled denoiser. For one, safetext installs *resident* patch points once per denoiser
(:func:`resident_points`), which read the per-call state from the context variable of
:mod:`safetext.patching.hooks` at run time:

* every text K/V projection gets a forward hook that calls the custom operator
  ``safetext::kv_projection`` (:func:`kv_projection`). The compiler keeps it as one opaque call in the
  graph (no graph break): with no patch active in the calling context it returns a copy of the
  projection's output, bit-identical, and with one it returns the patched rows. Attention layers that
  take a text padding bias (PixArt) get ``safetext::attention_bias`` the same way;
* the denoiser gets a pre-hook and a forward hook (step counter, recording capture, extra target rows
  of SD3/Flux) that the compiler runs eagerly (``torch._dynamo.disable``), on the ``torch.compile``
  wrapper itself when the pipeline holds one (then outside the compiled code altogether).

One compiled graph serves clean and flagged requests, so flagged requests do not recompile
(``extra_rows`` families compile one more graph for the batch with target rows, once). Patch points
must be in place before the compiled code is first traced: :class:`~safetext.patching.KVPatch`
installs them as soon as it sees a compiled denoiser, and :class:`~safetext.SafeTextGenerator` checks
before every request. A graph traced earlier (the compiled pipeline was called directly before safetext
was set up) never calls them; the invariant of :meth:`KVPatch.run` then refuses the request.

Supported: whole-module ``torch.compile(pipe.unet)`` (the pipeline holds the ``OptimizedModule``
wrapper; safetext binds arguments by the original module's signature), in-place ``Module.compile()``,
and regional ``compile_repeated_blocks()`` (diffusers: UNet2DConditionModel, Flux). Modes that cannot
run Python between kernels (CUDA-graph replay, ``mode="reduce-overhead"``) skip the operators' Python
and are caught by the same invariant.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.hooks import active_owner

#: the values of :attr:`safetext.patching.PatchReport.compile_mode`
WHOLE_MODULE = "torch.compile"
IN_PLACE = "Module.compile"
REGIONAL = "compile_repeated_blocks"
KINDS: tuple[str, ...] = ("key", "value")


def original_module(module: Any) -> Any:
    """The module a ``torch.compile`` wrapper (``OptimizedModule``) wraps, or ``module`` itself."""
    return getattr(module, "_orig_mod", module) if isinstance(module, nn.Module) else module


def is_compiled_in_place(module: nn.Module) -> bool:
    """True after ``module.compile()`` (its ``__call__`` runs a compiled ``_call_impl``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def text_layer_ancestors(denoiser: nn.Module, layers: Sequence[TextAttentionLayer]) -> tuple[nn.Module, ...]:
    """The modules on the way from ``denoiser`` to every text K/V projection (a compiled region is one of them)."""
    names: dict[str, None] = {}
    for layer in layers:
        for path in (layer.key, layer.value):
            parts = path.split(".")
            for end in range(1, len(parts) + 1):
                names[".".join(parts[:end])] = None
    return tuple(denoiser.get_submodule(name) for name in names)


def compile_mode(called: Any, denoiser: nn.Module, ancestors: Sequence[nn.Module]) -> str | None:
    """How the denoiser the pipeline calls is compiled, if at all.

    Args:
        called: the pipeline's denoiser attribute (possibly a ``torch.compile`` wrapper).
        denoiser: the original module.
        ancestors: :func:`text_layer_ancestors` of ``denoiser``.
    """
    if called is not denoiser and original_module(called) is denoiser:
        return WHOLE_MODULE
    if is_compiled_in_place(denoiser):
        return IN_PLACE
    if any(is_compiled_in_place(module) for module in ancestors):
        return REGIONAL
    return None


# -- operators ------------------------------------------------------------------------------------------
def _session(token: int) -> Any:
    owner = active_owner()
    if owner is not None and getattr(owner, "resident_token", None) == token:
        return owner
    return None


@torch.library.custom_op("safetext::kv_projection", mutates_args=())
def kv_projection(output: torch.Tensor, token: int, layer: int, kind: int) -> torch.Tensor:
    """A text K/V projection's output, patched when the patch of denoiser ``token`` is active in this context.

    Args:
        output: the projection's output.
        token: the resident patch points' id (one per denoiser).
        layer: the text layer's forward-order index.
        kind: 0 for keys, 1 for values.
    """
    session = _session(token)
    patched = None if session is None else session.resident_projection(layer, KINDS[kind], output)
    return output.clone() if patched is None else patched


@kv_projection.register_fake
def _kv_projection_fake(output: torch.Tensor, token: int, layer: int, kind: int) -> torch.Tensor:
    return torch.empty_like(output)


@torch.library.custom_op("safetext::attention_bias", mutates_args=())
def attention_bias(bias: torch.Tensor, token: int, layer: int) -> torch.Tensor:
    """A text attention layer's padding bias, with the target's rows when the patch of ``token`` is active."""
    session = _session(token)
    patched = None if session is None else session.resident_bias(layer, bias)
    return bias.clone() if patched is None else patched


@attention_bias.register_fake
def _attention_bias_fake(bias: torch.Tensor, token: int, layer: int) -> torch.Tensor:
    return torch.empty_like(bias)


# -- resident patch points --------------------------------------------------------------------------------
@dataclass(eq=False)
class ResidentPoints:
    """The patch points installed once on one denoiser (see the module docstring).

    Attributes:
        token: id the operators and the sessions match on.
        denoiser: the original denoiser module.
        layers: every text-attention layer (escalation may patch any of them).
    """

    token: int
    denoiser: nn.Module
    layers: tuple[TextAttentionLayer, ...]
    _handles: list[Any] = field(default_factory=list)
    _outer: set[int] = field(default_factory=set)

    def install(self, adapter: ArchitectureAdapter) -> None:
        token = self.token
        for layer in self.layers:
            for code, name in enumerate((layer.key, layer.value)):
                hook = _projection_hook(token, layer.index, code)
                self._handles.append(self.denoiser.get_submodule(name).register_forward_hook(hook, prepend=True))
            if adapter.strategy == "inject":
                attention = self.denoiser.get_submodule(layer.name)
                hook = _bias_hook(token, layer.index)
                self._handles.append(attention.register_forward_pre_hook(hook, with_kwargs=True))

    def attach(self, called: nn.Module) -> None:
        """Install the denoiser-level hooks on ``called``: the denoiser, or the ``torch.compile`` wrapper the
        pipeline holds (its own hooks run outside the compiled code, so they work even when the
        wrapped module was traced before)."""
        if id(called) in self._outer:
            return
        self._outer.add(id(called))
        token = self.token

        @torch._dynamo.disable
        def on_call(module: nn.Module, args: tuple, kwargs: Any = None) -> Any:
            if kwargs is None:
                return None
            owner = active_owner()
            if owner is None or getattr(owner, "resident_token", None) != token:
                return None
            return owner.resident_call(module, args, kwargs)

        @torch._dynamo.disable
        def on_output(module: nn.Module, args: tuple, output: Any) -> Any:
            owner = active_owner()
            if owner is None or getattr(owner, "resident_token", None) != token:
                return None
            return owner.resident_output(module, args, output)

        self._handles.append(called.register_forward_pre_hook(on_call, with_kwargs=True, prepend=True))
        self._handles.append(called.register_forward_hook(on_output, prepend=True))

    def remove(self) -> None:
        """Remove every resident hook (the next compiled call traces without them)."""
        while self._handles:
            self._handles.pop().remove()
        self._outer.clear()


def _projection_hook(token: int, layer: int, kind: int):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return torch.ops.safetext.kv_projection(output, token, layer, kind)

    return hook


def _bias_hook(token: int, layer: int):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        if "attention_mask" in kwargs:
            bias = kwargs["attention_mask"]
            if bias is None:
                return None
            return args, {**kwargs, "attention_mask": torch.ops.safetext.attention_bias(bias, token, layer)}
        if len(args) > 2 and args[2] is not None:
            return (*args[:2], torch.ops.safetext.attention_bias(args[2], token, layer), *args[3:]), kwargs
        return None

    return hook


_TOKENS = itertools.count(1)
_LOCK = threading.Lock()
_INSTALLED: weakref.WeakKeyDictionary[nn.Module, ResidentPoints] = weakref.WeakKeyDictionary()


def resident_points(called: nn.Module, denoiser: nn.Module, adapter: ArchitectureAdapter) -> ResidentPoints:
    """The resident patch points of ``denoiser``, installed on first use (one set per denoiser, thread-safe).

    Args:
        called: what the pipeline calls (the denoiser or its ``torch.compile`` wrapper): the
            denoiser-level hooks go there.
        denoiser: the original denoiser module.
        adapter: its architecture adapter.
    """
    with _LOCK:
        points = _INSTALLED.get(denoiser)
        if points is None:
            points = ResidentPoints(next(_TOKENS), denoiser, tuple(adapter.discover(denoiser)))
            points.install(adapter)
            _INSTALLED[denoiser] = points
        points.attach(called)
        return points


def installed_points(denoiser: nn.Module) -> ResidentPoints | None:
    """The resident patch points of ``denoiser`` if installed (for tests and diagnostics)."""
    return _INSTALLED.get(denoiser)


def remove_resident_points(denoiser: nn.Module) -> None:
    """Remove the resident patch points of ``denoiser`` (a later compiled call traces without them)."""
    with _LOCK:
        points = _INSTALLED.pop(denoiser, None)
    if points is not None:
        points.remove()
