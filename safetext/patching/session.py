"""The per-call state of a K/V patch and the hooks that act on it.

A :class:`PatchSession` is created for one pipeline call and discarded after it. It holds the step
counter, the recorded target inputs, the target K/V computed on first use, and the row bookkeeping of
the denoiser call in flight. Its hooks are registered by :meth:`PatchSession.register` (through
:func:`safetext.patching.hooks.installed`) and act only while the session is the active owner of the
current context, so the same hooks are inert in every other thread.

Row layout. A denoiser call has ``B`` rows: ``n`` prompts x ``m`` images, doubled to ``[uncond | cond]``
under classifier-free guidance. The target was recorded without guidance (``n x m`` conditional rows,
see :mod:`safetext.patching.recording`), so row ``r`` of a CFG call takes its target from recorded row
``r - n*m``. Injected K/V are computed on the recorded states tiled to the call's layout, so every
projection runs on exactly the shape it has in the user's call.

Early exit (``extra_rows``). The target rows are cut from the batch after the block of the last mapped
layer (:func:`safetext.patching.adapters.joint.plan_early_exit`): a forward hook on that block keeps the
first ``B`` rows of its outputs, and pre-hooks on every later block and on the output norm keep the
first ``B`` rows of their per-row inputs. The hooks are registered with the others for this call only; on a
regionally compiled denoiser the resident exit points of :mod:`safetext.patching.compiled` call the same
methods (:meth:`PatchSession.plan_resident_exit`).
A block signature the plan does not know leaves the exit off (the reason is reported).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from safetext.errors import PatchError
from safetext.patching.adapters.base import ArchitectureAdapter, TextAttentionLayer
from safetext.patching.compiled import unpatched_forward
from safetext.patching.hooks import HookSet, is_active
from safetext.patching.recording import (
    RecordedCall,
    bind_arguments,
    forward_parameters,
    replace_argument,
    timestep_value,
)


@dataclass
class _CallState:
    """The denoiser call in flight: ``rows`` are patched from donor rows ``sources``.

    ``extra`` counts target rows appended to the batch.
    """

    batch: int
    rows: torch.Tensor
    sources: torch.Tensor
    extra: int = 0
    text_tokens: int = 0
    exited: bool = False
    selected: dict[Any, torch.Tensor] = field(default_factory=dict)
    tail: int | None = None
    bias: tuple[torch.Tensor, torch.Tensor] | None = None


def _replace_rows(tensor: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, tail: int | None) -> torch.Tensor:
    """``tensor`` with ``rows`` replaced by ``values``; a concatenation when the rows are the last ones."""
    if tail is not None:
        return torch.cat([tensor[:tail], values])
    return tensor.index_copy(0, rows, values)


def tail_start(rows: Sequence[int], batch: int) -> int | None:
    """Where ``rows`` start when they are exactly the last rows of a ``batch``-row call, in order (else ``None``)."""
    first = batch - len(rows)
    return first if list(rows) == list(range(first, batch)) else None


def donor_rows(rows: Sequence[int], batch: int, reference: int) -> list[int]:
    """Where row ``r`` of a ``batch``-row call finds its target in a ``reference``-row donor tensor."""
    if reference == batch:
        return list(rows)
    if reference * 2 == batch:  # donor holds conditional rows only, the call is [uncond | cond]
        return [row - reference for row in rows]
    if reference == batch * 2:  # donor is [uncond | cond], the call runs conditional rows only
        return [row + batch for row in rows]
    raise PatchError(f"the target was recorded with {reference} rows but the denoiser now runs {batch}")


@dataclass(eq=False)
class PatchSession:
    """Everything one patched pipeline call needs; never shared between calls or threads."""

    denoiser: nn.Module
    adapter: ArchitectureAdapter
    layers: Sequence[TextAttentionLayer]
    recorded: RecordedCall
    start_step: int
    prompts: int
    per_prompt: int
    patched_prompts: tuple[int, ...]
    step: int = -1
    ordinal: int = 0
    last_timestep: float | None = None
    patched_steps: set[int] = field(default_factory=set)
    call: _CallState | None = None
    _layout: int = 0
    _row_cache: dict[int, tuple[torch.Tensor, torch.Tensor, int | None]] = field(default_factory=dict)
    _selected: dict[int, dict[Any, torch.Tensor]] = field(default_factory=dict)
    _same_target: dict[int, bool] = field(default_factory=dict)
    _targets: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    _states: torch.Tensor | None = None
    _bias: torch.Tensor | None = None
    parameters: Sequence[Any] = ()
    acted: dict[tuple[int, str], set[int]] = field(default_factory=dict)
    vacuous_steps: set[int] = field(default_factory=set)
    resident_token: int | None = None
    ran: dict[int, set[int]] | None = None
    exit_enabled: bool = True
    exit_plan: Any = None
    exit_steps: set[int] = field(default_factory=set)
    _exit_later: dict[int, tuple[tuple, tuple[str, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._parameters = tuple(self.parameters) or forward_parameters(self.denoiser)
        self._by_index = {layer.index: layer for layer in self.layers}
        self._resident_modules: dict[tuple[int, str], nn.Module] = {}  # looked up once per call, not per step

    # -- resident patch points (compiled denoisers, see safetext.patching.compiled) ----------------------
    def resident_call(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The denoiser pre-hook, called by the resident patch points."""
        return self._on_denoiser_call(module, args, kwargs)

    def resident_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """The denoiser forward hook, called by the resident patch points."""
        return self._drop_extra_rows(module, args, output) if self.adapter.strategy == "extra_rows" else None

    def resident_projection(self, index: int, kind: str, output: torch.Tensor) -> torch.Tensor | None:
        """Layer ``index``'s patched ``kind`` projection output, or ``None`` when this call leaves it alone."""
        layer = self._by_index.get(index)
        if layer is None:
            return None
        module = self._resident_modules.get((index, kind))
        if module is None:
            module = self._resident_modules[index, kind] = self.denoiser.get_submodule(layer.key if kind == "key" else layer.value)
        hook = self._inject_projection if self.adapter.strategy == "inject" else self._copy_projection
        return hook(layer, kind, module, (), output)

    def resident_bias(self, index: int, bias: torch.Tensor) -> torch.Tensor | None:
        """Layer ``index``'s attention bias with the target's padding rows, or ``None``."""
        layer = self._by_index.get(index)
        if layer is None or self.adapter.strategy != "inject" or self.recorded.inputs.get("encoder_attention_mask") is None:
            return None
        changed = self._on_attention(self.denoiser.get_submodule(layer.name), (), {"attention_mask": bias})
        return None if changed is None else changed[1]["attention_mask"].clone()

    # -- registration ------------------------------------------------------------------------------
    def register(self, hooks: HookSet) -> None:
        """Register this call's hooks: step counter, K/V replacement, and (per family) bias or row drop."""
        hooks.forward_pre_hook(self.denoiser, self._on_denoiser_call)
        if self.adapter.strategy == "extra_rows":
            hooks.forward_hook(self.denoiser, self._drop_extra_rows, prepend=True)
        masked = self.adapter.strategy == "inject" and self.recorded.inputs.get("encoder_attention_mask") is not None
        projection_hook = self._inject_projection if self.adapter.strategy == "inject" else self._copy_projection
        for layer in self.layers:
            for kind, name in (("key", layer.key), ("value", layer.value)):
                hook = partial(projection_hook, layer, kind)
                hooks.forward_hook(self.denoiser.get_submodule(name), hook, prepend=True)
            if masked:
                hooks.forward_pre_hook(self.denoiser.get_submodule(layer.name), self._on_attention)
            hooks.forward_pre_hook(self.denoiser.get_submodule(layer.name), partial(self._on_layer, layer))
        if self.adapter.strategy == "extra_rows":
            self._register_exit(hooks)
        self.ran = {}

    def _plan_exit(self) -> Any:
        """The early-exit plan of this call's layers, or why there is none (a string)."""
        blocks = getattr(self.adapter, "forward_blocks", None)
        if not self.exit_enabled:
            return "turned off (KVPatch(early_exit=False))"
        if blocks is None:
            return f"the {self.adapter.family} adapter names no block order"
        from safetext.patching.adapters.joint import plan_early_exit

        return plan_early_exit(self.denoiser, blocks(self.denoiser), self.layers)

    def _register_exit(self, hooks: HookSet) -> None:
        """The early-exit hooks: cut the extra rows after the last mapped block (see the module docstring)."""
        self.exit_plan = self._plan_exit()
        if isinstance(self.exit_plan, str):
            return
        hooks.forward_hook(self.exit_plan.module, self._exit_rows)
        for _, module, parameters, names in self.exit_plan.later:
            hooks.forward_pre_hook(module, partial(self._after_exit, parameters, names))

    def plan_resident_exit(self, points: Any) -> None:
        """The early exit on a compiled denoiser: through the resident exit points (regional compilation).

        Args:
            points: the denoiser's :class:`~safetext.patching.compiled.ResidentPoints`.
        """
        if self.adapter.strategy != "extra_rows":
            return
        blocked = points.exit_blocked() if self.exit_enabled else None
        plan = blocked or self._plan_exit()
        if not isinstance(plan, str) and not points.has_exit_points([plan.module, *(m for _, m, _, _ in plan.later)]):
            plan = "a block after the exit carries no exit point (it is compiled inside a larger compiled region)"
        self.exit_plan = plan
        if not isinstance(plan, str):
            self._exit_later = {id(module): (parameters, names) for _, module, parameters, names in plan.later}

    def resident_exit_input(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        """Exit point before a block or the output norm: after the exit, per-row inputs keep the user's rows."""
        later = self._exit_later.get(id(module))
        return None if later is None else self._after_exit(*later, module, args, kwargs)

    def resident_exit_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Exit point after a block: the exit block's outputs keep the user's rows."""
        plan = self.exit_plan
        if plan is None or isinstance(plan, str) or module is not plan.module:
            return None
        return self._exit_rows(module, args, output)

    def early_exit(self) -> dict[str, Any] | None:
        """What the early exit did this call (``verdict.details["early_exit"]``; ``None`` for ``inject`` families)."""
        if self.adapter.strategy != "extra_rows":
            return None
        plan = self.exit_plan
        if plan is None and self.resident_token is None:
            return {"used": False}  # no hook was registered: no step was patched
        if plan is None:
            plan = "the denoiser is compiled: its resident patch points run the target rows through every block"
        if isinstance(plan, str):
            return {"used": False, "fallback": plan}
        return {"used": bool(self.exit_steps), "block": plan.block, "blocks_after": plan.blocks_after, "steps": len(self.exit_steps)}

    # -- rows ----------------------------------------------------------------------------------------
    def _patched_rows(self, batch: int) -> list[int]:
        images = self.prompts * self.per_prompt
        if batch == 2 * images:
            offset = images
        elif batch == images:
            offset = 0
        else:
            raise PatchError(
                f"the denoiser was called with {batch} rows; for {self.prompts} prompt(s) x {self.per_prompt} "
                f"image(s) safetext expects {images} rows (no CFG) or {2 * images} ([uncond | cond]). This "
                "pipeline lays out its batch differently and cannot be patched."
            )
        return [offset + p * self.per_prompt + j for p in self.patched_prompts for j in range(self.per_prompt)]

    def _recorded_batch(self) -> int:
        return int(self.recorded.inputs[self.adapter.sample_input].shape[0])

    def _rows_for(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """Patched rows of a ``batch``-row call, their donor rows and :func:`tail_start` (once per batch size)."""
        cached = self._row_cache.get(batch)
        if cached is None:
            rows = self._patched_rows(batch)
            if self.adapter.strategy == "inject":
                if not self._layout:  # first patched call: injected K/V get this call's row layout
                    self._layout = batch if 2 * self._recorded_batch() == batch else self._recorded_batch()
                reference = self._layout
            else:
                reference = self._recorded_batch()
            sources = donor_rows(rows, batch, reference)
            cached = (
                torch.tensor(rows, dtype=torch.long, device=device),
                torch.tensor(sources, dtype=torch.long, device=device),
                tail_start(rows, batch),
            )
            self._row_cache[batch] = cached
        return cached

    # -- hooks ---------------------------------------------------------------------------------------
    def _on_denoiser_call(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        if not is_active(self):
            return None
        bound = bind_arguments(self._parameters, args, kwargs)
        timestep = timestep_value(bound.get(self.adapter.timestep_input))
        if self.last_timestep is None or timestep != self.last_timestep:
            self.step, self.ordinal, self.last_timestep = self.step + 1, 0, timestep
        else:
            self.ordinal += 1
        self.call = None
        ordinals = self.adapter.patched_call_ordinals
        if self.step < self.start_step or (ordinals is not None and self.ordinal not in ordinals):
            return None
        sample = bound[self.adapter.sample_input]
        batch = int(sample.shape[0])
        rows_t, sources, tail = self._rows_for(batch, sample.device)
        self.patched_steps.add(self.step)
        if self.adapter.strategy == "inject":
            # target rows selected for this batch size are reused by every later call of the same size
            self.call = _CallState(batch, rows_t, sources, selected=self._selected.setdefault(batch, {}), tail=tail)
            return None
        self._check_text_length(bound)
        if self._target_is_source(bound, batch, rows_t, sources):
            self.vacuous_steps.add(self.step)
            return None  # the target branch would compute the patched rows' own K/V: nothing to swap
        args, kwargs = self._target_inputs(bound, args, kwargs, batch, rows_t, sources)
        text = bound.get("encoder_hidden_states")
        tokens = int(text.shape[1]) if text is not None else 0
        extra_positions = torch.arange(batch, batch + len(rows_t), device=sample.device)
        self.call = _CallState(batch, rows_t, extra_positions, len(rows_t), tokens)
        return args, kwargs

    def _check_text_length(self, bound: dict[str, Any]) -> None:
        text = bound.get("encoder_hidden_states")
        target_text = self.recorded.inputs.get("encoder_hidden_states")
        if text is not None and target_text is not None and text.shape[1:] != target_text.shape[1:]:
            raise PatchError(
                f"the target prompt encodes to {tuple(target_text.shape[1:])} but the prompt to {tuple(text.shape[1:])}; "
                "the pipeline must pad prompts to a fixed length (max_sequence_length) to be patched"
            )

    def _target_is_source(self, bound: dict[str, Any], batch: int, rows: torch.Tensor, sources: torch.Tensor) -> bool:
        """Whether every prompt input of the patched rows equals the target's (checked once per batch size).

        Then the extra rows would reproduce the patched rows' own text K/V, so the call runs unpatched
        and stays bit-identical to the raw pipeline (extra rows change the batch size, and with it the
        kernels of a one-row call, in the last bits).
        """
        same = self._same_target.get(batch)
        if same is None:
            compared = 0
            same = True
            for name in self.adapter.prompt_inputs:
                value = bound.get(name)
                if not torch.is_tensor(value) or value.ndim == 0 or value.shape[0] != batch:
                    continue
                target = self.recorded.inputs[name].index_select(0, sources.to(value.device)).to(value.dtype)
                compared += 1
                if not torch.equal(value.index_select(0, rows), target):
                    same = False
                    break
            same = same and compared > 0
            self._same_target[batch] = same
        return same

    def _target_inputs(
        self,
        bound: dict[str, Any],
        args: tuple,
        kwargs: dict[str, Any],
        batch: int,
        rows: torch.Tensor,
        sources: torch.Tensor,
    ) -> tuple[tuple, dict[str, Any]]:
        """The call's arguments with the target branch appended as extra rows.

        The extra rows take the patched rows' noisy inputs (latents, timestep, ...) and the target's
        prompt inputs.
        """
        for name in self.adapter.batched_inputs:
            value = bound.get(name)
            if not torch.is_tensor(value) or value.ndim == 0 or value.shape[0] != batch:
                continue
            if name in self.adapter.prompt_inputs:
                extra = self.recorded.inputs[name].index_select(0, sources.to(value.device)).to(value.dtype)
            else:
                extra = value.index_select(0, rows)
            args, kwargs = replace_argument(self._parameters, args, kwargs, name, torch.cat([value, extra]))
        return args, kwargs

    def _drop_extra_rows(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if not is_active(self) or self.call is None or self.call.extra == 0:
            return None
        keep, exited = self.call.batch, self.call.exited
        self.call = None
        return None if exited else _first_rows(output, keep)

    def _exit_rows(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Forward hook of the last mapped block: its outputs keep the user's rows only."""
        call = self.call
        if call is None or call.extra == 0 or not is_active(self) or not isinstance(output, tuple):
            return None
        rows = call.batch + call.extra
        if not all(item is None or (torch.is_tensor(item) and item.ndim and item.shape[0] == rows) for item in output):
            return None  # an output this exit does not know: the extra rows stay to the end
        call.exited = True
        self.exit_steps.add(self.step)
        return type(output)(None if item is None else item[: call.batch] for item in output)

    def _after_exit(
        self, parameters: tuple, names: tuple[str, ...], module: nn.Module, args: tuple, kwargs: dict[str, Any]
    ) -> Any:
        """Pre-hook of every module after the exit: its per-row inputs keep the user's rows only."""
        call = self.call
        if call is None or not call.exited or not is_active(self):
            return None
        rows = call.batch + call.extra
        bound = bind_arguments(parameters, args, kwargs)
        changed = False
        for name in names:
            value = bound.get(name)
            if torch.is_tensor(value) and value.ndim and value.shape[0] == rows:
                args, kwargs = replace_argument(parameters, args, kwargs, name, value[: call.batch])
                changed = True
        return (args, kwargs) if changed else None

    def _inject_projection(
        self, layer: TextAttentionLayer, kind: str, module: nn.Module, args: tuple, output: torch.Tensor
    ) -> Any:
        """``inject``: replace the patched rows with the target's K/V (precomputed, selected once per batch size)."""
        call = self.call
        if call is None or not is_active(self):
            return None
        key = (layer.index, kind)
        selected = call.selected.get(key)
        if selected is None:
            target = self._target_projection(layer, kind, module)
            if target.shape[1:] != output.shape[1:]:
                raise PatchError(
                    f"{layer.name}: target {kind}s have shape {tuple(target.shape[1:])}, the prompt's "
                    f"{tuple(output.shape[1:])}; the pipeline must pad prompts to a fixed length to be patched"
                )
            selected = call.selected[key] = target.index_select(0, call.sources).to(output.dtype)
        self._acted(layer, kind)
        return _replace_rows(output, call.rows, selected, call.tail)

    def _copy_projection(
        self, layer: TextAttentionLayer, kind: str, module: nn.Module, args: tuple, output: torch.Tensor
    ) -> Any:
        """``extra_rows``: copy the target branch's text K/V (the extra rows) into the patched rows."""
        call = self.call
        if call is None or not is_active(self):
            return None
        if output.shape[0] != call.batch + call.extra:
            raise PatchError(
                f"{layer.name}: expected {call.batch + call.extra} rows in the {kind} projection, got {output.shape[0]}"
            )
        donor = output.index_select(0, call.sources)
        self._acted(layer, kind)
        if layer.text_prefix_only:
            patched = output.clone()
            patched[call.rows, : call.text_tokens] = donor[:, : call.text_tokens]
            return patched
        return output.index_copy(0, call.rows, donor)

    def _acted(self, layer: TextAttentionLayer, kind: str) -> None:
        self.acted.setdefault((layer.index, kind), set()).add(self.step)

    def _on_layer(self, layer: TextAttentionLayer, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if self.call is not None and self.ran is not None and is_active(self):
            self.ran.setdefault(layer.index, set()).add(self.step)

    # -- the invariant -------------------------------------------------------------------------------
    def acted_steps(self) -> dict[str, dict[str, int]]:
        """``{layer name: {"key": n, "value": n}}``: at how many steps each patched projection replaced rows."""
        return {
            layer.name: {kind: len(self.acted.get((layer.index, kind), ())) for kind in ("key", "value")}
            for layer in self.layers
        }

    def missing(self) -> list[tuple[str, str, list[int]]]:
        """``(projection name, kind, steps)`` for every patched step at which a mapped projection did not act.

        A step counts as patched once the denoiser's step hook marked it; steps whose swap would be an
        identity (the target is the prompt itself, ``extra_rows``) need no projection to act. With per-call
        hooks the attention modules' calls are counted too: a step at which a cache (diffusers' first-block
        cache) skipped the whole layer needs no act either, as long as the layer acted at some patched
        step; a layer that never ran, or ran without its projections' hooks, is a gap.
        """
        expected = sorted(self.patched_steps - self.vacuous_steps)
        gaps = []
        for layer in self.layers:
            steps = expected
            if self.ran is not None:
                ran = [step for step in expected if step in self.ran.get(layer.index, ())]
                steps = ran or expected
            for kind, name in (("key", layer.key), ("value", layer.value)):
                seen = self.acted.get((layer.index, kind), set())
                absent = [step for step in steps if step not in seen]
                if absent:
                    gaps.append((name, kind, absent))
        return gaps

    def _on_attention(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        if self.call is None or not is_active(self):
            return None
        in_kwargs = "attention_mask" in kwargs
        bias = kwargs.get("attention_mask") if in_kwargs else (args[2] if len(args) > 2 else None)
        if bias is None:
            return None
        reused = self.call.bias
        if reused is not None and reused[0] is bias:  # the denoiser hands every block the same bias tensor
            return _with_bias(args, kwargs, in_kwargs, reused[1])
        key = ("bias", bias.dtype)
        selected = self.call.selected.get(key)
        if selected is None:
            if self._bias is None:
                self._bias = self.adapter.attention_bias(self._layout_inputs(), bias.dtype)
            selected = self.call.selected[key] = self._bias.index_select(0, self.call.sources).to(bias.dtype)
        if selected.shape[1:] != bias.shape[1:]:
            raise PatchError(
                f"the target prompt's padding mask has shape {tuple(selected.shape[1:])}, the prompt's "
                f"{tuple(bias.shape[1:])}; the pipeline must pad prompts to a fixed length to be patched"
            )
        patched = _replace_rows(bias, self.call.rows, selected, self.call.tail)
        self.call.bias = (bias, patched)
        return _with_bias(args, kwargs, in_kwargs, patched)

    # -- target K/V ----------------------------------------------------------------------------------
    def _layout_inputs(self) -> dict[str, Any]:
        """The recorded prompt inputs tiled to the first patched call's batch size."""
        inputs = dict(self.recorded.inputs)
        if self._layout != self._recorded_batch():
            for name in ("encoder_hidden_states", "encoder_attention_mask"):
                if torch.is_tensor(inputs.get(name)):
                    inputs[name] = torch.cat([inputs[name], inputs[name]])
        return inputs

    def _target_projection(self, layer: TextAttentionLayer, kind: str, module: nn.Module) -> torch.Tensor:
        """The target's K or V for ``layer``: the hooked module's own forward on the recorded prompt states.

        Computed inside the patched denoiser call (so a LoRA scale set for the call applies) and
        cached for the rest of the generation; ``module.forward`` bypasses the hooks (and the resident
        patch point of a compiled denoiser, :func:`~safetext.patching.compiled.unpatched_forward`).
        """
        key = (layer.index, kind)
        if key not in self._targets:
            if self._states is None:
                self._states = self.adapter.text_states(self.denoiser, self._layout_inputs())
            attention = self.denoiser.get_submodule(layer.name)
            self._targets[key] = unpatched_forward(module)(self.adapter.layer_input(attention, self._states))
        return self._targets[key]


def _with_bias(args: tuple, kwargs: dict[str, Any], in_kwargs: bool, bias: torch.Tensor) -> tuple[tuple, dict[str, Any]]:
    """An attention call's ``(args, kwargs)`` with ``attention_mask`` (keyword or third positional) set to ``bias``."""
    if in_kwargs:
        return args, {**kwargs, "attention_mask": bias}
    return (*args[:2], bias, *args[3:]), kwargs


def _first_rows(output: Any, keep: int) -> Any:
    """``output`` with every batched tensor cut to its first ``keep`` rows (tuple, dataclass or tensor)."""
    if torch.is_tensor(output):
        return output[:keep] if output.ndim else output
    if isinstance(output, tuple):
        return type(output)(_first_rows(item, keep) for item in output)
    if dataclasses.is_dataclass(output):
        changes = {f.name: _first_rows(getattr(output, f.name), keep) for f in dataclasses.fields(output)}
        return dataclasses.replace(output, **changes)
    return output
