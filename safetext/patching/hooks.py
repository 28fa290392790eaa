"""Per-call hook plumbing that is safe when threads share one pipeline.

PyTorch hooks live on modules, and modules are shared by every thread that uses the pipeline. So
safetext never keeps request state on a module: each generation creates an *owner* object (its
per-call state), registers hooks whose closures hold that owner, and marks the owner active in a
:class:`contextvars.ContextVar`. A hook acts only when the owner active in the *current* context is its
own; in every other thread (a clean request, another flagged request) it returns ``None`` and the
module's output is untouched. Every hook is removed in a ``finally`` block when the call ends, whether
it returned or raised, and registration/removal take one lock so concurrent calls never interleave
their edits of a module's hook dictionaries.

A module's forward reads its hook dictionary without that lock: PyTorch snapshots the hooks, then asks
for each one whether it was registered ``with_kwargs``. A hook removed by another thread in between is
still called, but without its ``kwargs``. Hooks registered through :class:`HookSet` tolerate that call
(:func:`tolerant_pre_hook`, :func:`tolerant_hook`): a removed hook belongs to a call that has ended, so
it is inactive in every thread, and it returns ``None``.

    >>> owner = object()
    >>> def hook(module, args, output):
    ...     return output * 0 if is_active(owner) else None
    >>> with installed(owner, lambda hooks: hooks.forward_hook(linear, hook)):
    ...     linear(x)            # patched here, in this thread only
    >>> linear._forward_hooks    # empty again
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

_ACTIVE_OWNER: ContextVar[object | None] = ContextVar("safetext_active_patch", default=None)
_REGISTRATION_LOCK = threading.Lock()


def is_active(owner: object) -> bool:
    """True when ``owner`` is the patch (or recording) running in the current thread/context."""
    return _ACTIVE_OWNER.get() is owner


def active_owner() -> object | None:
    """The owner active in the current context, if any (for diagnostics and tests)."""
    return _ACTIVE_OWNER.get()


_REMOVED = object()


def tolerant_pre_hook(hook: Callable) -> Callable:
    """``hook(module, args, kwargs)`` that also accepts the call PyTorch makes after a concurrent removal.

    Args:
        hook: a forward pre-hook registered ``with_kwargs=True``.

    Returns:
        A wrapper that calls ``hook`` when ``kwargs`` are given and returns ``None`` when they are not
        (the hook was removed between PyTorch's snapshot of the hooks and its call).
    """

    def call(module: nn.Module, args: tuple, kwargs: Any = _REMOVED) -> Any:
        if kwargs is _REMOVED:
            return None
        return hook(module, args, kwargs)

    return call


def tolerant_hook(hook: Callable) -> Callable:
    """``hook(module, args, kwargs, output)`` that returns ``None`` when called without kwargs (see above)."""

    def call(module: nn.Module, args: tuple, kwargs: Any, output: Any = _REMOVED) -> Any:
        if output is _REMOVED:
            return None
        return hook(module, args, kwargs, output)

    return call


class HookSet:
    """Handles of the hooks one call registered, removed together."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward_hook(self, module: nn.Module, hook: Callable, *, prepend: bool = False, with_kwargs: bool = False) -> None:
        """Register ``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with ``with_kwargs``).

        ``prepend`` makes it run before hooks already there.
        """
        if with_kwargs:
            hook = tolerant_hook(hook)
        self._handles.append(module.register_forward_hook(hook, prepend=prepend, with_kwargs=with_kwargs))

    def forward_pre_hook(self, module: nn.Module, hook: Callable) -> None:
        """Register ``hook(module, args, kwargs) -> None | (args, kwargs)``."""
        self._handles.append(module.register_forward_pre_hook(tolerant_pre_hook(hook), with_kwargs=True))

    def __len__(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()


@contextmanager
def installed(owner: object, register: Callable[[HookSet], None]) -> Iterator[HookSet]:
    """Register hooks with ``register(hooks)``, activate ``owner`` in this context, clean up on exit.

    Args:
        owner: the per-call state object the hooks compare against :func:`is_active`.
        register: callback registering the hooks on a :class:`HookSet`.

    Yields:
        The :class:`HookSet` (already registered).
    """
    hooks = HookSet()
    token = None
    try:
        with _REGISTRATION_LOCK:
            register(hooks)
        token = _ACTIVE_OWNER.set(owner)
        yield hooks
    finally:
        if token is not None:
            _ACTIVE_OWNER.reset(token)
        with _REGISTRATION_LOCK:
            hooks.remove()
