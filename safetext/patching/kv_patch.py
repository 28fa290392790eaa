"""KVPatch: swap the text keys/values of a few attention layers for a target prompt's, from a start step on.

    >>> from safetext.patching import KVPatch
    >>> patch = KVPatch(pipe, layers=["up_blocks.0.attentions.2.transformer_blocks.1.attn2"], start_fraction=0.08)
    >>> out, report = patch.generate(prompt='A sign that says "cat"', target_prompt='A sign that says "dog"',
    ...                              generator=torch.Generator().manual_seed(0))
    >>> report.start_step, report.layers
    (4, ('up_blocks.0.attentions.2.transformer_blocks.1.attn2',))

How one call works:

1. The target prompt's denoiser inputs are recorded by the pipeline itself
   (:func:`~safetext.patching.recording.record_denoiser_inputs`): its own prompt encoding, so shapes,
   dtypes, padding and devices match the user's call; the denoiser does not run.
2. Hooks are registered for this call only: a forward pre-hook on the denoiser counts steps (a step is
   a change of timestep; the count restarts every call) and, from step ``ceil(start_fraction * steps)``
   on, marks the call as patched; forward hooks on the mapped layers' K/V ``nn.Linear`` modules replace
   the patched rows of their output. Only the conditional rows of the flagged prompts are patched
   (CFG batches are ``[uncond | cond]``, prompt-major); every other row keeps its own K/V.

   * cross-attention / added-K/V models (``inject``): the target K/V are the same projections applied
     to the recorded prompt states, computed once inside the first patched call. Zero extra denoiser
     forwards. PixArt also gets the target's padding bias in the patched layers.
   * SD3 / Flux (``extra_rows``): the text stream depends on the noisy image, so the target branch
     runs on the same noisy input at every patched step, as extra batch rows of the same denoiser call
     (same latents and timestep, the target's prompt inputs); the K/V hooks copy the extra rows' text
     K/V into the patched rows; after the block of the last mapped layer the extra rows leave the batch
     (early exit, :func:`~safetext.patching.adapters.joint.plan_early_exit`), so later blocks and the output
     head run on the user's rows only (``PatchReport.early_exit`` says whether it was used). One forward
     with ``B + E`` rows costs less than a second call: per-call fixed costs are paid once (a one-row
     Flux call grows to two rows, about 1.3x the time of one on the tiny model, against 2x for a
     second call). When the target's prompt inputs equal the patched rows' own (the target is the
     prompt itself), the swap would change nothing and the call runs unpatched, bit-identical to the
     raw pipeline (growing a one-row batch would move its one-row matmuls to another kernel); when
     that holds at every patched step (the flagged text never reaches the denoiser, e.g. it lies past
     ``max_sequence_length``), ``PatchReport.identity_swap`` is set and the verdict says so in a note.
     The image is then returned, not withheld: the denoiser saw exactly the sanitized prompt's inputs.
3. All hooks are removed in ``finally``. State lives in a per-call object activated in a context
   variable (:mod:`safetext.patching.hooks`), so threads sharing the pipeline never see each other's
   patch.

4. The output is returned only if the patch demonstrably acted: every mapped K/V projection replaced
   rows at every patched step (a step at which a cache skipped the whole layer excepted); otherwise
   :class:`~safetext.errors.PatchNotAppliedError` withholds it (``PatchReport.acted_steps`` has the counts).

A compiled denoiser (``torch.compile``, ``Module.compile()``, ``compile_repeated_blocks()``) is patched
through resident patch points installed once instead of per-call hooks, which compiled graphs skip
(:mod:`safetext.patching.compiled`).

Hooks are registered at call time on the modules found by name at that moment, so LoRA adapters loaded
with peft before the call are inside the hooked module and their delta is part of the K/V (the target
K/V too). Fused QKV projections are refused (:func:`~safetext.patching.layers.check_patchable`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from torch import nn

from safetext.errors import LayerMapError, PatchError, PatchNotAppliedError
from safetext.patching.compiled import ResidentPoints, compile_mode, original_module, resident_points, text_layer_ancestors
from safetext.patching.hooks import installed
from safetext.patching.layers import (
    DENOISER_COMPONENTS,
    check_patchable,
    is_lora_wrapped,
    resolve_adapter,
    select_layers,
)
from safetext.patching.recording import ExecutionDeviceCache, forward_parameters, record_denoiser_inputs
from safetext.patching.session import PatchSession


def start_step_for(start_fraction: float, total_steps: int, *, clamp: bool = True) -> int:
    """First patched step index: ``ceil(start_fraction * total_steps)``, exact for fractions like 4/50.

    A map's start fraction comes from a 20-50 step schedule. On a few-step schedule (turbo, LCM,
    Lightning, Flux schnell: 1-4 steps) ``ceil`` can land on or past the end, which would patch nothing:
    a start fraction below 1 is clamped into the schedule, ``min(ceil(f * n), n - 1)``, so at least the
    last step is patched (SDXL's 0.08 at 1 step: step 0; the glyph map's 0.2 at 1 step: step 0, at 4
    steps: step 1 as before). ``start_fraction == 1`` still patches no step.

    Args:
        start_fraction: in [0, 1]; 0 patches every step, 1 patches none.
        total_steps: the run's number of denoising steps.
        clamp: clamp into the schedule (False: the plain ``ceil``, capped at ``total_steps``).
    """
    fraction = Fraction(start_fraction).limit_denominator(10_000)
    step = min(total_steps, math.ceil(fraction * total_steps))
    if clamp and fraction < 1 and total_steps > 0:
        step = min(step, total_steps - 1)
    return step


@dataclass(frozen=True)
class PatchReport:
    """What one patched generation did (recorded in the verdict's ``details``).

    Attributes:
        family: adapter family (``unet_cross``, ``added_kv``, ``pixart``, ``sd3_joint``, ``flux``).
        strategy: ``inject`` or ``extra_rows``.
        layers: attention-module names patched, forward order.
        layer_indices: their 0-based forward-order indices.
        start_fraction: the configured start, as a fraction of the schedule.
        start_step: first patched step index.
        scheduled_start_step: ``ceil(start_fraction * total_steps)`` before the clamp into the
            schedule; differs from ``start_step`` when the schedule is too short for the fraction.
        total_steps: denoising steps of the run.
        patched_steps: steps at which K/V were actually replaced.
        patched_prompts: indices of the prompts whose conditional rows were patched.
        lora_layers: patched layers whose K/V projection is wrapped by a peft LoRA layer.
        record_seconds: time spent recording the target's conditioning (the pipeline's prompt
            encoding); the patch's other cost is inside the denoiser calls.
        acted_steps: ``{layer name: {"key": n, "value": n}}``, at how many denoising steps each mapped
            K/V projection's hook replaced rows; every patched step appears (checked before the output
            is returned, see :meth:`KVPatch.run`).
        compile_mode: how the denoiser is compiled (``torch.compile``, ``Module.compile``,
            ``compile_repeated_blocks``), ``None`` when it runs eagerly.
        early_exit: ``extra_rows`` only: ``{"used", "block", "blocks_after", "steps"}`` when the target
            rows left after the last mapped block, ``{"used": False, "fallback": reason}`` when they ran
            through every block; ``None`` for ``inject`` families.
        identity_steps: patched steps at which the target's prompt inputs equaled the prompt's own
            (``extra_rows``): the swap is an identity and the step ran unpatched.
    """

    family: str
    strategy: str
    layers: tuple[str, ...]
    layer_indices: tuple[int, ...]
    start_fraction: float
    start_step: int
    total_steps: int
    patched_steps: int
    patched_prompts: tuple[int, ...]
    lora_layers: tuple[str, ...] = ()
    record_seconds: float = 0.0
    scheduled_start_step: int | None = None
    acted_steps: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    compile_mode: str | None = None
    early_exit: Mapping[str, Any] | None = None
    identity_steps: int = 0

    @property
    def identity_swap(self) -> bool:
        """True when every patched step was an identity swap: the target reached the denoiser as the prompt itself."""
        return self.patched_steps > 0 and self.identity_steps == self.patched_steps

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines for the verdict's notes: an identity swap, an early exit that fell back."""
        notes = []
        if self.identity_swap:
            notes.append(
                "the sanitized prompt reaches the denoiser exactly as the prompt does (the flagged text is cut by "
                "the text encoders' max_sequence_length or encodes to nothing), so no keys/values differed: the "
                "image is the unpatched one, which equals the sanitized prompt's"
            )
        if self.early_exit is not None and "fallback" in self.early_exit and self.compile_mode is None:
            notes.append(f"target rows ran through every block (no early exit): {self.early_exit['fallback']}")
        return tuple(notes)

    @property
    def start_step_clamped(self) -> bool:
        """True when the map's start step was past the schedule's end and was clamped into it."""
        return self.scheduled_start_step is not None and self.scheduled_start_step != self.start_step

    def as_details(self) -> dict[str, Any]:
        """JSON-ready dict for ``Verdict.details``."""
        return {
            "family": self.family,
            "strategy": self.strategy,
            "layers": list(self.layers),
            "layer_indices": list(self.layer_indices),
            "start_fraction": self.start_fraction,
            "start_step": self.start_step,
            "start_step_clamped": self.start_step_clamped,
            "scheduled_start_step": self.start_step if self.scheduled_start_step is None else self.scheduled_start_step,
            "total_steps": self.total_steps,
            "patched_steps": self.patched_steps,
            "patched_prompts": list(self.patched_prompts),
            "lora_layers": list(self.lora_layers),
            "acted_steps": {name: dict(counts) for name, counts in self.acted_steps.items()},
            "compile_mode": self.compile_mode,
            "early_exit": None if self.early_exit is None else dict(self.early_exit),
            "identity_swap": self.identity_swap,
            "identity_steps": self.identity_steps,
        }


