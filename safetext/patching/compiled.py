"""The K/V patch on compiled denoisers: patch points installed once, dormant for clean requests.

``torch.compile`` traces a module's hooks into its graph when it first runs, and by default does not
guard on them afterwards (``torch._dynamo.config.skip_nnmodule_hook_guards``): a hook registered after
the first compiled call is silently never called. Worse, with nn modules inlined (the default), one
graph serves every instance of the same architecture, so a hook on one pipeline's UNet is skipped when
another instance was traced first. The per-call hooks of :class:`~safetext.patching.session.PatchSession`
therefore cannot work on a compiled denoiser. For one, safetext installs *resident* patch points once
per denoiser (:func:`resident_points`), which read the per-call state from the context variable of
:mod:`safetext.patching.hooks` at run time:

* every text K/V projection (outside a routed region, see below) becomes an instance of a subclass of
  its own class (same name, module, weights and state dict) whose ``forward`` passes the output through
  the custom operator
  ``safetext::kv_projection`` (:func:`kv_projection`). The compiler guards on a submodule's type, so a
  graph traced without the point is never reused for a module that has it; and it keeps the operator as
  one opaque call (no graph break). With no patch active in the calling context the operator returns a
  copy of the projection's output, bit-identical; with one, the patched rows. Attention modules get
  ``safetext::attention_bias`` the same way for their text padding bias (PixArt);
* the denoiser gets a pre-hook and a forward hook (step counter, recording capture, extra target rows
  of SD3/Flux) that the compiler runs eagerly (``torch._dynamo.disable``), on the ``torch.compile``
  wrapper itself when the pipeline holds one (then outside the compiled code altogether);
* with regional compilation (the loop over the blocks runs eagerly) the blocks and the output norm of
  an ``extra_rows`` family (SD3, Flux) get *exit points* for the early exit of
  :mod:`safetext.patching.adapters.joint`: a block compiled in place has its compiled call wrapped
  (the wrapper runs outside the compiled code, before and after it), an eager one a pre-hook and a
  forward hook. They cut the target rows after the last mapped block for a flagged request and pass
  everything through otherwise. A denoiser compiled as a whole runs that loop inside its graph: no exit
  points, the target rows run through every block (the reason is in the verdict).

With regional compilation, and wherever else the user's compiled code is a callable safetext can stand in
front of (a compiled ``forward``, a submodule compiled out of place and assigned back as an
``OptimizedModule``), the user's compiled modules carry no patch point at all: each compiled region
on the way to a text projection gets a router in front of its compiled call (:class:`_Route`), which runs
the user's compiled call for a request with no patch active in its context (exactly the graph the
compiled raw pipeline runs, so clean output is bit-identical to it) and the region's *flagged variant*
otherwise: a shallow copy of the region (shared parameters) whose projections carry the patch points,
compiled with the user's ``torch.compile`` options, traced on the first flagged request and cached. (A
region with a ``forward`` set on an instance on the way, a diffusers or accelerate hook, keeps the patch
points on the user's modules: its variant would call the user's modules.) Whole-module compilation
keeps one graph for both: the operator returns a copy for clean requests, and clean output has been
bit-identical to the compiled raw pipeline in every configuration measured
(``benchmarks/results/compiled_overhead.md``), though the compiler is free to fuse differently around it.

Flagged requests do not recompile (``extra_rows`` families compile one more graph for the batch with
target rows, once; regional compilation one flagged variant per kind of block). The points are
installed as soon as :class:`~safetext.patching.KVPatch` sees a compiled denoiser, and
:class:`~safetext.SafeTextGenerator` checks before every request, clean ones included. Should a compiled
graph still skip them, the invariant of :meth:`KVPatch.run` refuses the request.

Supported: whole-module ``torch.compile(pipe.unet)`` (the pipeline holds the ``OptimizedModule``
wrapper; safetext binds arguments by the original module's signature) and in-place ``Module.compile()``
(in-graph points); routed: a compiled ``forward`` of the denoiser (``unet.forward =
torch.compile(unet.forward)``: the router stands in the ``forward`` attribute, the flagged variant is a
shallow copy of the whole denoiser), regional ``compile_repeated_blocks()`` (diffusers:
UNet2DConditionModel, Flux) and ``block.compile()``, and any submodule on the way to the text layers
compiled in place, given a compiled ``forward``, or compiled out of place and assigned back
(``unet.down_blocks[1] = torch.compile(unet.down_blocks[1])``, attention modules wrapped in
``OptimizedModule``: the router stands in the wrapper's ``forward``, the variant copies the module it
wraps). Refused before generating: a text K/V projection whose own ``forward`` is replaced
(:func:`check_resident_supported`). Modes that cannot
run Python between kernels (CUDA-graph replay, ``mode="reduce-overhead"``) skip the operators' Python
and are caught by the same invariant.
"""

