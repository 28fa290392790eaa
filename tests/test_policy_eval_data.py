"""The held-out detection cases of every round: well-formed, split by the hash rule, and never repeated.

A case that moved between parts, a toxic target missing from its prompt or a prompt reused from an
earlier round would make the measured numbers mean something else than the data READMEs say.
"""

import importlib.util
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _policy_eval():
    spec = importlib.util.spec_from_file_location("policy_eval_bench", ROOT / "benchmarks" / "policy_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _policy_eval()
ROUNDS = [r for r, d in sorted(BENCH.DATA_ROUNDS.items()) if (d / "clean.dev.jsonl").exists()]


def _normalized(prompt: str) -> str:
    return " ".join(unicodedata.normalize("NFC", prompt).casefold().split())


def _round_prompts(round_: int) -> list[tuple[str, str, dict]]:
    """``(file label, part, case)`` for every case of one round, English and languages."""
    data_dir = BENCH.DATA_ROUNDS[round_]
    out = []
    for part, kinds in BENCH.load_cases(data_dir).items():
        for kind, rows in kinds.items():
            out += [(kind, part, row) for row in rows]
    for code in BENCH.LANGUAGES:
        if (data_dir / f"lang_{code}_toxic.dev.jsonl").exists():
            for part, kinds in BENCH.load_language_cases(code, data_dir).items():
                for kind, rows in kinds.items():
                    out += [(f"lang_{code}_{kind}", part, row) for row in rows]
    return out


def test_rounds_are_found():
    assert ROUNDS[:3] == [1, 2, 3]


@pytest.mark.parametrize("round_", ROUNDS)
def test_round_cases_are_well_formed(round_):
    cases = _round_prompts(round_)  # load_cases raises when a case sits in the other part's file
    assert len(cases) > 300
    for label, part, row in cases:
        assert BENCH.part_of(row["prompt"]) == part
        if label != "clean" and not label.endswith("_clean"):
            assert row["target"] and row["target"] in row["prompt"], (label, row)
        else:
            assert "target" not in row, (label, row)
    prompts = [_normalized(row["prompt"]) for _, _, row in cases]
    assert len(prompts) == len(set(prompts)), [p for p in prompts if prompts.count(p) > 1][:5]


def test_no_prompt_is_reused_across_rounds():
    seen: dict[str, int] = {}
    for round_ in ROUNDS:
        for _, _, row in _round_prompts(round_):
            key = _normalized(row["prompt"])
            assert key not in seen or seen[key] == round_, f"round {round_} repeats a round-{seen[key]} prompt: {row['prompt']!r}"
            seen[key] = round_
