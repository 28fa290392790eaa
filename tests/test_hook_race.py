"""Hooks survive concurrent removal: PyTorch snapshots a module's hooks, then asks per hook whether it takes kwargs.

A hook removed by another thread in between is called without its kwargs. Before safetext's hooks
tolerated that call, a flagged request running beside other requests on one pipeline failed now and
then with ``TypeError: ... missing 1 required positional argument: 'kwargs'``.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback

import torch
from torch import nn

from safetext.patching.hooks import installed, is_active
from tests.tiny_pipelines import TINY_CALL_KWARGS, build_sd15


class _Switching:
    """Run the body with a tiny GIL switch interval, so threads interleave inside ``Module._call_impl``."""

    def __enter__(self):
        self.previous = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)

    def __exit__(self, *exc):
        sys.setswitchinterval(self.previous)


def _hammer(workers: int, iterations: int, body) -> list[str]:
    errors: list[str] = []
    barrier = threading.Barrier(workers)

    def run(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(iterations):
                body(index)
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    with _Switching():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return errors


def test_hooks_removed_by_another_thread_mid_forward_are_ignored():
    """Four threads register, call and remove per-call pre-hooks and forward hooks on one shared module.

    The module also carries a hook of its own that yields the GIL (as an offloading hook that moves
    weights does), so another thread removes its hooks while this forward walks its snapshot.
    """
    module = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    expected = module(x)
    yielding = [
        module.register_forward_pre_hook(lambda m, args: time.sleep(0), prepend=True),
        module.register_forward_hook(lambda m, args, output: time.sleep(0), prepend=True),
    ]

    def body(index: int) -> None:
        owner = object()

        def pre(m, args, kwargs):
            return ((args[0] * 2,), kwargs) if is_active(owner) else None

        def post(m, args, kwargs, output):
            return output / 2 if is_active(owner) else None

        def register(hooks):
            hooks.forward_pre_hook(module, pre)
            hooks.forward_hook(module, post, with_kwargs=True)

        if index % 2:
            with installed(owner, register):
                out = module(x)
            assert torch.allclose(out, (module(x * 2)) / 2)
        else:
            assert torch.equal(module(x), expected)

    try:
        errors = _hammer(4, 1000, body)
    finally:
        for handle in yielding:
            handle.remove()
    assert not errors, f"{len(errors)} failures, first:\n{errors[0]}"


def test_threads_sharing_one_pipeline_never_call_a_removed_hook():
    """Four threads (two flagged, two clean) on one pipeline whose UNet has a GIL-yielding hook; 60 calls each."""
    from safetext.generator import SafeTextGenerator
    from tests.test_generator import CLEAN, FLAGGED, LockedTokenizer, WordSwapPolicy

    pipe = build_sd15()
    object.__setattr__(pipe, "tokenizer", LockedTokenizer(pipe.tokenizer))
    kwargs = dict(TINY_CALL_KWARGS["sd15"], num_inference_steps=1, height=16, width=16)
    gen = SafeTextGenerator(pipe, policy=WordSwapPolicy())

    def body(index: int) -> None:
        gen(FLAGGED if index % 2 else CLEAN, generator=torch.Generator().manual_seed(0), **kwargs)

    yielding = pipe.unet.register_forward_pre_hook(lambda m, args: time.sleep(0), prepend=True)
    try:
        errors = _hammer(4, 60, body)
    finally:
        yielding.remove()
    assert not errors, f"{len(errors)} failures, first:\n{errors[0]}"


def test_device_token_while_another_thread_sets_pipeline_attributes():
    """A pipeline call sets attributes on the pipeline (``_guidance_scale``, ``_num_timesteps`` ...) the first
    time it runs; another thread reading the pipeline's device token meanwhile must not fail with
    ``RuntimeError: dictionary changed size during iteration``."""
    from safetext.patching.recording import device_token

    class Pipe:
        pass

    pipe = Pipe()
    for index in range(8):
        setattr(pipe, f"model_{index}", nn.Linear(2, 2))
    expected = device_token(pipe)

    def mutate(_: int) -> None:
        for index in range(200):
            setattr(pipe, f"_state_{index}", index)
        for index in range(200):
            delattr(pipe, f"_state_{index}")

    def read(_: int) -> None:
        assert device_token(pipe) == expected

    def body(index: int) -> None:
        (mutate if index == 0 else read)(index)

    errors = _hammer(3, 150, body)
    assert not errors, f"{len(errors)} failures, first:\n{errors[0]}"