from __future__ import annotations

import functools
import itertools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from safetext.errors import PatchError
from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.hooks import active_owner

#: the values of :attr:`safetext.patching.PatchReport.compile_mode`
WHOLE_MODULE = "torch.compile"
IN_PLACE = "Module.compile"
REGIONAL = "compile_repeated_blocks"
COMPILED_FORWARD = "compiled forward"
#: the modes whose compiled callables get routers (clean requests run the user's compiled graphs unchanged)
ROUTED = (REGIONAL, COMPILED_FORWARD)
KINDS: tuple[str, ...] = ("key", "value")


def original_module(module: Any) -> Any:
    """The module a ``torch.compile`` wrapper (``OptimizedModule``) wraps, or ``module`` itself."""
    return getattr(module, "_orig_mod", module) if isinstance(module, nn.Module) else module


def is_compiled_in_place(module: nn.Module) -> bool:
    """True after ``module.compile()`` (its ``__call__`` runs a compiled ``_call_impl``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def has_compiled_forward(module: nn.Module) -> bool:
    """True after ``module.forward = torch.compile(module.forward)``, and for a ``torch.compile`` wrapper
    (``OptimizedModule``, whose ``forward`` is the compiled ``__call__`` of the module it wraps)."""
    return _is_compiled_call(vars(module).get("forward"))


def _unwrapped(call: Any) -> Any:
    """``call`` under any wrapper of safetext's (routers, exit points)."""
    while hasattr(call, "_safetext_inner"):
        call = call._safetext_inner
    return call


def _is_compiled_call(call: Any) -> bool:
    return hasattr(_unwrapped(call), "_torchdynamo_orig_callable")


def text_layer_ancestors(denoiser: nn.Module, layers: Sequence[TextAttentionLayer]) -> tuple[nn.Module, ...]:
    """The modules on the way from ``denoiser`` to every text K/V projection (a compiled region is one of them)."""
    names: dict[str, None] = {}
    for layer in layers:
        for path in (layer.key, layer.value):
            parts = path.split(".")
            for end in range(1, len(parts) + 1):
                names[".".join(parts[:end])] = None
    lookup = _Lookup(denoiser)
    return tuple(lookup(name) for name in names)


class _Lookup:
    """Submodules of ``root`` by dotted name, each prefix resolved once (per refresh).

    ``get_submodule`` checks every step of its path (~10 us a name); a refresh runs before every request
    and resolves every text K/V projection and its ancestors, so the walk is shared between names.
    """

    def __init__(self, root: nn.Module) -> None:
        self._found: dict[str, nn.Module] = {"": root}

    def __call__(self, name: str) -> nn.Module:
        found = self._found.get(name)
        if found is None:
            head, _, last = name.rpartition(".")
            parent = self(head)
            found = parent._modules.get(last)
            if found is None:
                found = parent.get_submodule(last)  # not a registered child: the usual lookup (and its error)
            self._found[name] = found
        return found


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
    if has_compiled_forward(denoiser):
        return COMPILED_FORWARD
    if any(is_compiled_in_place(module) or has_compiled_forward(module) for module in ancestors):
        return REGIONAL
    return None


# -- operators ------------------------------------------------------------------------------------------
def _session() -> Any:
    owner = active_owner()
    return owner if getattr(owner, "resident_token", None) is not None else None


