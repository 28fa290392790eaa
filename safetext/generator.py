"""SafeTextGenerator: wrap a diffusers pipeline so flagged words are not written into its images.

    >>> gen = SafeTextGenerator(pipe, policy="default")
    >>> out = gen('A protest sign that says "<slur>"', generator=torch.Generator().manual_seed(0))
    >>> out.images[0]      # the same picture, with a benign word on the sign
    >>> out.verdict        # findings, replacements, the layers patched and the start step

A request goes through four stages:

1. **Guard every prompt slot.** The pipeline's own ``__call__`` signature says which slots exist
   (``prompt``, ``prompt_2``, ``prompt_3``; strings or batched lists); each is scanned with the policy.
   Negative prompts steer *away* from content and are never rendered as text, so they are not scanned.
   Precomputed ``prompt_embeds`` / ``pooled_prompt_embeds`` cannot be scanned and are refused with
   :class:`~safetext.errors.PolicyError` unless ``allow_prompt_embeds=True``.
2. **Decide.** ``block`` anywhere raises :class:`~safetext.errors.PolicyViolation` carrying the verdict
   (never a silent black image). ``allow`` / ``log`` run the untouched pipeline: no hooks, no recording,
   bit-identical output.
3. **Patch.** For ``neutralize``, the layer map for the model (explicit > preset > all layers, see
   :func:`~safetext.patching.resolve_layer_map`) drives a :class:`~safetext.patching.KVPatch`: the
   sanitized prompt's text K/V replace the user's in the mapped layers from the map's start step, in the
   conditional rows of the flagged prompts only (in a batch, clean prompts keep their own K/V).
4. **Report.** The pipeline's own output object is returned with ``.verdict`` set on it (a fresh object
   per call). The verdict's ``details`` record the layers, start step, family, layer map and its source,
   and ``details["timings"]`` the scan time and the recording overhead.

One generator may serve several threads at once: all per-request state lives in the call, and the
patch's hooks act only in the thread that registered them. The wrapped diffusers pipeline is another
matter: pipelines store per-call settings on themselves (``_guidance_scale``, ...), schedulers keep step
state, and transformers 5 fast tokenizers are not safe to call from two threads at once
(huggingface/transformers#47085). For concurrent serving, give each worker its own pipeline (as
``safetext serve`` does) or make sure concurrent calls share settings and a guarded tokenizer.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from safetext.errors import LayerMapError, PatchNotAppliedError, PolicyError, PolicyViolation
from safetext.patching import KVPatch, LayerMap, resolve_layer_map
from safetext.policy.verdict import Action, Verdict
from safetext.verify import ImageVerifier, output_images

logger = logging.getLogger("safetext.generator")

PROMPT_SLOT = re.compile(r"^prompt(_\d+)?$")
EMBEDS_ARGUMENT = re.compile(r"^(?!negative_).*prompt_embeds(_\d+)?$")
#: What a generator does with a flagged prompt on a model that has no localized layer map.
UNKNOWN_MODEL_MODES: tuple[str, ...] = ("all_layers", "raise", "block")
UnknownModelMode = Literal["all_layers", "raise", "block"]


def unknown_model_mode(on_unknown_model: str | None, strict: bool) -> str:
    """The ``on_unknown_model`` mode of a generator; ``strict=True`` is an alias of ``"raise"``.

    Raises:
        LayerMapError: an unknown mode, or ``strict=True`` together with another mode.
    """
    if on_unknown_model is None:
        return "raise" if strict else "all_layers"
    if on_unknown_model not in UNKNOWN_MODEL_MODES:
        raise LayerMapError(
            f"on_unknown_model must be one of {', '.join(repr(m) for m in UNKNOWN_MODEL_MODES)}, got {on_unknown_model!r}"
        )
    if strict and on_unknown_model != "raise":
        raise LayerMapError(
            f"strict=True means on_unknown_model='raise' but on_unknown_model={on_unknown_model!r} was given; pass one"
        )
    return on_unknown_model


@dataclass(frozen=True)
class _Decision:
    """The scan result of one request: the merged verdict and, when patching, what to patch."""

    verdict: Verdict
    patched_prompts: tuple[int, ...]
    target_kwargs: dict[str, Any]


class GenerationTuple(tuple):
    """A pipeline's ``return_dict=False`` tuple with the request's ``verdict`` attached."""

    verdict: Verdict


def _generator_states(generator: Any) -> Any:
    """Saved states of the call's torch generator(s), so an escalation re-run starts from the same noise.

    Without a generator the pipeline draws from torch's default generators: their states are saved instead.
    """
    if generator is None:
        import torch

        return ("default", torch.random.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)
    if isinstance(generator, (list, tuple)):
        return [g.get_state() for g in generator]
    return generator.get_state()


def _restore_generator_states(generator: Any, states: Any) -> None:
    if states is None:
        return
    if generator is None:
        import torch

        _, cpu, cuda = states
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        return
    if isinstance(generator, (list, tuple)):
        for g, state in zip(generator, states):
            g.set_state(state)
    else:
        generator.set_state(states)


def _load_policy(policy: Any, allow_paths: bool = False) -> Any:
    if policy is None or isinstance(policy, (str, os.PathLike, Mapping)):
        from safetext.policy import load_policy

        return load_policy(policy, allow_paths=allow_paths)
    if callable(getattr(policy, "scan", None)):
        return policy
    raise PolicyError(
        f"policy must be a Policy (anything with .scan(text, slot)), a policy name or file path, or None for "
        f"the default policy; got {type(policy).__name__}"
    )


def merge_slot_verdicts(verdicts: Mapping[str, Verdict]) -> Verdict:
    """One prompt's verdict from its slots' verdicts (most severe action, every finding, each slot's sanitized text)."""
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    from safetext.policy.engine import Policy

    return Policy.merge_verdicts(dict(verdicts))


def merge_prompt_verdicts(verdicts: Sequence[Verdict]) -> Verdict:
    """The request's verdict for a batch: most severe action; findings' slots carry the prompt index.

    The first prompt's text fills ``prompt``/``sanitized_prompt``; ``details["prompts"]`` holds every
    prompt's own verdict.
    """
    if len(verdicts) == 1:
        return verdicts[0]
    first = verdicts[0]
    findings = tuple(
        finding.model_copy(update={"slot": f"{finding.slot}[{index}]"})
        for index, verdict in enumerate(verdicts)
        for finding in verdict.findings
    )
    return Verdict(
        action=max((v.action for v in verdicts), key=lambda action: action.severity),
        prompt=first.prompt,
        sanitized_prompt=first.sanitized_prompt,
        findings=findings,
        rendered_spans=first.rendered_spans,
        policy=first.policy,
        notes=tuple(dict.fromkeys(note for v in verdicts for note in v.notes)),
        details={"prompts": [v.to_dict() for v in verdicts]},
    )


def attach_verdict(output: Any, verdict: Verdict) -> Any:
    """Set ``output.verdict`` (pipeline output dataclasses), or wrap a plain tuple so it carries one."""
    if isinstance(output, tuple) and not hasattr(output, "__dataclass_fields__"):
        wrapped = GenerationTuple(output)
        wrapped.verdict = verdict
        return wrapped
    object.__setattr__(output, "verdict", verdict)
    return output


class SafeTextGenerator:
    """Call a diffusers pipeline through a text-safety policy; flagged words are patched out of the image.

    Args:
        pipe: a diffusers text-to-image pipeline (SD1.x/2.x, SDXL, DeepFloyd IF, PixArt, SD3, Flux, or
            safetext's glyph model). Load LoRA adapters before generating; the patch hooks the
            LoRA-wrapped projections at call time.
        policy: a policy object (``.scan(text, slot) -> Verdict``), a shipped policy name, a policy
            YAML path, or None for the default policy.
        layer_map: a :class:`~safetext.patching.LayerMap`, a map file, or a preset name; None picks the
            shipped preset matching the model, else every text-attention layer (with a note in the
            verdict).
        strict: alias of ``on_unknown_model="raise"`` (kept for existing callers).
        on_unknown_model: what to do when no layer map is known for the model (no ``layer_map`` given
            and no shipped preset matches; ``safetext inspect`` shows why):

            * ``"all_layers"`` (default): patch every text-attention layer from step 0. The flagged
              word is still kept out of the image, but the whole prompt's influence is swapped in
              every layer, so the image drifts further from the unguarded one (composition, style,
              other text) than with a localized map; the verdict carries a note saying so.
            * ``"raise"``: refuse the model at construction (:class:`~safetext.errors.LayerMapError`).
            * ``"block"``: serve clean prompts as usual, but block flagged prompts
              (:class:`~safetext.errors.PolicyViolation`, the verdict's action ``block``) instead of
              patching them with the all-layer map.
        allow_prompt_embeds: let precomputed ``prompt_embeds`` through unscanned (default: refuse).
        metrics: an optional :class:`safetext.telemetry.SafetextMetrics` observed once per request.
        verifier: an :class:`~safetext.verify.ImageVerifier` that OCRs every image and escalates while
            toxic text is visible; default: the one the policy's ``verification`` section asks for (off
            in the default policy, on in ``strict``).
        allow_paths: let a policy file's list paths leave its folder (absolute, ``~``, ``..``); only for
            trusted policy files (see :func:`safetext.policy.load_policy`).

    Raises:
        UnsupportedArchitectureError: the pipeline's denoiser is unknown.
        LayerMapError: the layer map does not fit the model, or none exists and ``on_unknown_model='raise'``.
        PatchError: fused QKV projections (call ``pipe.unfuse_qkv_projections()`` first).
        PolicyError: the policy cannot be loaded.
    """

    def __init__(
        self,
        pipe: Any,
        policy: Any = None,
        layer_map: LayerMap | str | os.PathLike | None = None,
        strict: bool = False,
        *,
        on_unknown_model: UnknownModelMode | None = None,
        allow_prompt_embeds: bool = False,
        metrics: Any = None,
        verifier: Any = None,
        allow_paths: bool = False,
    ) -> None:
        self.pipe = pipe
        self.policy = _load_policy(policy, allow_paths)
        self.on_unknown_model = unknown_model_mode(on_unknown_model, strict)
        self.resolved = resolve_layer_map(pipe, layer_map, strict=self.on_unknown_model == "raise")
        self._escalation_patches: dict[str, KVPatch] = {}
        self.patch = KVPatch(
            pipe, [layer.name for layer in self.resolved.layers], self.resolved.layer_map.start_fraction
        )
        self.allow_prompt_embeds = bool(allow_prompt_embeds or getattr(self.policy, "allow_prompt_embeds", False))
        self.metrics = metrics
        self.verifier = verifier if verifier is not None else ImageVerifier.from_policy(self.policy)
        # the model's own choice of replacement words (a layer map's replacement_legibility), for a Policy
        self._replacer = getattr(self.policy, "replacer", None)
        self._legibility = self.resolved.layer_map.replacement_legibility
        self._signature = inspect.signature(pipe.__call__)
        self.prompt_slots = tuple(name for name in self._signature.parameters if PROMPT_SLOT.match(name))
        parameters = self._signature.parameters.values()
        # names a call may pass by keyword, and the leading ones it may pass by position (fast path of _bind)
        self._keyword_names = frozenset(
            p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        self._positional_names: tuple[str, ...] = ()
        for p in parameters:
            if p.kind is not p.POSITIONAL_OR_KEYWORD:
                break
            self._positional_names += (p.name,)

    @property
    def layer_map(self) -> LayerMap:
        """The layer map this generator patches with."""
        return self.resolved.layer_map

    # -- the call ------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Generate exactly like ``pipe(*args, **kwargs)``, guarded by the policy.

        Returns:
            The pipeline's output with ``.verdict`` attached.

        Raises:
            PolicyViolation: the policy blocks the request (``.verdict`` says why).
            PolicyError: a prompt slot is not text, or precomputed embeddings were passed.
        """
        call_kwargs = self._bind(args, kwargs)
        started = time.perf_counter()
        decision = self._decide(call_kwargs)
        timings: dict[str, float] = {"scan_seconds": time.perf_counter() - started}
        verdict = decision.verdict
        if verdict.action is Action.BLOCK:
            verdict = verdict.with_details(timings=timings)
            self._observe(verdict, None, timings)
            raise PolicyViolation(self._block_message(verdict), verdict)
        if decision.patched_prompts and self.on_unknown_model == "block" and self.resolved.source == "fallback":
            blocked = verdict.model_copy(update={"action": Action.BLOCK}).with_details(
                layer_map=self.resolved.layer_map.name, layer_map_source="fallback", timings=timings
            )
            blocked = blocked.with_note(
                "blocked instead of patched: no localized layer map for this model and on_unknown_model='block'"
            )
            self._observe(blocked, None, timings)
            raise PolicyViolation(
                "request blocked: the prompt needs patching, but this model has no localized layer map and the "
                "generator was created with on_unknown_model='block' (`safetext inspect` shows why no preset "
                "matched); see the exception's .verdict",
                blocked,
            )
        generation_started = time.perf_counter()
        verify = self.verifier is not None and (bool(decision.patched_prompts) or self.verifier.check_allowed)
        generator_states = _generator_states(call_kwargs.get("generator")) if verify else None
        self.patch.prepare()  # a compiled denoiser gets its patch points before it is first traced
        if not decision.patched_prompts:
            output = self.pipe(**call_kwargs)
        else:
            output, report, escalations = self._patched(call_kwargs, decision, generator_states)
            timings["patch_overhead_seconds"] = report.record_seconds
            verdict = verdict.with_details(
                **report.as_details(),
                layer_map=self.resolved.layer_map.name,
                layer_map_source=self.resolved.source,
            )
            if escalations:
                verdict = verdict.with_details(escalations=escalations)
            for note in (*self.resolved.notes, *report.notes):
                verdict = verdict.with_note(note)
            if report.start_step_clamped:
                verdict = verdict.with_note(
                    f"the layer map starts at step {report.scheduled_start_step} of {report.total_steps}, past this "
                    f"short schedule; patched from step {report.start_step} (the last step(s)) instead"
                )
        if verify:
            output, verdict = self._verify(call_kwargs, decision, output, verdict, generator_states, timings)
        timings["generation_seconds"] = time.perf_counter() - generation_started
        verdict = verdict.with_details(timings=timings)
        self._observe(verdict, timings["generation_seconds"], timings)
        return attach_verdict(output, verdict)

    def _patched(
        self, call_kwargs: dict[str, Any], decision: _Decision, generator_states: Any
    ) -> tuple[Any, Any, list[dict[str, Any]]]:
        """Run the patch; a neutralize verdict needs a patch that demonstrably acted.

        When the patch did not act (:class:`~safetext.errors.PatchNotAppliedError`: no step to patch, a
        bypassed hook), the policy's verification escalation steps that patch (``earlier_start``,
        ``all_layers``) are tried in order; without one that acts the error propagates and no image is
        returned.
        """
        try:
            output, report = self.patch.run(
                call_kwargs, decision.target_kwargs, decision.patched_prompts, require_patch=True
            )
            return output, report, []
        except PatchNotAppliedError as error:
            failure = error
        escalations: list[dict[str, Any]] = []
        for step in self.verifier.escalation if self.verifier is not None else ():
            patch = self._escalation_patch(step)
            if patch is None:
                continue
            _restore_generator_states(call_kwargs.get("generator"), generator_states)
            try:
                output, report = patch.run(
                    call_kwargs, decision.target_kwargs, decision.patched_prompts, require_patch=True
                )
            except PatchNotAppliedError as error:
                escalations.append({"step": step, "reason": "patch_not_applied", "error": str(error)})
                failure = error
                continue
            escalations.append(
                {"step": step, "reason": "patch_not_applied", "layers": list(report.layers), "start_step": report.start_step}
            )
            return output, report, escalations
        raise failure

    def _escalation_patch(self, step: str) -> KVPatch | None:
        """The patch an escalation step runs (built once per generator), or None when the step patches nothing new.

        ``earlier_start``: the map's layers from step 0 (None when the map already starts there);
        ``next_layers``: the map's layers plus as many again from the map's ``ranking`` (at least one),
        from step 0 (None without a ranking that adds a layer); ``all_layers``: every text-attention layer
        from step 0; any other step (``block``) patches nothing.
        """
        mapped = [layer.name for layer in self.resolved.layers]
        if step == "earlier_start" and self.resolved.layer_map.start_fraction == 0:
            return None
        if step == "next_layers":
            further = [name for name in self.resolved.layer_map.ranking or () if name not in mapped]
            if not further:
                return None
        elif step not in ("earlier_start", "all_layers"):
            return None
        patch = self._escalation_patches.get(step)
        if patch is None:
            if step == "next_layers":
                layers = mapped + further[: max(1, len(mapped))]
            else:
                layers = mapped if step == "earlier_start" else None
            patch = self._escalation_patches[step] = KVPatch(self.pipe, layers, 0.0)
        return patch

    def _expected_texts(self, decision: _Decision, image_count: int) -> list[str | None] | None:
        """Per image, the text a patched prompt's image should show (None for unpatched prompts)."""
        if self.verifier.expect != "replacement" or not decision.patched_prompts or not decision.target_kwargs:
            return None
        targets = next(iter(decision.target_kwargs.values()))
        targets = [targets] if isinstance(targets, str) else list(targets)
        per_prompt = max(1, image_count // len(targets))
        expected: list[str | None] = []
        for index in range(image_count):
            prompt = min(index // per_prompt, len(targets) - 1)
            if prompt not in decision.patched_prompts:
                expected.append(None)
                continue
            suffix = f"[{prompt}]" if len(targets) > 1 else ""
            words = [
                f.replacement for f in decision.verdict.findings
                if f.replacement and (not suffix or f.slot.endswith(suffix))
            ]
            expected.append(self.verifier.expected_text(targets[prompt], words))
        return expected

    def _verify(
        self,
        call_kwargs: dict[str, Any],
        decision: _Decision,
        output: Any,
        verdict: Verdict,
        generator_states: Any,
        timings: dict[str, float],
    ) -> tuple[Any, Verdict]:
        """OCR the images; while a check fails (toxic text visible, or with ``expect: replacement`` a patched
        image not reading as its sanitized text), run the policy's escalation steps in order."""
        started = time.perf_counter()
        images = output_images(output)
        expected = self._expected_texts(decision, len(images))
        report = self.verifier.check(images, pipe=self.pipe, expected=expected)
        ocr_seconds = report.seconds
        escalations: list[dict[str, Any]] = list(verdict.details.get("escalations", ()))
        current = self.patch  # the patch of the last run: the map's own, or the step that made it act
        for entry in escalations:
            if "layers" in entry:
                current = self._escalation_patch(entry["step"]) or current
        word_rank, legible_length = 0, False
        for step in self.verifier.escalation:
            if not report.failed:
                break
            if step == "block":
                escalations.append(
                    {"step": "block", "reason": report.reason, "toxic_images": list(report.toxic_images),
                     "illegible_images": list(report.illegible_images)}
                )
                blocked = verdict.model_copy(update={"action": Action.BLOCK}).with_details(
                    verification=[c.as_details() for c in report.checks], escalations=escalations
                )
                timings["verification_seconds"] = time.perf_counter() - started
                timings["verification_ocr_seconds"] = ocr_seconds
                blocked = blocked.with_details(timings=timings)
                self._observe(blocked, None, timings)
                steps = [e["step"] for e in escalations[:-1]] or "no"
                if report.toxic:
                    message = f"text flagged by the policy is still visible in the generated image (images {list(report.toxic_images)})"
                else:
                    message = f"the generated image does not read as the sanitized text (images {list(report.illegible_images)})"
                raise PolicyViolation(f"{message} after {steps} escalation; see the exception's .verdict", blocked)
            if not decision.patched_prompts:
                continue  # an allowed prompt has no sanitized target to patch toward: only 'block' applies
            if step in ("next_word", "legible_word"):
                reason = report.reason
                # next_word: the next word of the current order; legible_word: the best word of the length the
                # model writes better than the span's (the layer map's replacement_legibility)
                rank = word_rank + 1 if step == "next_word" else 0
                legible = legible_length or step == "legible_word"  # once taken, later steps keep the length
                retry = self._decide(call_kwargs, rank, legible)
                if retry.target_kwargs == decision.target_kwargs:
                    skipped = (
                        "no other replacement word of the span's length" if step == "next_word"
                        else "the layer map rates no word length better than the span's"
                    )
                    escalations.append({"step": step, "skipped": skipped})
                    continue
                word_rank, legible_length = rank, legible
                decision = retry
                expected = self._expected_texts(decision, len(images))
                verdict = verdict.model_copy(
                    update={"findings": retry.verdict.findings, "sanitized_prompt": retry.verdict.sanitized_prompt}
                )
                if "prompts" in retry.verdict.details:
                    verdict = verdict.with_details(prompts=retry.verdict.details["prompts"])
                _restore_generator_states(call_kwargs.get("generator"), generator_states)
                output, patch_report = current.run(
                    call_kwargs, decision.target_kwargs, decision.patched_prompts, require_patch=True
                )
                report = self.verifier.check(output_images(output), pipe=self.pipe, expected=expected)
                ocr_seconds += report.seconds
                entry = {
                    "step": step, "reason": reason,
                    "replacements": [f.replacement for f in retry.verdict.findings if f.replacement is not None],
                    "layers": list(patch_report.layers), "start_step": patch_report.start_step, "toxic_after": report.toxic,
                }
                if expected is not None:
                    entry["illegible_after"] = report.illegible
                escalations.append(entry)
                continue
            patch = self._escalation_patch(step)
            if patch is None:  # earlier_start on a map that already starts at step 0, next_layers without a ranking
                skipped = "the layer map already starts at step 0" if step == "earlier_start" else "the layer map ranks no further layer"
                escalations.append({"step": step, "skipped": skipped})
                continue
            reason = report.reason
            _restore_generator_states(call_kwargs.get("generator"), generator_states)
            output, patch_report = patch.run(
                call_kwargs, decision.target_kwargs, decision.patched_prompts, require_patch=True
            )
            current = patch
            report = self.verifier.check(output_images(output), pipe=self.pipe, expected=expected)
            ocr_seconds += report.seconds
            entry = {"step": step, "reason": reason, "layers": list(patch_report.layers), "start_step": patch_report.start_step, "toxic_after": report.toxic}
            if expected is not None:
                entry["illegible_after"] = report.illegible
            escalations.append(entry)
        if report.toxic:
            verdict = verdict.with_note("toxic text is still visible in the image and the policy's escalation has no step left")
        elif report.illegible:
            verdict = verdict.with_note("the image does not read as the sanitized text and the policy's escalation has no step left")
        timings["verification_seconds"] = time.perf_counter() - started
        timings["verification_ocr_seconds"] = ocr_seconds
        verdict = verdict.with_details(verification=[c.as_details() for c in report.checks], escalations=escalations)
        return output, verdict

    def _bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        # fast path (the usual call: a few leading positionals, known keywords): no inspect.Signature.bind
        if len(args) <= len(self._positional_names) and kwargs.keys() <= self._keyword_names:
            positional = self._positional_names[: len(args)]
            if not any(name in kwargs for name in positional):
                return {**dict(zip(positional, args)), **kwargs}
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self.pipe).__name__}.__call__: {error}") from None
        call_kwargs: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                call_kwargs.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(
                        f"{type(self.pipe).__name__}.__call__ got unexpected positional arguments {value!r}"
                    )
            else:
                call_kwargs[name] = value
        return call_kwargs

    def _decide(self, call_kwargs: Mapping[str, Any], word_rank: int = 0, legible_length: bool = False) -> _Decision:
        embeds = sorted(n for n, v in call_kwargs.items() if v is not None and EMBEDS_ARGUMENT.match(n))
        if embeds and not self.allow_prompt_embeds:
            raise PolicyError(
                f"{', '.join(embeds)} passed: precomputed prompt embeddings cannot be scanned for text to write "
                "into the image. Pass the prompt as text, or create SafeTextGenerator(..., allow_prompt_embeds=True) "
                "to let embeddings through unscanned."
            )
        slots = {slot: call_kwargs[slot] for slot in self.prompt_slots if call_kwargs.get(slot) is not None}
        count = self._prompt_count(slots)
        if count == 0:
            verdict = Verdict(action=Action.ALLOW, policy=str(getattr(self.policy, "name", "")))
            if embeds:
                verdict = verdict.with_note(f"{', '.join(embeds)} passed and allowed: not scanned")
            return _Decision(verdict, (), {})
        scanned = {slot: self._scan_slot(slot, value, count, word_rank, legible_length) for slot, value in slots.items()}
        per_prompt = [
            merge_slot_verdicts({slot: verdicts[i] for slot, verdicts in scanned.items()}) for i in range(count)
        ]
        verdict = merge_prompt_verdicts(per_prompt)
        patched = tuple(i for i, v in enumerate(per_prompt) if v.action is Action.NEUTRALIZE)
        if verdict.action is Action.BLOCK or not patched:
            return _Decision(verdict, (), {})
        targets: dict[str, Any] = {}
        for slot, value in slots.items():
            sanitized = [scanned[slot][i].sanitized_prompt for i in range(count)]
            if isinstance(value, str):
                targets[slot] = sanitized[0]
            else:
                targets[slot] = [sanitized[i] if i in patched else value[i] for i in range(count)]
        return _Decision(verdict, patched, targets)

    def _prompt_count(self, slots: Mapping[str, Any]) -> int:
        for slot, value in slots.items():
            if not isinstance(value, (str, list, tuple)) or (
                not isinstance(value, str) and not all(isinstance(v, str) for v in value)
            ):
                raise PolicyError(f"`{slot}` must be a string or a list of strings, got {type(value).__name__}")
        lists = {slot: len(value) for slot, value in slots.items() if not isinstance(value, str)}
        if len(set(lists.values())) > 1:
            raise PolicyError(f"prompt slots hold lists of different lengths: {lists}; pass one entry per image prompt")
        if lists:
            return next(iter(lists.values()))
        return 1 if slots else 0

    def _scan_slot(
        self, slot: str, value: str | Sequence[str], count: int, word_rank: int = 0, legible_length: bool = False
    ) -> list[Verdict]:
        if isinstance(value, str):
            return [self._model_words(self.policy.scan(value, slot=slot), word_rank, legible_length)] * count
        return [self._model_words(self.policy.scan(text, slot=slot), word_rank, legible_length) for text in value]

    def _model_words(self, verdict: Verdict, word_rank: int, legible_length: bool = False) -> Verdict:
        """The slot verdict with replacement words chosen for the model (the layer map's
        ``replacement_legibility``), for ``word_rank`` > 0 the next words of that order, and with
        ``legible_length`` words of the length the model writes better than the span's."""
        if self._replacer is None or (not self._legibility and not word_rank) or verdict.action is not Action.NEUTRALIZE:
            return verdict
        from safetext.policy.replacement import rechoose

        return rechoose(verdict, self._replacer, self._legibility, word_rank, legible_length)

    @staticmethod
    def _block_message(verdict: Verdict) -> str:
        rules = sorted({f.rule_id for f in verdict.findings if f.action is Action.BLOCK})
        return (
            f"request blocked by policy {verdict.policy!r} (rule(s): {', '.join(rules) or 'unknown'}); "
            "see the exception's .verdict for the findings"
        )

    def _observe(self, verdict: Verdict, generation_seconds: float | None, timings: Mapping[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.observe_request(
                verdict,
                generation_seconds,
                scan_seconds=timings.get("scan_seconds"),
                patch_overhead_seconds=timings.get("patch_overhead_seconds"),
            )
        logger.debug(
            "safetext.generate action=%s patched=%s", verdict.action.value, verdict.details.get("patched_prompts")
        )

    def __repr__(self) -> str:
        return (
            f"SafeTextGenerator({type(self.pipe).__name__}, policy={getattr(self.policy, 'name', self.policy)!r}, "
            f"layer_map={self.layer_map.name!r} [{self.resolved.source}])"
        )
