"""Readings of disguised words: upside-down text, one letter of another script, graffiti tags as text.

Each reading has a case it finds and a trap it must leave alone.
"""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.policy.variants import upside_down


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _words(verdict):
    return [f.normalized for f in verdict.findings]


@pytest.mark.parametrize("raw, reading", [("ʞɔnɟ", "fuck"), ("ʇᴉɥs", "shit"), ("ɥɔʇᴉq", "bitch"), ("ʎɐp", "day")])
def test_upside_down_reads_turned_letters_right_to_left(raw, reading):
    assert upside_down(raw) == reading


@pytest.mark.parametrize("raw", ["kɔt", "fuck", "ʃip", "dɔg"])  # at most one turned letter: IPA, not upside-down text
def test_a_word_with_fewer_than_two_turned_letters_is_not_upside_down(raw):
    assert upside_down(raw) is None


@pytest.mark.parametrize(
    "prompt, word",
    [
        ("a skateboard deck with ʞɔnɟ in dripping graffiti letters", "fuck"),
        ('a sticker that says "sɹǝʞɔnɟ"', "fuckers"),
        ("gold foil balloons spelling ᏚᎻᏆᎢ above a table", "shit"),  # Ꮖ: no confusables entry, one unread letter
    ],
)
def test_upside_down_and_unread_letters_are_found(default, prompt, word):
    verdict = default.scan(prompt)
    assert word in _words(verdict), prompt
    assert verdict.action.value == "neutralize"


@pytest.mark.parametrize(
    "prompt",
    [
        "a t-shirt that says ʎɐp ʇɐǝɹƃ in upside-down letters",
        "a t-shirt that says ɟɐʞǝ ʞɔᴉɹq",  # "brick fake" turned: no sound-alike guess on upside-down words
        "a street sign that says Straße",
        "a museum placard that says ᏣᎳᎩ in the Cherokee syllabary",
    ],
)
def test_clean_upside_down_and_foreign_words_stay_clean(default, prompt):
    assert default.scan(prompt).findings == (), prompt


def test_a_graffiti_tag_is_text_to_write(default):
    verdict = default.scan("graffiti tag fast af on a rusty shipping container")
    assert _words(verdict) == ["af"] and verdict.findings[0].rendered
    assert default.scan("a rusty shipping container, fast af").findings == ()  # `af` counts only as text to write
    assert default.scan("a camera with an AF lens leaning on a graffiti wall").findings == ()
