"""Per-call hook plumbing that is safe when threads share one pipeline.

PyTorch hooks live on modules, and modules are shared by every thread that uses the pipeline. So
safetext never keeps request state on a module: each generation creates an *owner* object (its
per-call state), registers hooks whose closures hold that owner, and marks the owner active in a
:class:`contextvars.ContextVar`. A hook acts only when the owner active in the *current* context is its
own; in every other thread (a clean request, another flagged request) it returns ``None`` and the
module's output is untouched. Every hook is removed in a ``finally`` block when the call ends, whether
it returned or raised, and registration/removal take one lock so concurrent calls never interleave
their edits of a module's hook dictionaries.

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


class HookSet:
    """Handles of the hooks one call registered, removed together."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward_hook(self, module: nn.Module, hook: Callable, *, prepend: bool = False, with_kwargs: bool = False) -> None:
        """Register ``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with ``with_kwargs``).

        ``prepend`` makes it run before hooks already there.
        """
        self._handles.append(module.register_forward_hook(hook, prepend=prepend, with_kwargs=with_kwargs))

    def forward_pre_hook(self, module: nn.Module, hook: Callable) -> None:
        """Register ``hook(module, args, kwargs) -> None | (args, kwargs)``."""
        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

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
