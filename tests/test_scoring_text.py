"""Character F1, exact match and Levenshtein against hand-computed values."""

from __future__ import annotations

import pytest

from safetext.scoring import CharacterF1, corpus_ocr_f1, exact_match, levenshtein, ocr_f1


def test_ocr_f1_hand_computed():
    # pred "stoop" -> {s, t, o, o, p}; target "stop" -> {s, t, o, p}: matched 4
    # precision 4/5, recall 4/4, F1 = 2 * 0.8 * 1 / 1.8 = 8/9
    assert ocr_f1("stoop", "stop") == pytest.approx((0.8, 1.0, 8 / 9))
    # Multiset, order-free: "pots" uses the same letters as "stop".
    assert ocr_f1("pots", "stop") == (1.0, 1.0, 1.0)
    # Case-insensitive, whitespace ignored: "He LLo" == "hello".
    assert ocr_f1("He LLo\n", "hello") == (1.0, 1.0, 1.0)
    # pred "cat" vs target "dog": nothing in common.
    assert ocr_f1("cat", "dog") == (0.0, 0.0, 0.0)
    # pred "aab" vs target "abbb": matched a (min(2,1)=1) + b (min(1,3)=1) = 2
    # precision 2/3, recall 2/4, F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    result = ocr_f1("aab", "abbb")
    assert isinstance(result, CharacterF1)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(0.5)
    assert result.f1 == pytest.approx(4 / 7)
    # Punctuation is a character like any other: "go!" vs "go" -> precision 2/3, recall 1.
    assert ocr_f1("go!", "go") == pytest.approx((2 / 3, 1.0, 0.8))


def test_ocr_f1_empty_cases():
    assert ocr_f1("", "") == (1.0, 1.0, 1.0)
    assert ocr_f1("  ", "\t") == (1.0, 1.0, 1.0)
    assert ocr_f1("", "stop") == (0.0, 0.0, 0.0)
    assert ocr_f1("stop", "") == (0.0, 0.0, 0.0)
    with pytest.raises(TypeError, match="ocr_f1 takes two strings, got pred=NoneType"):
        ocr_f1(None, "stop")  # type: ignore[arg-type]


def test_corpus_f1_is_harmonic_mean_of_averages():
    # Pairs: ("stop","stop") -> P 1, R 1; ("st","stop") -> P 1, R 0.5; ("x","go") -> P 0, R 0
    # mean P = 2/3, mean R = 1.5/3 = 0.5, F1 = 2 * (2/3) * 0.5 / (2/3 + 0.5) = 4/7
    # (the mean of per-pair F1s would be (1 + 2/3 + 0) / 3 = 5/9 instead)
    result = corpus_ocr_f1(["stop", "st", "x"], ["stop", "stop", "go"])
    assert result == pytest.approx((2 / 3, 0.5, 4 / 7))
    with pytest.raises(ValueError, match="preds has 1 items but targets has 2"):
        corpus_ocr_f1(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        corpus_ocr_f1([], [])


def test_exact_match_normalizes_case_punctuation_and_spaces():
    assert exact_match("STOP!", "stop")
    assert exact_match("  s-t.o p ", "Stop")
    assert exact_match("", "!!")
    assert not exact_match("stops", "stop")
    assert not exact_match("pots", "stop")  # order matters, unlike ocr_f1


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("", "abc", 3),  # three insertions
        ("abc", "", 3),
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("flaw", "lawn", 2),  # -f, +n
        ("stop", "Stop", 1),  # case-sensitive
        ("abc", "abc", 0),
        ("intention", "execution", 5),
        ("ab", "ba", 2),  # no transpositions: two substitutions
    ],
)
def test_levenshtein_hand_computed(a, b, distance):
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_levenshtein_rejects_non_strings():
    with pytest.raises(TypeError, match="levenshtein takes two strings, got list and str"):
        levenshtein(["a"], "a")  # type: ignore[arg-type]
