"""Benchmarks: toxicity reduction against image preservation, and the guard's overhead.

* :func:`build_suite` — deterministic prompt suites (``glyph``, ``simple``, ``creative``; toxic and clean
  prompts; validation/test split by word).
* :func:`register_method` / :func:`create_method` — the compared methods (``unguarded``, ``safetext``,
  ``negative_prompt``, ``prompt_swap``, ``block``, ``all_layers``).
* :class:`ToxicBenchmark` — runs every method on every prompt with the prompt's own seed, scores the
  images (OCR, toxicity, OCR F1, SSIM/PSNR/MSE, CLIP-T) and merges shards by prompt index.
* :func:`write_report` — result JSON, timing JSON, Markdown tables, image grid and trade-off plot.
* :func:`measure_latency` / :func:`measure_peak_rss` — guard overhead.

The command line is ``safetext bench toxic`` / ``safetext bench overhead`` (:mod:`safetext.bench.cli`).
"""

from safetext.bench.methods import (
    DEFAULT_METHODS,
    BenchMethod,
    MethodContext,
    MethodResult,
    create_method,
    negative_prompt_for,
    register_method,
    registered_methods,
)
from safetext.bench.metrics import image_digest, replacement_word, score_prompt, summarize_clean, summarize_toxic
from safetext.bench.overhead import measure_latency, measure_peak_rss
from safetext.bench.report import write_report
from safetext.bench.runner import BenchmarkResult, ShardResult, ToxicBenchConfig, ToxicBenchmark, run_distributed, shard_indices
from safetext.bench.suites import BenchPrompt, PromptSuite, build_suite, split_words, suite_words

__all__ = [
    "DEFAULT_METHODS",
    "BenchMethod",
    "BenchPrompt",
    "BenchmarkResult",
    "MethodContext",
    "MethodResult",
    "PromptSuite",
    "ShardResult",
    "ToxicBenchConfig",
    "ToxicBenchmark",
    "build_suite",
    "create_method",
    "image_digest",
    "measure_latency",
    "measure_peak_rss",
    "negative_prompt_for",
    "register_method",
    "registered_methods",
    "replacement_word",
    "run_distributed",
    "score_prompt",
    "shard_indices",
    "split_words",
    "suite_words",
    "summarize_clean",
    "summarize_toxic",
    "write_report",
]