def kv_projection(output: torch.Tensor, layer: torch.Tensor, kind: int) -> torch.Tensor:
    """``safetext::kv_projection``: a text K/V projection's output, patched when a resident patch is active.

    Args:
        output: the projection's output.
        layer: the text layer's forward-order index, a 0-dim CPU tensor: the compiler takes a module's tensor
            attribute as a graph input, but specializes on an int attribute, which would trace one graph
            per layer for blocks that are otherwise the same (and exhaust dynamo's recompile limit).
        kind: 0 for keys, 1 for values.

    Returns:
        A copy of ``output`` (no patch active in the calling context: bit-identical), or the patched rows.
        Never ``output`` itself: the operator's schema declares no alias, so the compiler may reuse either.
    """
    session = _session()
    patched = None if session is None else session.resident_projection(int(layer), KINDS[kind], output)
    return output.clone() if patched is None else patched


def attention_bias(bias: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """``safetext::attention_bias``: a text attention layer's padding bias, with the target's rows when a
    resident patch is active (a copy of ``bias`` otherwise)."""
    session = _session()
    patched = None if session is None else session.resident_bias(int(layer), bias)
    return bias.clone() if patched is None else patched


@functools.cache
def _index(index: int) -> torch.Tensor:
    """The operators' ``layer`` argument for layer ``index`` (one shared, never written tensor per index)."""
    return torch.tensor(index)


def _fake(tensor: torch.Tensor, *_: Any) -> torch.Tensor:
    return torch.empty_like(tensor)


# The operators are defined on a torch.library.Library with one CompositeExplicitAutograd kernel each rather
# than through torch.library.custom_op: its Python wrapper (autograd and dispatch layers around the kernel)
# costs ~20 us per call, paid on every text K/V projection of every compiled step, clean requests included;
# a plain library kernel costs ~5 us (measured on this machine's CPU). The compiler treats both alike: one
# opaque call with a fake (meta) implementation, no graph break. ``cudagraph_unsafe`` keeps them out of CUDA
# graph replays (whose Python would not run).
_LIBRARY = torch.library.Library("safetext", "DEF")
_LIBRARY.define("kv_projection(Tensor output, Tensor layer, int kind) -> Tensor", tags=(torch.Tag.cudagraph_unsafe,))
_LIBRARY.define("attention_bias(Tensor bias, Tensor layer) -> Tensor", tags=(torch.Tag.cudagraph_unsafe,))
_LIBRARY.impl("kv_projection", kv_projection, "CompositeExplicitAutograd")
_LIBRARY.impl("attention_bias", attention_bias, "CompositeExplicitAutograd")
torch.library.register_fake("safetext::kv_projection", _fake, lib=_LIBRARY)
torch.library.register_fake("safetext::attention_bias", _fake, lib=_LIBRARY)


# -- patch points: a subclass per module class ----------------------------------------------------------
@functools.cache
def _projection_class(cls: type) -> type:
    """``cls`` whose ``forward`` passes its output through :func:`kv_projection` (same name and module).

    The compiler guards on a submodule's type, so a graph traced for the plain class (another instance
    of the model compiled without safetext, or this one before the patch points existed) is never reused
    for a module carrying the patch point: it is traced again, with the operator in it.
    """

    base_forward = cls.forward  # a plain function: the compiler traces it (not a method looked up on a class)

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        output = base_forward(self, *args, **kwargs)
        return torch.ops.safetext.kv_projection(output, self._safetext_layer, self._safetext_kind)

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__, "_safetext_base": cls})


@functools.cache
def _attention_class(cls: type) -> type:
    """``cls`` whose ``forward`` passes a given ``attention_mask`` through :func:`attention_bias`."""

    base_forward = cls.forward

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = torch.ops.safetext.attention_bias(kwargs["attention_mask"], self._safetext_layer)
        elif len(args) > 2 and args[2] is not None:
            args = (*args[:2], torch.ops.safetext.attention_bias(args[2], self._safetext_layer), *args[3:])
        return base_forward(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__, "_safetext_base": cls})


def unpatched_forward(module: nn.Module) -> Any:
    """``module.forward`` without its patch point (the target K/V are computed through it)."""
    base = getattr(type(module), "_safetext_base", None)
    return module.forward if base is None else base.forward.__get__(module)


def _restore(module: nn.Module) -> None:
    for child in module.modules():
        base = getattr(type(child), "_safetext_base", None)
        if base is not None:
            object.__setattr__(child, "__class__", base)


