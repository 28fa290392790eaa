"""Prompts shaped to make text matching slow: what an attacker pastes into a prompt box.

Shared by ``tests/test_scan_worst_case.py`` (linear-time check) and ``benchmarks/scan_worst_case.py``
(worst-case time per 1,000 characters). Every shape is exactly ``n`` characters long.
"""

from __future__ import annotations

from typing import Callable


def _fill(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def _between(left: str, filler: str, right: str, n: int) -> str:
    return left + _fill(filler, n - len(left) - len(right)) + right


#: name -> builder of an ``n``-character prompt.
SHAPES: dict[str, Callable[[int], str]] = {
    # long separator runs (the rendered-text pattern used to backtrack over these)
    "spaces": lambda n: _between("a", " ", "b", n),
    "tabs": lambda n: _between("a", "\t", "b", n),
    "newlines": lambda n: _between("a", "\n", "b", n),
    "ideographic_spaces": lambda n: _between("a", "\u3000", "b", n),
    "mixed_whitespace": lambda n: _between("a", " \t\u3000\n\u00a0", "b", n),
    "trigger_then_spaces": lambda n: _between("the", " ", "x", n),
    "bearer_then_spaces": lambda n: _fill("sign" + " " * 60 + "x ", n),
    "dots": lambda n: _between("f", ".", "k", n),
    "separators": lambda n: _fill("-._,/|~:", n),
    # separated single letters (the separator-joining normalization)
    "spaced_letters": lambda n: _fill("f ", n),
    "dotted_letters": lambda n: _fill("f.", n),
    "starred_letters": lambda n: _fill("f*", n),
    # many findings and many rendered spans
    "many_findings": lambda n: _fill("fuck ", n),
    "many_quoted_findings": lambda n: _fill('"shit" ', n),
    "many_leet_findings": lambda n: _fill("sh1t ", n),
    "many_triggers": lambda n: _fill("a sign that says fuck ", n),
    "many_written": lambda n: _fill("x written ", n),
    "many_reads": lambda n: _fill("sign reads a ", n),
    "allow_and_findings": lambda n: _fill("Dick Van Dyke dick ", n),
    # long words
    "long_word": lambda n: "a" * n,
    "long_leet_word": lambda n: _fill("sh1t", n),
    "stretched_word": lambda n: _between("f", "u", "ck", n),
    # unclosed quotes
    "open_quotes": lambda n: "\u201c" * n,
    "open_guillemets": lambda n: "\u00ab" * n,
    "apostrophes": lambda n: _fill("'a ", n),
    # invisible and combining characters
    "combining_marks": lambda n: _between("a", "\u0301", "", n),
    "zero_width": lambda n: _fill("a\u200b", n),
}


def adversarial_prompts(n: int) -> dict[str, str]:
    """Every shape at ``n`` characters."""
    prompts = {name: build(n) for name, build in SHAPES.items()}
    assert all(len(text) == n for text in prompts.values())
    return prompts
