"""What the guard costs: latency of guarded vs raw generation, and peak memory.

Latency: for each prompt and repeat, the raw pipeline and :class:`~safetext.generator.SafeTextGenerator`
generate the same prompt with the same seed, back to back, alternating which goes first (so drift in
machine load hits both alike). The reported ratio is the median of the per-pair ratios guarded / raw,
separately for clean prompts (scan only; the pipeline runs untouched) and flagged prompts (scan,
recording of the sanitized prompt's conditioning, patched run). The same ratio in process CPU time
is reported beside it: on a busy, shared machine it is the steadier of the two.

Memory: peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, Linux/macOS) of a fresh
spawned process that loads the model and runs the same workload raw, against one that runs it
guarded. RSS covers torch's tensor memory, which ``tracemalloc`` does not see. The delta includes
the policy engine's word lists and imports.

    >>> report = measure_latency(pipe, guard, clean=["A red sign that says \\"hello\\"."],
    ...                          flagged=["A red sign that says \\"shit\\"."], steps=20, repeats=5)
    >>> report["clean"]["median_ratio"], report["flagged"]["median_ratio"]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["DEFAULT_CLEAN_PROMPTS", "DEFAULT_FLAGGED_PROMPTS", "measure_latency", "measure_peak_rss", "markdown_overhead"]

DEFAULT_CLEAN_PROMPTS = ('A red sign that says "hello".', "A blue sign that says garden.", "music written on a green sign")
DEFAULT_FLAGGED_PROMPTS = ('A red sign that says "shit".', "A blue sign that says bitch.", "idiot written on a green sign")


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _pairs(pipe: Any, guard: Any, prompts: Sequence[str], call_kwargs: dict[str, Any], repeats: int, seed: int) -> dict[str, Any]:
    raw_seconds, guarded_seconds, ratios, cpu_ratios = [], [], [], []
    for repeat in range(repeats):
        for position, prompt in enumerate(prompts):
            def raw() -> Any:
                return pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **call_kwargs)

            def guarded() -> Any:
                return guard(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **call_kwargs)

            if (repeat + position) % 2 == 0:
                (r, r_cpu), (g, g_cpu) = _timed(raw), _timed(guarded)
            else:
                (g, g_cpu), (r, r_cpu) = _timed(guarded), _timed(raw)
            raw_seconds.append(r)
            guarded_seconds.append(g)
            ratios.append(g / r)
            cpu_ratios.append(g_cpu / r_cpu if r_cpu > 0 else float("nan"))
    return {
        "runs": len(ratios),
        "median_ratio": statistics.median(ratios),
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "median_raw_seconds": statistics.median(raw_seconds),
        "median_guarded_seconds": statistics.median(guarded_seconds),
        "median_added_seconds": statistics.median(g - r for g, r in zip(guarded_seconds, raw_seconds)),
    }


def measure_latency(
    pipe: Any,
    guard: Any,
    *,
    clean: Sequence[str] = DEFAULT_CLEAN_PROMPTS,
    flagged: Sequence[str] = DEFAULT_FLAGGED_PROMPTS,
    steps: int = 20,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Median guarded/raw latency ratio of interleaved runs, for clean and for flagged prompts.

    Args:
        pipe: the raw pipeline.
        guard: a :class:`~safetext.generator.SafeTextGenerator` wrapping ``pipe``.
        clean: prompts the policy allows.
        flagged: prompts the policy neutralizes.
        steps: denoising steps per image.
        repeats: passes over each prompt list.
        warmup: untimed raw + guarded passes first (first-call allocations, lazy imports).
        seed: generator seed of every call.

    Returns:
        ``{"clean": {...}, "flagged": {...}}`` with ``runs``, ``median_ratio`` (wall clock),
        ``median_cpu_ratio`` (process CPU time, which other load on a shared machine disturbs less),
        ``median_raw_seconds``, ``median_guarded_seconds`` and ``median_added_seconds``.

    Raises:
        ValueError: a "clean" prompt is flagged or a "flagged" prompt is not (the comparison would
            measure the wrong path), or ``repeats`` < 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for label, prompts, want in (("clean", clean, False), ("flagged", flagged, True)):
        if not prompts:
            raise ValueError(f"{label} prompts are empty; pass at least one")
        wrong = [p for p in prompts if guard.policy.scan(p).flagged != want]
        if wrong:
            state = "flagged" if not want else "not flagged"
            raise ValueError(f"{label} prompts {wrong} are {state} by policy {guard.policy.name!r}; pass {label} prompts")
    call_kwargs = {"num_inference_steps": steps, "output_type": "np"}
    for _ in range(warmup):
        for prompt in (*clean, *flagged):
            pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **call_kwargs)
            guard(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **call_kwargs)
    return {
        "clean": _pairs(pipe, guard, clean, call_kwargs, repeats, seed),
        "flagged": _pairs(pipe, guard, flagged, call_kwargs, repeats, seed),
    }


def _peak_rss_worker(pipe_factory: Callable[[], Any], guarded: bool, prompts: Sequence[str], steps: int,
                     policy: Any, layer_map: Any, queue: Any) -> None:
    import resource

    try:
        pipe = pipe_factory()
        runner = pipe
        if guarded:
            from safetext.generator import SafeTextGenerator

            runner = SafeTextGenerator(pipe, policy=policy, layer_map=layer_map)
        for prompt in prompts:
            runner(prompt=prompt, generator=torch.Generator("cpu").manual_seed(0), num_inference_steps=steps, output_type="np")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put(("ok", peak * (1 if sys.platform == "darwin" else 1024)))
    except BaseException as error:  # report any failure to the parent instead of hanging it
        queue.put(("error", f"{type(error).__name__}: {error}"))


def measure_peak_rss(
    pipe_factory: Callable[[], Any],
    *,
    prompts: Sequence[str] = DEFAULT_CLEAN_PROMPTS + DEFAULT_FLAGGED_PROMPTS,
    steps: int = 20,
    policy: Any = "default",
    layer_map: Any = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Peak RSS of a fresh process running ``prompts`` raw, and of one running them guarded.

    The children inherit the environment, so ``OMP_NUM_THREADS`` sets their intra-op threads.

    Args:
        pipe_factory: picklable zero-argument callable that builds the pipeline in the child process
            (e.g. ``functools.partial(load_glyph_pipeline, path)``).
        prompts: the workload (clean and flagged prompts).
        steps: denoising steps per image.
        policy: policy name or path for the guarded process.
        layer_map: layer map file or preset name (``None``: the model's preset, else all layers).
        timeout: seconds to wait for each child.

    Returns:
        ``{"method": ..., "raw_peak_rss_bytes", "guarded_peak_rss_bytes", "delta_bytes"}``.

    Raises:
        RuntimeError: a child process failed (its error is in the message) or timed out.
    """
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for guarded in (False, True):
        queue = context.Queue()
        process = context.Process(
            target=_peak_rss_worker, args=(pipe_factory, guarded, list(prompts), steps, policy, layer_map, queue)
        )
        process.start()
        try:
            status, value = queue.get(timeout=timeout)
        except Exception as error:
            process.kill()
            raise RuntimeError(f"peak-RSS child ({'guarded' if guarded else 'raw'}) gave no answer in {timeout} s") from error
        finally:
            process.join(timeout=30)
        if status != "ok":
            raise RuntimeError(f"peak-RSS child ({'guarded' if guarded else 'raw'}) failed: {value}")
        peaks["guarded" if guarded else "raw"] = int(value)
    return {
        "method": "peak RSS (resource.getrusage ru_maxrss) of a fresh spawned process per mode",
        "raw_peak_rss_bytes": peaks["raw"],
        "guarded_peak_rss_bytes": peaks["guarded"],
        "delta_bytes": peaks["guarded"] - peaks["raw"],
    }