def _swap(module: nn.Module, make: Any, **attributes: Any) -> None:
    _restore(module)  # a module wrapped since (peft LoRA): only the outermost one carries the point
    for name, value in attributes.items():
        object.__setattr__(module, name, value)
    object.__setattr__(module, "__class__", make(type(module)))


# -- flagged variants: clean requests run the user's compiled regions unchanged -------------------------------
def _route_inner(module: nn.Module, attribute: str = "_compiled_call_impl") -> Any:
    """The user's compiled call held in ``attribute`` of ``module``, under any wrapper of safetext's."""
    return _unwrapped(vars(module).get(attribute))


def _route_attribute(module: nn.Module) -> str | None:
    """Where ``module`` holds a compiled call a router can stand in front of, or ``None``.

    ``"_compiled_call_impl"`` after ``module.compile()``; ``"forward"`` for a ``torch.compile`` wrapper
    assigned in place of a submodule (``OptimizedModule``: its ``forward`` compiles the wrapped module's
    ``__call__``) and after ``module.forward = torch.compile(module.forward)`` (a compiled bound ``forward``
    of ``module`` itself; any other compiled function cannot be rebuilt on a flagged variant).
    """
    if is_compiled_in_place(module) and _dynamo_context(_route_inner(module)) is not None:
        return "_compiled_call_impl"
    inner = _route_inner(module, "forward")
    if _dynamo_context(inner) is None:
        return None
    wrapper = isinstance(module, torch._dynamo.eval_frame.OptimizedModule)
    return "forward" if wrapper or getattr(inner._torchdynamo_orig_callable, "__self__", None) is module else None


def _inside_wrapper(name: str) -> str:
    """A name relative to an ``OptimizedModule``, relative to the module it wraps."""
    return "" if name == "_orig_mod" else name.removeprefix("_orig_mod.")


def _dynamo_context(compiled: Any) -> Any:
    """The ``torch.compile`` context (backend and options) a compiled function was made with, or ``None``."""
    code, closure = getattr(compiled, "__code__", None), getattr(compiled, "__closure__", None)
    if code is None or closure is None or not hasattr(compiled, "_torchdynamo_orig_callable"):
        return None
    cell = dict(zip(code.co_freevars, closure)).get("self")
    context = None if cell is None else cell.cell_contents
    return context if isinstance(context, torch._dynamo.eval_frame._TorchDynamoContext) else None


def _variant(module: nn.Module, points: dict[str, tuple[Any, dict[str, Any]]]) -> nn.Module:
    """A shallow copy of ``module`` whose submodules named in ``points`` (relative names, ``""`` for
    ``module`` itself) carry their patch points: same parameters, buffers, hooks and other children
    (shared, not copied), own module dicts along the way, and no compiled call of its own."""
    copy = object.__new__(type(module))
    state = dict(vars(module))
    state["_modules"] = dict(module._modules)
    state.pop("_compiled_call_impl", None)
    if _is_compiled_call(state.get("forward")):
        state.pop("forward")  # the copy runs its class's forward, traced into the variant's graph
    object.__setattr__(copy, "__dict__", state)
    object.__setattr__(copy, "_compiled_call_impl", None)
    children: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {}
    for name, point in points.items():
        if name:
            head, _, rest = name.partition(".")
            children.setdefault(head, {})[rest] = point
    for head, sub in children.items():
        copy._modules[head] = _variant(module._modules[head], sub)
    if "" in points:
        make, attributes = points[""]
        state.update(attributes)
        object.__setattr__(copy, "__class__", make(getattr(type(module), "_safetext_base", type(module))))
    return copy


