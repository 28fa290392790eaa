"""Scanning stays linear in the prompt length for adversarial prompts at the policy's maximum length.

The rendered-text pattern once retried ``\\s+`` from every blank of a whitespace run (10,000 spaces:
14 s, holding the GIL), and every finding was compared with every earlier one (n^2). Each shape here
is scanned at ``max_prompt_chars`` and at a quarter of it: linear code takes about 4x as long, quadratic
code about 16x. (A quarter, not less: below ~2,000 characters fixed costs such as the classifier's
batching dominate and make the ratio meaningless.) The bounds are generous (10x, plus an absolute
ceiling far above the linear time) so a loaded machine does not fail them; the measured times per 1,000 characters are in
``benchmarks/results/scan_worst_case.md``.
"""

from __future__ import annotations

import time

import pytest

from safetext.policy import find_rendered_spans, load_policy
from tests.adversarial_text import SHAPES

RATIO_BOUND = 10.0  # linear: 4 for 4x the length; quadratic: 16
SLACK_SECONDS = 0.03  # timer noise on tiny times
CEILING_SECONDS = 2.0  # the longest shape takes ~0.15 s at 10,000 characters; whitespace took 14 s before the fix


@pytest.fixture(scope="module")
def policy():
    return load_policy("default")


def _best_of(repeats: int, func, *args) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_scan_time_is_linear_at_the_maximum_prompt_length(policy, shape):
    n = policy.config.max_prompt_chars
    assert n == 10_000
    long_text, short_text = SHAPES[shape](n), SHAPES[shape](n // 4)
    first = _best_of(1, policy.scan, long_text)
    assert first < CEILING_SECONDS, f"{shape}: one scan of {n} characters took {first:.2f} s"
    long_time, short_time = first, float("inf")
    for _ in range(4):  # interleaved, so a burst of load on a shared machine hits both lengths alike
        short_time = min(short_time, _best_of(1, policy.scan, short_text))
        long_time = min(long_time, _best_of(1, policy.scan, long_text))
    assert long_time <= RATIO_BOUND * short_time + SLACK_SECONDS, (
        f"{shape}: {n} characters took {long_time * 1000:.1f} ms, {n // 8} took {short_time * 1000:.1f} ms "
        f"({long_time / short_time:.0f}x for 8x the length: super-linear)"
    )


def test_whitespace_runs_keep_their_rendered_spans():
    """The linear pattern finds the same spans as before: the text before 'written', across any blank run."""
    for blank in (" ", "\t", "\u3000", "  \n  "):
        text = f"A cake with HAPPY BIRTHDAY{blank * 50}written on it"
        assert [text[s:e] for s, e in find_rendered_spans(text)] == ["HAPPY BIRTHDAY"]
    text = "a" + " " * 9998 + "b"
    assert find_rendered_spans(text) == ()


def test_many_findings_are_all_reported(policy):
    """The span index that replaced the n^2 overlap checks keeps every finding and every replacement."""
    text = "fuck " * 2000
    verdict = policy.scan(text)
    assert len(verdict.findings) == 2000
    assert [f.start for f in verdict.findings] == list(range(0, 10_000, 5))
    assert "fuck" not in verdict.sanitized_prompt.lower()
    allowed = policy.scan("Dick Van Dyke dick " * 100)
    assert [allowed.prompt[f.start:f.end] for f in allowed.findings] == ["dick"] * 100
