"""Record what a pipeline feeds its denoiser for a prompt, without running the denoiser.

To patch K/V with a sanitized prompt's, safetext needs the sanitized prompt's conditioning exactly as
the user's pipeline would build it: same text encoders, same padding and sequence length, same dtype
and device. Rather than re-implementing every pipeline's ``encode_prompt`` (their
signatures and post-processing differ), :func:`record_denoiser_inputs` lets the pipeline itself encode
the sanitized prompt: it calls a *replica* of the pipeline with the same arguments, and a pre-hook on
the denoiser captures the arguments of the first denoiser call and stops the replica right there. The
cost is the pipeline's prompt encoding; the denoiser never runs.

The replica shares every model with the original (no copies of weights) but owns private copies of the
scheduler(s) (:func:`private_scheduler`) and its own progress-bar settings, and gets private random
generators: recording never touches the shared scheduler state, the user's generator, or the global
RNG, so a concurrent or subsequent call of the original pipeline is unaffected. It reports the
pipeline's execution device from a per-patcher memo (:class:`ExecutionDeviceCache`) rather than
repeating diffusers' walk over every submodule on each request.

The replica runs without classifier-free guidance (``guidance_scale`` and ``true_cfg_scale`` set to 1):
only the conditional rows are ever patched, and the pipelines safetext supports (SD, SDXL, SD3, IF,
PixArt, Flux, glyph) encode the prompt and the negative prompt in separate text-encoder calls, so the
conditional embeddings come out bit-identical while the negative prompt's encoding, half of the
recording's cost, is skipped. The patch tiles the recorded rows back to the call's ``[uncond | cond]``
layout where it needs the same shapes (see :mod:`safetext.patching.session`).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from safetext.errors import PatchError, PatchNotAppliedError
from safetext.patching.hooks import installed, is_active

CALLBACK_ARGUMENTS: tuple[str, ...] = ("callback", "callback_on_step_end")
#: Arguments that switch classifier-free guidance off when set to 1 (the recording needs no negative branch).
GUIDANCE_ARGUMENTS: tuple[str, ...] = ("guidance_scale", "true_cfg_scale")


@dataclass(frozen=True)
class RecordedCall:
    """The first denoiser call of a pipeline run, captured by argument name.

    Attributes:
        inputs: the denoiser's arguments by parameter name (tensors as the pipeline built them, for the
            conditional rows only: the recording runs without classifier-free guidance).
        total_steps: denoising steps the run would take (distinct consecutive scheduler timesteps from
            the denoiser's first call on: an img2img ``strength`` below 1 skips the first ones).
    """

    inputs: Mapping[str, Any]
    total_steps: int


class _DenoiserReached(Exception):
    """Stops the replica pipeline at its first denoiser call (control flow, never escapes this module)."""


class _Capture:
    """The recording's owner: captures the first denoiser call's arguments, then stops the replica."""

    def __init__(self, parameters: Sequence[inspect.Parameter], resident_token: int | None) -> None:
        self.parameters = parameters
        self.resident_token = resident_token
        self.captured: dict[str, Any] = {}

    def resident_call(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.captured.update(bind_arguments(self.parameters, args, kwargs))
        raise _DenoiserReached

    def resident_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        return None


def forward_parameters(denoiser: nn.Module) -> tuple[inspect.Parameter, ...]:
    """Parameters of ``type(denoiser).forward`` without ``self``.

    Read from the class, not the instance: offloading and caching hooks replace ``module.forward`` with
    ``*args, **kwargs`` wrappers that hide the names.
    """
    parameters = tuple(inspect.signature(type(denoiser).forward).parameters.values())
    return parameters[1:]


def bind_arguments(parameters: Sequence[inspect.Parameter], args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Map a call's positional and keyword arguments to parameter names (no defaults filled in)."""
    bound: dict[str, Any] = {}
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for parameter, value in zip(positional, args, strict=False):
        bound[parameter.name] = value
    for name, value in kwargs.items():
        bound[name] = value
    return bound


def replace_argument(
    parameters: Sequence[inspect.Parameter], args: tuple, kwargs: dict[str, Any], name: str, value: Any
) -> tuple[tuple, dict[str, Any]]:
    """Return ``(args, kwargs)`` with argument ``name`` replaced wherever the caller passed it."""
    if name in kwargs:
        kwargs = dict(kwargs)
        kwargs[name] = value
        return args, kwargs
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    position = positional.index(name)
    new_args = list(args)
    new_args[position] = value
    return tuple(new_args), kwargs


def timestep_value(timestep: Any) -> float | None:
    """The scalar timestep of a denoiser call (first element of a batched timestep tensor)."""
    if timestep is None:
        return None
    if torch.is_tensor(timestep):
        return float(timestep.reshape(-1)[0].item()) if timestep.numel() else None
    return float(timestep)


def count_steps(timesteps: Any) -> int:
    """Number of denoising steps in a schedule: runs of equal consecutive timesteps count once.

    Second-order schedulers (Heun, KDPM2) call the denoiser twice at repeated timesteps per step; the
    step counter of the patch counts timestep changes, so the two agree.
    """
    if timesteps is None:
        return 0
    values = [float(t) for t in (timesteps.tolist() if torch.is_tensor(timesteps) else list(timesteps))]
    return sum(1 for i, t in enumerate(values) if i == 0 or t != values[i - 1])


def remaining_schedule(timesteps: Any, first_timestep: float | None) -> Any:
    """The part of a schedule the denoiser runs, from its first call's timestep on.

    img2img / inpaint pipelines set the full schedule and skip its first ``(1 - strength)`` steps; the
    patch counts steps from the denoiser's first call, so the run's length is what is left from there.
    Flux pipelines pass ``t / 1000``; a timestep found nowhere in the schedule keeps the whole schedule.
    """
    if timesteps is None or first_timestep is None:
        return timesteps
    values = [float(t) for t in (timesteps.tolist() if torch.is_tensor(timesteps) else list(timesteps))]
    for candidate in (first_timestep, first_timestep * 1000.0):
        tolerance = 1e-4 * max(1.0, abs(candidate))
        start = next((i for i, t in enumerate(values) if abs(t - candidate) <= tolerance), None)
        if start is not None:
            return values[start:]
    return timesteps


def _is_scheduler(component: Any) -> bool:
    return hasattr(component, "set_timesteps") and hasattr(component, "step") and not isinstance(component, nn.Module)


def device_token(pipe: Any) -> tuple:
    """What a pipeline's execution device depends on, cheaply: its models, their devices and offload hooks.

    diffusers' ``_execution_device`` walks every submodule of every model looking for group-offload
    hooks (milliseconds per call on a large pipeline). Moving a model (``.to``), enabling model, sequential
    or group offloading, or swapping a component all change this token: each of them moves the first
    parameter or installs an accelerate hook / diffusers hook registry on the model itself.
    """
    parts: list[tuple] = []
    # A copy (one C call under the GIL): another thread's pipeline call may add attributes meanwhile.
    for name, component in vars(pipe).copy().items():
        if not isinstance(component, nn.Module):
            continue
        first = next(component.parameters(), None)
        registry = getattr(component, "_diffusers_hook", None)
        parts.append(
            (
                name,
                id(component),
                None if first is None else str(first.device),
                id(getattr(component, "_hf_hook", None)),
                tuple(getattr(registry, "hooks", {}) or ()),
            )
        )
    parts.append(("exclude", tuple(getattr(pipe, "_exclude_from_cpu_offload", ()) or ())))
    return tuple(parts)


class ExecutionDeviceCache:
    """Memo of a pipeline's ``_execution_device``, re-read whenever :func:`device_token` changes.

    One per patcher (so per pipeline); holds no per-request state. The recording replica reads the
    memo instead of repeating diffusers' module walk for every flagged request.
    """

    def __init__(self) -> None:
        self._entry: tuple[tuple, Any] | None = None

    def get(self, pipe: Any) -> Any:
        """The execution device of ``pipe`` (``None`` when the pipeline has no ``_execution_device``)."""
        if not hasattr(type(pipe), "_execution_device"):
            return None
        token = device_token(pipe)
        entry = self._entry
        if entry is not None and entry[0] == token:
            return entry[1]
        device = pipe._execution_device
        self._entry = (token, device)
        return device


def private_scheduler(scheduler: Any) -> Any:
    """A copy of ``scheduler`` that ``set_timesteps`` can run on without touching the original.

    ``set_timesteps`` rebinds the schedule's attributes (``timesteps``, ``sigmas``, step indices,
    solver history lists) rather than writing into the original tensors, and the recording stops
    before any ``step``; so a shallow copy with private copies of its containers suffices, at a
    fraction of a deep copy's cost. The config (a frozen dict) is shared.
    """
    clone = copy.copy(scheduler)
    for key, value in vars(scheduler).items():
        if isinstance(value, (list, dict, set)) and key != "_internal_dict":
            object.__setattr__(clone, key, copy.copy(value))
    return clone


@functools.cache
def _replica_class(cls: type) -> type:
    """``cls`` with ``_execution_device`` read from the replica's memo instead of a module walk."""

    def execution_device(self: Any) -> Any:
        return self.__dict__["_safetext_execution_device"]

    return type(cls.__name__, (cls,), {"_execution_device": property(execution_device), "__module__": cls.__module__})


def pipeline_replica(pipe: Any, execution_device: Any = None) -> Any:
    """A shallow copy of ``pipe`` sharing its models, with private scheduler copies and no progress bar.

    Args:
        pipe: the pipeline.
        execution_device: the pipeline's execution device when already known (see
            :class:`ExecutionDeviceCache`); the replica then reports it without diffusers' module walk.
    """
    replica = copy.copy(pipe)
    if execution_device is not None:
        object.__setattr__(replica, "__class__", _replica_class(type(pipe)))
        replica.__dict__["_safetext_execution_device"] = execution_device
    for name, component in list(vars(pipe).items()):
        if _is_scheduler(component):
            object.__setattr__(replica, name, private_scheduler(component))
    progress = dict(getattr(pipe, "_progress_bar_config", None) or {})
    progress["disable"] = True
    object.__setattr__(replica, "_progress_bar_config", progress)
    return replica


def _private_generator(generator: Any) -> Any:
    """A fresh generator on the same device as the user's (CPU when none was given).

    The recorded noise is never used, so its values do not matter; what matters is that recording
    draws neither from the user's generator nor from the global RNG.
    """
    if isinstance(generator, (list, tuple)):
        return [_private_generator(item) for item in generator]
    device = generator.device if isinstance(generator, torch.Generator) else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(0)


def recording_kwargs(
    pipe: Any, call_kwargs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The replica's call arguments: the user's, with private generators, no callbacks and no CFG.

    Args:
        pipe: the pipeline.
        call_kwargs: the call's arguments.
        parameters: ``inspect.signature(pipe.__call__).parameters`` when the caller has it cached.
    """
    kwargs = dict(call_kwargs)
    if parameters is None:
        parameters = inspect.signature(pipe.__call__).parameters
    if "generator" in parameters:
        kwargs["generator"] = _private_generator(kwargs.get("generator"))
    for name in GUIDANCE_ARGUMENTS:
        if name in parameters:
            kwargs[name] = 1.0
    for name in CALLBACK_ARGUMENTS:
        if kwargs.get(name) is not None:
            kwargs[name] = None
    return kwargs


def record_denoiser_inputs(
    pipe: Any,
    denoiser: nn.Module,
    call_kwargs: Mapping[str, Any],
    *,
    pipe_parameters: Mapping[str, Any] | None = None,
    denoiser_parameters: Sequence[inspect.Parameter] | None = None,
    execution_device: Any = None,
    resident_token: int | None = None,
) -> RecordedCall:
    """Run ``pipe``'s own prompt encoding for ``call_kwargs`` and capture the first denoiser call.

    Args:
        pipe: the diffusers pipeline (not modified).
        denoiser: its UNet or transformer.
        call_kwargs: the arguments the pipeline would be called with (e.g. with the sanitized prompt).
        pipe_parameters: cached ``inspect.signature(pipe.__call__).parameters`` (optional).
        denoiser_parameters: cached :func:`forward_parameters` of the denoiser (optional).
        execution_device: the pipeline's execution device when known (optional, saves diffusers' module
            walk; see :class:`ExecutionDeviceCache`).
        resident_token: the denoiser's resident patch points (compiled denoisers, see
            :mod:`safetext.patching.compiled`): capture through them instead of a per-call hook.

    Returns:
        :class:`RecordedCall` with the denoiser arguments and the number of denoising steps.

    Raises:
        PatchError: the pipeline finished without calling its denoiser.
        PatchNotAppliedError: a compiled denoiser ran without calling its resident patch points.
    """
    parameters = denoiser_parameters if denoiser_parameters is not None else forward_parameters(denoiser)
    replica = pipeline_replica(pipe, execution_device)
    owner = _Capture(parameters, resident_token)

    def capture(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if not is_active(owner):
            return None
        return owner.resident_call(module, args, kwargs)

    def register(hooks: Any) -> None:
        if resident_token is None:  # compiled denoisers: the resident pre-hook calls owner.resident_call
            hooks.forward_pre_hook(denoiser, capture)

    with installed(owner, register):
        try:
            replica(**recording_kwargs(pipe, call_kwargs, pipe_parameters))
        except _DenoiserReached:
            pass
    if not owner.captured:
        if resident_token is not None:
            raise PatchNotAppliedError(
                f"the compiled denoiser of {type(pipe).__name__} never called safetext's patch points: it was "
                "compiled and run before safetext installed them, and the compiled code does not see hooks added "
                "later. Create the SafeTextGenerator (or KVPatch) before the first call of the compiled pipeline, "
                "or recompile (torch._dynamo.reset(), then compile again)."
            )
        raise PatchError(
            f"{type(pipe).__name__} returned without calling its denoiser, so safetext could not record the "
            "target prompt's conditioning (is num_inference_steps 0?)."
        )
    captured = owner.captured
    scheduler = getattr(replica, "scheduler", None)
    schedule = remaining_schedule(getattr(scheduler, "timesteps", None), timestep_value(captured.get("timestep")))
    total = count_steps(schedule)
    if total == 0:
        total = int(call_kwargs.get("num_inference_steps") or 0)
    return RecordedCall(inputs=captured, total_steps=total)