class _Route:
    """A compiled region's call, chosen per request (regional compilation, compiled submodules and forwards).

    The user's module keeps its compiled call and no patch point, so a clean request runs exactly the
    graph the compiled raw pipeline runs, whatever the compiler makes of a patch point in a graph. A
    request with a resident patch active in its context runs the region's *flagged variant* instead:
    a shallow copy of the region whose text K/V projections carry the patch points (:func:`_variant`),
    compiled with the user's own ``torch.compile`` context; traced on its first flagged call, then
    cached beside the clean graph. The choice is made per call from the context variable, outside the
    compiled code: concurrent clean and flagged requests never see each other's choice.

    The router takes the place of the compiled call in ``attribute`` (:func:`_route_attribute`): the
    ``_compiled_call_impl`` of a module compiled in place (the variant compiles its ``_call_impl``), the
    ``forward`` of an ``OptimizedModule`` (the variant of the wrapped module, its ``__call__``) or a compiled
    ``forward`` (the variant's own ``forward``).
    """

    def __init__(self, name: str, module: nn.Module, token: int, attribute: str = "_compiled_call_impl") -> None:
        self.name = name
        self.attribute = attribute
        self.inner = _route_inner(module, attribute)
        self.context = _dynamo_context(self.inner)
        self.module = weakref.ref(module)
        self._snapshot: tuple[int, ...] = ()
        self.flagged: Any = None
        route = self

        def call(*args: Any, **kwargs: Any) -> Any:
            if _resident_owner(token) is None:
                return route.inner(*args, **kwargs)
            return route.flagged(*args, **kwargs)

        call._safetext_inner = self.inner  # type: ignore[attr-defined]
        call._safetext_route = self  # type: ignore[attr-defined]
        self.call = call
        object.__setattr__(module, attribute, call)

    def installed_on(self, module: nn.Module) -> bool:
        """Whether ``module``'s compiled call still runs through this router (not recompiled since)."""
        call = vars(module).get(self.attribute)
        while call is not None and call is not self.call:
            call = getattr(call, "_safetext_inner", None)
        return call is self.call

    def update(self, lookup: _Lookup, points: dict[str, tuple[Any, dict[str, Any]]]) -> None:
        """(Re)build the flagged variant when a module on the way to a patch point was replaced (LoRA).

        Args:
            lookup: the denoiser's submodules by name (:class:`_Lookup`).
            points: every patch point of the denoiser (name -> (class maker, attributes)).
        """
        prefix = self.name + "." if self.name else ""
        mine = {
            ("" if name == self.name else name[len(prefix):]): point
            for name, point in points.items()
            if name == self.name or name.startswith(prefix)
        }
        module = self.module()
        root = getattr(module, "_orig_mod", module) if self.attribute == "forward" else module
        if root is not module:  # names found through the wrapper's child (named_modules) or its attributes alike
            mine = {_inside_wrapper(name): point for name, point in mine.items()}
        snapshot = (id(root),) + tuple(
            id(lookup(".".join(filter(None, (self.name, *name.split(".")[:end])))))
            for name in mine
            for end in range(len(name.split(".")) + 1 if name else 1)
        )
        if snapshot == self._snapshot and self.flagged is not None:
            return
        variant = _variant(root, mine)
        if self.attribute == "_compiled_call_impl":
            call = variant._call_impl
        elif root is not module:
            call = variant.__call__
        else:  # a compiled bound forward: the variant's own (its class carries a patch point when it is one)
            function = self.inner._torchdynamo_orig_callable.__func__
            base = getattr(type(module), "_safetext_base", type(module))
            if function is base.forward:
                function = type(variant).forward
            call = function.__get__(variant)
        self.flagged = self.context(call)
        self._snapshot = snapshot

    def uninstall(self) -> None:
        module = self.module()
        if module is not None and vars(module).get(self.attribute) is self.call:
            object.__setattr__(module, self.attribute, self.inner)


