"""The recording replica's execution-device memo: same device as diffusers reports, re-read on every change."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from diffusers.hooks import HookRegistry, ModelHook

from safetext.patching import KVPatch, find_denoiser, record_denoiser_inputs
from safetext.patching.recording import ExecutionDeviceCache, device_token, pipeline_replica
from tests.tiny_pipelines import TINY_CALL_KWARGS, build_sd15


class _OnloadHook(ModelHook):
    """Stands in for diffusers' group-offloading hook: only its onload device is read."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(onload_device=torch.device("cpu"))


def _counting(pipe):
    """Make ``pipe``'s ``_execution_device`` count its reads (on a private subclass)."""
    calls = []
    base = type(pipe)

    class Counting(base):
        @property
        def _execution_device(self):
            calls.append(1)
            return base._execution_device.fget(self)

    pipe.__class__ = Counting
    return calls


def test_memo_reads_the_pipeline_once_until_something_changes():
    pipe = build_sd15()
    calls = _counting(pipe)
    cache = ExecutionDeviceCache()
    assert cache.get(pipe) == torch.device("cpu")
    assert cache.get(pipe) == torch.device("cpu")
    assert len(calls) == 1
    pipe.unet._hf_hook = object()  # what accelerate's offloading installs
    cache.get(pipe)
    assert len(calls) == 2
    del pipe.unet._hf_hook
    registry = HookRegistry.check_if_exists_or_initialize(pipe.text_encoder)
    registry.register_hook(_OnloadHook(), "group_offloading")  # diffusers' group offloading registers here
    cache.get(pipe)
    assert len(calls) == 3
    pipe.vae = type(pipe.vae).from_config(pipe.vae.config)  # a swapped component
    cache.get(pipe)
    assert len(calls) == 4
    assert cache.get(pipe) == torch.device("cpu") and len(calls) == 4


def test_token_follows_parameter_device_and_component_identity():
    pipe = build_sd15()
    token = device_token(pipe)
    assert device_token(pipe) == token
    pipe.unet.to(torch.float64)  # dtype is not part of the device
    assert device_token(pipe) == token
    pipe.unet = type(pipe.unet).from_config(pipe.unet.config)
    assert device_token(pipe) != token


def test_replica_reports_the_memo_device_and_leaves_the_pipeline_class_alone():
    pipe = build_sd15()
    replica = pipeline_replica(pipe, torch.device("meta"))
    assert replica._execution_device == torch.device("meta")
    assert isinstance(replica, type(pipe)) and type(replica) is not type(pipe)
    assert pipe._execution_device == torch.device("cpu")
    assert type(pipeline_replica(pipe)) is type(pipe)  # no memo: a plain shallow copy


def test_recording_with_the_memo_equals_recording_without():
    pipe = build_sd15()
    kwargs = dict(TINY_CALL_KWARGS["sd15"], prompt='A sign that says "hello".')
    denoiser = find_denoiser(pipe)
    plain = record_denoiser_inputs(pipe, denoiser, kwargs)
    memo = record_denoiser_inputs(pipe, denoiser, kwargs, execution_device=ExecutionDeviceCache().get(pipe))
    assert plain.inputs.keys() == memo.inputs.keys()
    assert torch.equal(plain.inputs["encoder_hidden_states"], memo.inputs["encoder_hidden_states"])
    assert plain.total_steps == memo.total_steps


def test_patcher_reuses_its_memo_across_calls():
    pipe = build_sd15()
    patch = KVPatch(pipe)
    calls = _counting(pipe)
    kwargs = dict(TINY_CALL_KWARGS["sd15"], num_inference_steps=2)
    for seed in (0, 1):
        patch.generate(prompt="a cat", target_prompt="a dog", generator=torch.Generator().manual_seed(seed), **kwargs)
    # the pipeline's own two calls read it once each; the two recordings read it once in all
    assert len(calls) == 3