def prompt_batch_layout(
    pipe: Any, call_kwargs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None
) -> tuple[int, int]:
    """``(number of prompts, images per prompt)`` of a pipeline call (``parameters``: cached call signature)."""
    prompt = call_kwargs.get("prompt")
    if isinstance(prompt, str):
        prompts = 1
    elif isinstance(prompt, (list, tuple)):
        prompts = len(prompt)
    elif call_kwargs.get("prompt_embeds") is not None:
        prompts = int(call_kwargs["prompt_embeds"].shape[0])
    else:
        raise PatchError("KVPatch needs the call's `prompt` (a string or a list of strings)")
    per_prompt = call_kwargs.get("num_images_per_prompt")
    if per_prompt is None:
        parameter = (parameters if parameters is not None else inspect.signature(pipe.__call__).parameters).get(
            "num_images_per_prompt"
        )
        per_prompt = parameter.default if parameter is not None and isinstance(parameter.default, int) else 1
    return prompts, int(per_prompt)


class KVPatch:
    """Swap text K/V of selected layers for those of a target prompt, from a start step onward.

    Args:
        pipe: a diffusers text-to-image pipeline (SD1.x/2.x, SDXL, IF, PixArt, SD3, Flux, glyph, ...).
        layers: attention-module names or forward-order indices to patch (``None``: every text layer).
        start_fraction: first patched step as a fraction of the schedule, in [0, 1]: patching starts at
            step ``ceil(start_fraction * num_inference_steps)``, so one value works at any step count.
        early_exit: ``extra_rows`` families (SD3, Flux): cut the target rows after the last mapped block
            (default). ``False`` runs them through every block (for comparisons; same output up to the
            last bits of batch-size dependent kernels).

    Raises:
        UnsupportedArchitectureError: unknown denoiser.
        LayerMapError: a layer name or index the model lacks, or a start fraction outside [0, 1].
        PatchError: fused QKV projections on a selected layer.
    """

    def __init__(
        self, pipe: Any, layers: Sequence[str | int] | None = None, start_fraction: float = 0.0, *, early_exit: bool = True
    ) -> None:
        if not 0.0 <= float(start_fraction) <= 1.0:
            raise LayerMapError(f"start_fraction must be in [0, 1], got {start_fraction!r}")
        self.pipe = pipe
        self.denoiser, self.adapter = resolve_adapter(pipe)
        available = tuple(self.adapter.discover(self.denoiser))
        self.layers = available if layers is None else select_layers(available, list(layers))
        self.start_fraction = float(start_fraction)
        self.early_exit = bool(early_exit)
        check_patchable(self.denoiser, self.layers)
        self._pipe_parameters = inspect.signature(pipe.__call__).parameters
        self._denoiser_parameters = forward_parameters(self.denoiser)
        self._device_cache = ExecutionDeviceCache()
        self._component = next(
            (name for name in DENOISER_COMPONENTS if original_module(getattr(pipe, name, None)) is self.denoiser), None
        )
        self._available = available
        self.prepare()

    def prepare(self) -> tuple[str | None, ResidentPoints | None]:
        """Install the resident patch points if the denoiser is compiled (see :mod:`safetext.patching.compiled`).

        Cheap when nothing changed; :class:`~safetext.SafeTextGenerator` calls it before every request so
        that the points are in place before a compiled denoiser is first traced, clean requests included.

        Returns:
            ``(compile mode or None, the resident points or None)``.
        """
        called = getattr(self.pipe, self._component, self.denoiser) if self._component else self.denoiser
        # looked up per request: a submodule compiled out of place and assigned back since counts too
        mode = compile_mode(called, self.denoiser, text_layer_ancestors(self.denoiser, self._available))
        if mode is None:
            return None, None
        return mode, resident_points(called, self.denoiser, self.adapter, mode)

    def generate(self, *, target_prompt: str | list[str], **call_kwargs: Any) -> tuple[Any, PatchReport]:
        """Call the pipeline with ``call_kwargs``, patching every prompt toward ``target_prompt``.

        Args:
            target_prompt: the prompt(s) whose K/V replace the user's (same count as ``prompt``).
            **call_kwargs: the pipeline's own arguments (``prompt``, ``generator``, ...).

        Returns:
            ``(pipeline output, PatchReport)``.
        """
        return self.run(call_kwargs, {"prompt": target_prompt})

    def run(
        self,
        call_kwargs: Mapping[str, Any],
        target_kwargs: Mapping[str, Any],
        patched_prompts: Sequence[int] | None = None,
        *,
        require_patch: bool = False,
    ) -> tuple[Any, PatchReport]:
        """Run the pipeline once with the patch active for this call only.

        The output is returned only if the patch demonstrably acted: at every step the step hook marked
        as patched, the hook of every mapped K/V projection replaced rows (counts in
        ``PatchReport.acted_steps``). A hook that never fired (a compiled module that bypasses it, a layer
        the forward never calls) raises :class:`~safetext.errors.PatchNotAppliedError` instead.

        Args:
            call_kwargs: the pipeline call's arguments, as the user gave them.
            target_kwargs: argument overrides that make the target call (e.g. sanitized ``prompt`` and
                ``prompt_2``); the target is recorded with ``{**call_kwargs, **target_kwargs}``.
            patched_prompts: indices of the prompts to patch (default: all). Rows of the other prompts
                keep their own K/V.
            require_patch: raise :class:`~safetext.errors.PatchNotAppliedError` before generating when
                no step would be patched (start step at or past the last step), instead of running the
                pipeline unpatched.

        Returns:
            ``(pipeline output, PatchReport)``.

        Raises:
            PatchNotAppliedError: a patched step at which a mapped projection did not act, or (with
                ``require_patch``) nothing to patch.
        """
        prompts, per_prompt = prompt_batch_layout(self.pipe, call_kwargs, self._pipe_parameters)
        chosen = tuple(range(prompts)) if patched_prompts is None else tuple(sorted(set(patched_prompts)))
        if any(not 0 <= index < prompts for index in chosen):
            raise PatchError(f"patched_prompts {list(chosen)} out of range for {prompts} prompt(s)")
        check_patchable(self.denoiser, self.layers)
        mode, points = self.prepare()
        token = None if points is None else points.token
        started = time.perf_counter()
        recorded = record_denoiser_inputs(
            self.pipe,
            self.denoiser,
            {**call_kwargs, **target_kwargs},
            pipe_parameters=self._pipe_parameters,
            denoiser_parameters=self._denoiser_parameters,
            execution_device=self._device_cache.get(self.pipe),
            resident_token=token,
        )
        record_seconds = time.perf_counter() - started
        start_step = start_step_for(self.start_fraction, recorded.total_steps)
        session = PatchSession(
            denoiser=self.denoiser,
            adapter=self.adapter,
            layers=self.layers,
            recorded=recorded,
            start_step=start_step,
            prompts=prompts,
            per_prompt=per_prompt,
            patched_prompts=chosen,
            parameters=self._denoiser_parameters,
            resident_token=token,
            exit_enabled=self.early_exit,
        )
        if points is not None:
            session.plan_resident_exit(points)
        if start_step >= recorded.total_steps or not chosen:
            if require_patch:
                raise PatchNotAppliedError(
                    f"no denoising step would be patched: the layer map starts at step {start_step} "
                    f"(start_fraction {self.start_fraction}) of a {recorded.total_steps}-step run. Lower the "
                    "layer map's start_fraction or run more num_inference_steps."
                )
            output = self.pipe(**call_kwargs)
        else:
            # a compiled denoiser is patched by its resident points: nothing to register per call
            with installed(session, session.register if points is None else _register_nothing):
                output = self.pipe(**call_kwargs)
            self._check_acted(session, recorded.total_steps, start_step)
        report = self._report(session, recorded.total_steps, start_step, chosen, record_seconds)
        return output, dataclasses.replace(report, compile_mode=mode)

    def _check_acted(self, session: PatchSession, total: int, start: int) -> None:
        """Raise :class:`PatchNotAppliedError` unless every mapped projection acted at every patched step."""
        if not session.patched_steps:
            raise PatchNotAppliedError(
                f"the patch never ran: the step hook on the {type(self.denoiser).__name__} saw no denoiser call "
                f"from step {start} of {total} on (the pipeline bypasses the denoiser module safetext hooked: "
                "was the denoiser replaced or compiled after the SafeTextGenerator/KVPatch was created?). "
                "The output is withheld."
            )
        gaps = session.missing()
        if gaps:
            shown = "; ".join(f"{name} at steps {steps}" for name, _, steps in gaps[:4])
            more = f" and {len(gaps) - 4} more" if len(gaps) > 4 else ""
            raise PatchNotAppliedError(
                f"the patch did not act on every patched step and layer: the hook of {shown}{more} never replaced "
                f"the text keys/values (patched steps {sorted(session.patched_steps)}). The module is bypassed: "
                "the forward never calls it (a layer map naming a module this model does not run), or a compiled "
                "graph traced before the hook was registered. The output is withheld."
            )

    def _report(
        self, session: PatchSession, total: int, start: int, chosen: tuple[int, ...], record_seconds: float
    ) -> PatchReport:
        lora = tuple(layer.name for layer in self.layers if is_lora_wrapped(self.denoiser.get_submodule(layer.key)))
        return PatchReport(
            family=self.adapter.family,
            strategy=self.adapter.strategy,
            layers=tuple(layer.name for layer in self.layers),
            layer_indices=tuple(layer.index for layer in self.layers),
            start_fraction=self.start_fraction,
            start_step=start,
            total_steps=total,
            patched_steps=len(session.patched_steps),
            patched_prompts=chosen,
            lora_layers=lora,
            record_seconds=record_seconds,
            scheduled_start_step=start_step_for(self.start_fraction, total, clamp=False),
            acted_steps=session.acted_steps(),
            early_exit=session.early_exit(),
            identity_steps=len(session.vacuous_steps & session.patched_steps),
        )

    def __repr__(self) -> str:
        names = ", ".join(layer.name for layer in self.layers[:3]) + (", ..." if len(self.layers) > 3 else "")
        return f"KVPatch({self.adapter.family}, layers=[{names}], start_fraction={self.start_fraction})"


def _register_nothing(hooks: Any) -> None:
    return None


def denoiser_hooks_snapshot(module: nn.Module) -> dict[str, tuple[int, int]]:
    """``{module name: (#forward hooks, #forward pre-hooks)}`` for every submodule (leak checks)."""
    return {name: (len(child._forward_hooks), len(child._forward_pre_hooks)) for name, child in module.named_modules()}