# -- resident patch points --------------------------------------------------------------------------------
@dataclass(eq=False)
class ResidentPoints:
    """The patch points installed once on one denoiser (see the module docstring).

    Attributes:
        token: id the denoiser-level hooks and the sessions match on.
        denoiser: the original denoiser module.
        layers: every text-attention layer (escalation may patch any of them).
    """

    token: int
    denoiser: nn.Module
    layers: tuple[TextAttentionLayer, ...]
    bias: bool = False
    exit_modules: tuple[nn.Module, ...] = ()
    mode: str | None = None
    _handles: list[Any] = field(default_factory=list)
    _outer: set[int] = field(default_factory=set)
    _points: dict[str, nn.Module] = field(default_factory=dict)
    _exit: dict[int, tuple[str, Any]] = field(default_factory=dict)
    _routes: dict[int, _Route] = field(default_factory=dict)

    def refresh(self, mode: str | None = None, lookup: _Lookup | None = None) -> None:
        """Give every text K/V projection (and, with ``bias``, attention module) its patch point.

        Cheap when nothing changed; a module replaced since (a LoRA wrapper loaded later) gets the point,
        and the module it wraps loses it. With ``mode`` regional, the exit modules get their exit points
        (a block compiled in place since gets its compiled call wrapped instead of hooks); with the
        denoiser compiled as a whole, they lose them (hooks inside its graph would only break it).
        """
        self.mode = mode
        specials = self._specials()
        lookup = lookup or _Lookup(self.denoiser)
        routed = self._route_regions(specials, lookup) if mode in ROUTED else self._remove_routes()
        if mode == REGIONAL:
            for module in self.exit_modules:
                self._exit_point(module)
        else:
            self._remove_exit_points()
        for name, (make, attributes) in specials.items():
            if any(not prefix or name == prefix or name.startswith(prefix + ".") for prefix in routed):
                self._unpoint(name)  # served by a flagged variant: the user's module stays as compiled raw
                continue
            module = lookup(name)
            if self._points.get(name) is not module:
                if make is _projection_class:
                    _swap(module, make, **attributes)
                else:
                    for key, value in attributes.items():
                        object.__setattr__(module, key, value)
                    object.__setattr__(module, "__class__", make(type(module)))
                self._points[name] = module

    def _specials(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        """Every module that carries a patch point: name -> (class maker, attributes)."""
        specials: dict[str, tuple[Any, dict[str, Any]]] = {}
        for layer in self.layers:
            for kind, name in enumerate((layer.key, layer.value)):
                specials[name] = (_projection_class, {"_safetext_layer": _index(layer.index), "_safetext_kind": kind})
            if self.bias:
                specials[layer.name] = (_attention_class, {"_safetext_layer": _index(layer.index)})
        return specials

    def _unpoint(self, name: str) -> None:
        module = self._points.pop(name, None)
        if module is not None:
            base = getattr(type(module), "_safetext_base", None)
            if base is not None:
                object.__setattr__(module, "__class__", base)

    # -- flagged variants of compiled regions (regional compilation) ---------------------------------------
    def _regions(
        self, specials: dict[str, tuple[Any, dict[str, Any]]], lookup: _Lookup
    ) -> dict[str, tuple[nn.Module, str]]:
        """The outermost compiled callables on the way to a patch point: name -> (module, attribute of
        :func:`_route_attribute`). The denoiser itself (name ``""``) counts with a compiled ``forward`` only
        (compiled in place, or by the pipeline's ``torch.compile`` wrapper, it keeps its in-graph points)."""
        regions: dict[str, tuple[nn.Module, str]] = {}
        top = _route_attribute(self.denoiser)
        if top == "forward":
            regions[""] = (self.denoiser, top)
        for name in specials if not regions else ():
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if prefix in regions:
                    break
                module = lookup(prefix)
                attribute = _route_attribute(module)
                if attribute is not None:
                    regions[prefix] = (module, attribute)
                    break
        # a module on the way whose forward is set on the instance (a diffusers or accelerate hook) would run
        # the user's module from the variant too: such a region keeps the patch points on the user's modules
        for name in specials:
            parts = name.split(".")
            for end in range(0 if "" in regions else 1, len(parts) + 1):
                region = ".".join(parts[:end])
                if region in regions:
                    module = regions[region][0]
                    path = [lookup(".".join(parts[:stop])) for stop in range(end, len(parts) + 1)]
                    path.append(getattr(module, "_orig_mod", module))
                    if any("forward" in vars(each) and not _is_compiled_call(vars(each)["forward"]) for each in path):
                        regions.pop(region)
                    break
        return regions

    def _route_regions(self, specials: dict[str, tuple[Any, dict[str, Any]]], lookup: _Lookup) -> tuple[str, ...]:
        """Give every compiled region its router and flagged variant (see :class:`_Route`); returns their names."""
        regions = self._regions(specials, lookup)
        stale = [
            key for key, route in self._routes.items()
            if regions.get(route.name, (None, None)) != (route.module(), route.attribute)
        ]
        for key in stale:
            route = self._routes.pop(key)
            if route.module() is not None:
                self._drop_exit_point(route.module())  # an exit point may wrap the router
            route.uninstall()
        for name, (module, attribute) in regions.items():
            route = self._routes.get(id(module))
            if route is None or not route.installed_on(module):
                self._drop_exit_point(module)
                if route is not None:
                    route.uninstall()
                route = self._routes[id(module)] = _Route(name, module, self.token, attribute)
            route.update(lookup, specials)
        return tuple(regions)

    def _remove_routes(self) -> tuple[str, ...]:
        self._remove_exit_points()  # an exit point may wrap a router
        while self._routes:
            self._routes.popitem()[1].uninstall()
        return ()

    # -- exit points (regional compilation of an extra_rows family) ------------------------------------
    def exit_blocked(self) -> str | None:
        """Why the early exit cannot run on this compiled denoiser (``None``: its exit points are in place)."""
        if not self.exit_modules:
            return None
        if self.mode != REGIONAL:
            return (
                f"the denoiser is compiled as a whole ({self.mode}): its loop over the blocks runs inside the compiled "
                "graph, so the target rows run through every block (compile the blocks instead: "
                "compile_repeated_blocks() or block.compile() on each block)"
            )
        return None

    def has_exit_points(self, modules: Sequence[nn.Module]) -> bool:
        """Whether every one of ``modules`` carries an exit point."""
        return all(id(module) in self._exit for module in modules)

    def _exit_point(self, module: nn.Module) -> None:
        entry = self._exit.get(id(module))
        if is_compiled_in_place(module):
            if entry is not None and entry[0] == "wrapped" and vars(module).get("_compiled_call_impl") is entry[1]:
                return
            self._drop_exit_point(module)
            call = _exit_call(module._compiled_call_impl, self.token, weakref.ref(module))
            object.__setattr__(module, "_compiled_call_impl", call)
            self._exit[id(module)] = ("wrapped", call)
            return
        if entry is not None and entry[0] == "hooks":
            return
        self._drop_exit_point(module)
        token = self.token

        def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
            owner = _resident_owner(token)
            return None if owner is None else owner.resident_exit_input(module, args, kwargs)

        def after(module: nn.Module, args: tuple, output: Any) -> Any:
            owner = _resident_owner(token)
            return None if owner is None else owner.resident_exit_output(module, args, output)

        handles = (
            module.register_forward_pre_hook(before, with_kwargs=True, prepend=True),
            module.register_forward_hook(after, prepend=True),
        )
        self._exit[id(module)] = ("hooks", handles)

    def _drop_exit_point(self, module: nn.Module) -> None:
        entry = self._exit.pop(id(module), None)
        if entry is None:
            return
        kind, value = entry
        if kind == "hooks":
            for handle in value:
                handle.remove()
        elif vars(module).get("_compiled_call_impl") is value:
            object.__setattr__(module, "_compiled_call_impl", value._safetext_inner)

    def _remove_exit_points(self) -> None:
        for module in self.exit_modules:
            self._drop_exit_point(module)

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
        """Remove every patch point (the next compiled call traces without them)."""
        while self._handles:
            self._handles.pop().remove()
        for module in self._points.values():
            base = getattr(type(module), "_safetext_base", None)
            if base is not None:
                object.__setattr__(module, "__class__", base)
        self._remove_routes()
        self._points.clear()
        self._outer.clear()


def _resident_owner(token: int) -> Any:
    """The session active in this context if it patches through the resident points ``token``."""
    owner = active_owner()
    return owner if owner is not None and getattr(owner, "resident_token", None) == token else None


def _exit_call(inner: Any, token: int, module_ref: Any) -> Any:
    """A block's compiled call wrapped with its exit point (runs outside the compiled code, before and after it)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        owner = _resident_owner(token)
        if owner is None:
            return inner(*args, **kwargs)
        module = module_ref()
        changed = owner.resident_exit_input(module, args, kwargs)
        if changed is not None:
            args, kwargs = changed
        output = inner(*args, **kwargs)
        replaced = owner.resident_exit_output(module, args, output)
        return output if replaced is None else replaced

    call._safetext_inner = inner  # type: ignore[attr-defined]
    return call


def exit_modules(denoiser: nn.Module, adapter: ArchitectureAdapter) -> tuple[nn.Module, ...]:
    """The modules an early exit may touch (every block and the output norm), for ``extra_rows`` families."""
    blocks = getattr(adapter, "forward_blocks", None)
    if adapter.strategy != "extra_rows" or blocks is None:
        return ()
    head = getattr(denoiser, "norm_out", None)
    return tuple(module for _, module in blocks(denoiser)) + ((head,) if head is not None else ())


_TOKENS = itertools.count(1)
_LOCK = threading.Lock()
_INSTALLED: weakref.WeakKeyDictionary[nn.Module, ResidentPoints] = weakref.WeakKeyDictionary()


def resident_points(
    called: nn.Module, denoiser: nn.Module, adapter: ArchitectureAdapter, mode: str | None = None
) -> ResidentPoints:
    """The resident patch points of ``denoiser``, installed on first use (one set per denoiser, thread-safe).

    Args:
        called: what the pipeline calls (the denoiser or its ``torch.compile`` wrapper): the
            denoiser-level hooks go there.
        denoiser: the original denoiser module.
        adapter: its architecture adapter.
        mode: how the denoiser is compiled (:func:`compile_mode`); regional compilation gets exit points.
    """
    mode = mode or compile_mode(called, denoiser, ()) or REGIONAL
    with _LOCK:
        points = _INSTALLED.get(denoiser)
        layers = tuple(adapter.discover(denoiser)) if points is None else points.layers
        lookup = _Lookup(denoiser)
        check_resident_supported(denoiser, layers, mode, lookup)
        if points is None:
            points = ResidentPoints(
                next(_TOKENS), denoiser, layers, bias=adapter.strategy == "inject",
                exit_modules=exit_modules(denoiser, adapter),
            )
            _INSTALLED[denoiser] = points
        points.refresh(mode, lookup)
        points.attach(called)
        return points


def check_resident_supported(
    denoiser: nn.Module, layers: Sequence[TextAttentionLayer], mode: str, lookup: _Lookup | None = None
) -> None:
    """Refuse, before anything is generated or installed, a compiled denoiser whose patch points could not run.

    A text K/V projection whose ``forward`` is replaced on the instance (accelerate's ``AlignDevicesHook``
    from ``enable_sequential_cpu_offload()`` / ``accelerate.cpu_offload``, or a per-module
    ``proj.forward = ...``) never calls its class's ``forward``, so the class-level patch point would
    never run: the compiled graph would leave every flagged request unpatched. So is a projection compiled
    on its own (``attn.to_k = torch.compile(attn.to_k)``): its graph holds the plain projection.

    Raises:
        PatchError: naming the compile mode, the projection and the alternatives.
    """
    lookup = lookup or _Lookup(denoiser)
    for layer in layers:
        for name in (layer.key, layer.value):
            module = lookup(name)
            if "forward" not in vars(module):
                continue
            if "_orig_mod" in module._modules:
                raise PatchError(
                    f"safetext cannot patch a text K/V projection compiled on its own: {name} is a torch.compile "
                    "wrapper (OptimizedModule), whose compiled graph never runs a patch point. Compile the attention "
                    f"module that holds it ({layer.name}), its block, or the whole denoiser instead (all supported)."
                )
            hook = getattr(module, "_hf_hook", None)
            what = (
                f"accelerate's {type(hook).__name__} (enable_sequential_cpu_offload() or accelerate.cpu_offload)"
                if hook is not None
                else "a forward set on the module instance"
            )
            raise PatchError(
                f"safetext cannot patch this compiled denoiser ({mode}): its text K/V projection {name} has its "
                f"forward replaced by {what}, which bypasses the patch point the compiled graph calls. Compile "
                "together with enable_model_cpu_offload() or enable_group_offload() instead of sequential "
                "offload, or run the sequentially offloaded denoiser uncompiled (both are supported)."
            )


def installed_points(denoiser: nn.Module) -> ResidentPoints | None:
    """The resident patch points of ``denoiser`` if installed (for tests and diagnostics)."""
    return _INSTALLED.get(denoiser)


def remove_resident_points(denoiser: nn.Module) -> None:
    """Remove the resident patch points of ``denoiser`` (a later compiled call traces without them)."""
    with _LOCK:
        points = _INSTALLED.pop(denoiser, None)
    if points is not None:
        points.remove()