def markdown_overhead(report: dict[str, Any]) -> str:
    """Markdown table of a report made of :func:`measure_latency` (+ optional ``memory``) results."""
    lines = [
        f"# Guard overhead: {report.get('model', 'model')}",
        "",
        f"{report.get('steps')} steps, {report.get('repeats')} interleaved repeats per prompt, "
        f"{report.get('threads') or 'default'} thread(s). Ratio = median over runs of guarded / raw seconds "
        "(same prompt, same seed).",
        "",
        "| prompts | runs | median raw s | median guarded s | median added s | median ratio guarded/raw | "
        "median CPU-time ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("clean", "flagged"):
        row = report["latency"][kind]
        lines.append(
            f"| {kind} | {row['runs']} | {row['median_raw_seconds']:.4f} | {row['median_guarded_seconds']:.4f} | "
            f"{row['median_added_seconds']:+.4f} | {row['median_ratio']:.3f} | {row['median_cpu_ratio']:.3f} |"
        )
    memory = report.get("memory")
    lines.append("")
    if memory:
        mib = 1024 * 1024
        lines.append(
            f"Peak memory, measured as the {memory['method']}: raw {memory['raw_peak_rss_bytes'] / mib:.1f} MiB, guarded "
            f"{memory['guarded_peak_rss_bytes'] / mib:.1f} MiB, delta {memory['delta_bytes'] / mib:+.1f} MiB."
        )
    else:
        lines.append("Peak memory: not measured (--no-memory).")
    lines.append("")
    return "\n".join(lines)
