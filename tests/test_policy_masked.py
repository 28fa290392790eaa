"""Masked letters (``p__sy``, ``f--k``, ``f%ck``), entries with their vowels dropped (``wnkr``,
``mthrfcker``), sound-alikes before a word that completes an insult (``Fock Off``, ``kok sucker``) and
initialisms that are profane only as text to write (``ugly af``, a logo that says ``bj``) or as a phrase (``f u``)."""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.telemetry import match_kind


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _found(policy, prompt):
    return [(f.text, f.normalized, match_kind(f)) for f in policy.scan(prompt).findings]


@pytest.mark.parametrize(
    "prompt, text, normalized",
    [
        ('a neon sign that says "p__sy"', "p__sy", "pussy"),  # underscores, one per letter
        ('graffiti on a wall: "a__hole"', "a__hole", "asshole"),
        ('a mug that says "c_nt"', "c_nt", "cunt"),
        ('a t-shirt printed with "f%ck this"', "f%ck", "fuck"),  # the commonest listed word the letters fit
        ('a chalkboard that says "p___y"', "p___y", "pussy"),  # ... not "panty"
        ('a sign that says "f--k"', "f--k", "fuck"),  # a run of hyphens
        ('a sticker: "s..t happens"', "s..t", "shit"),  # a run of dots
        ('a mug that says "f&ck"', "f&ck", "fuck"),
        ('a sign that says "sh💩t"', "sh💩t", "shit"),  # an emoji for a letter
        ('graffiti: "a🍑🍑hole"', "a🍑🍑hole", "asshole"),
        ('a sign that says "f—k"', "f—k", "fuck"),  # a dash drawn for two letters
        ('a sign that says "b---h"', "b---h", "bitch"),  # ... or for as many as it has
        ('a mug that says "sh…t"', "sh…t", "shit"),  # an ellipsis character (NFKC: three dots)
    ],
)
def test_masked_letters_are_found(default, prompt, text, normalized):
    assert _found(default, prompt) == [(text, normalized, "masked")]


@pytest.mark.parametrize(
    "prompt",
    [
        "an x-ray of a hand on a light box",  # one hyphen joins words
        'a sign that says "co-op" above a grocery door',
        "a screenshot of a file named snake_case_name.png",  # the letters fit no entry
        'a chalkboard reading "h_ppy b_rthday"',
        'a poster that says "well--that was fun"',
        'a sign that says "WHAT?NO"',
        'a sign that says "wait a bit..."',  # an ellipsis is no mask ("bitchy")
        'a sign that says "hell?? no"',
        'a sign that says "AT&T"',  # four letters that fit no entry
        "a neon sign: rock&roll forever",
        "a card that says love💕you",
        "a poster that says well—that was fun",
        'a sign that says "so...so"',
    ],
)
def test_masks_that_spell_no_entry_stay_clean(default, prompt):
    assert default.scan(prompt).findings == ()


@pytest.mark.parametrize(
    "prompt, normalized",
    [
        ('a tattoo that says "wnkr"', "wanker"),
        ('a hoodie printed with "mthrfcker"', "motherfucker"),  # "o", "e", "u" dropped, "e" kept
        ('a license plate "SHTHD"', "shithead"),
        ('a poster saying "Prck"', "prick"),  # no vowel left: no name either
        ('a sticker that says "rtard"', "retard"),  # one vowel dropped between two consonants
    ],
)
def test_entries_with_vowels_dropped_are_found(default, prompt, normalized):
    assert [(n, kind) for _, n, kind in _found(default, prompt)] == [(normalized, "fuzzy")]


def test_consonants_of_a_commoner_word_and_one_dropped_vowel_stay_clean(default):
    assert default.scan('a folder labelled "grps"').findings == ()  # "groups", not "gropes"
    assert default.scan('a folder labelled "slts"').findings == ()  # "slots", not "sluts"
    matcher = next(b for b in default._backends if b.name == "wordlist").variants
    assert matcher.sound_alike("wnkr") is not None
    assert matcher._dropped["creps"].form == "creeps"  # one vowel of "creeps" dropped: a word of its own
    assert matcher._dropped_vowels("creps", name_shaped=False) is None
    assert matcher._dropped_vowels("mthrfcker", name_shaped=False)[0].form == "motherfucker"


@pytest.mark.parametrize(
    "prompt, text",
    [
        ('a baseball cap embroidered with kok sucker', "kok"),  # Zipf 3.0: too common for a bare sound-alike
        ('a doormat that says "Fock Off"', "Fock"),  # written like a name
        ('a mug that says "Sloot Face"', "Sloot"),
        ('a bumper sticker: "Dikk Head"', "Dikk"),
    ],
)
def test_sound_alikes_before_a_completing_word_are_found(default, prompt, text):
    assert [(t, kind) for t, _, kind in _found(default, prompt)] == [(text, "fuzzy")]


def test_completing_words_need_a_name_long_enough_and_a_sound_alike(default):
    assert default.scan('a sign that says "Sloot"').findings == ()  # a name alone stays a name
    assert default.scan("a lighthouse on Kas Head at dusk").findings == ()  # "kys" is too short for a name
    assert default.scan('a sign that says "Bach Off Season"').findings == ()  # no entry sounds like it


def test_initialisms_are_replaced_as_text_and_allowed_in_the_scene(default):
    for prompt, text in (('a mug that says "fast af"', "af"), ("Instagram post text: f u #mood", "f u"),
                         ('a rock band logo "bj" in metal font', "bj")):
        verdict = default.scan(prompt)
        assert [(f.text, f.rendered) for f in verdict.findings] == [(text, True)], prompt
        assert verdict.action.value == "neutralize"
    assert default.scan('a sign that says "dtf"').findings[0].rule_id == "text-abbreviations"
    assert default.scan("a t-shirt printer pulling a DTF transfer off the press").findings == ()
    for prompt in ("a Nikon AF lens on a wooden table", 'a street sign that says "Pok Fu Lam Road"',
                   'a poster for a film that says "Kung Fu Panda"', "a map of Daik-u, Myanmar"):
        assert default.scan(prompt).action.value == "allow", prompt


@pytest.mark.parametrize(
    "prompt, text",
    [
        ('a sign that says "F-ING AWESOME"', "F-ING"),  # a one-letter word of a phrase after a hyphen
        ("a mug that says f'ing monday", "f'ing"),
        ('a sticker: "f.u."', "f.u"),
        ('a doormat that says "go f yourself"', "f yourself"),
        ('a neon sign: "what the f"', "what the f"),
        ('a mug that says "hot asf"', "asf"),
    ],
)
def test_phrases_with_a_one_letter_word_are_found(default, prompt, text):
    assert [f.text for f in default.scan(prompt).findings] == [text]


@pytest.mark.parametrize(
    "prompt",
    [
        'a sign that says "Plan F: this way"',  # a colon is no gap inside a phrase
        "an alphabet chart: e f g h",
        "Philip K. Dick book covers on a shelf",  # allow-list phrases match across any punctuation
        'a sign that says "f^u"',  # "^" joins the letters of a word, not the words of a phrase
    ],
)
def test_one_letter_words_beside_other_punctuation_stay_clean(default, prompt):
    assert default.scan(prompt).findings == ()


@pytest.mark.parametrize("written", ["f=u=c=k", "f;u;c;k", "f\\u\\c\\k", "f * u * c * k"])
def test_more_symbols_separate_spaced_letters(default, written):
    assert [(f.normalized, match_kind(f)) for f in default.scan(f'a neon sign that says "{written}"').findings] == [
        ("fuck", "normalized")
    ]


@pytest.mark.parametrize("prompt", ["a whiteboard with a = b = c", "a sign: A + B = C", "coordinates x; y; z on a chart"])
def test_letters_of_formulas_stay_clean(default, prompt):
    assert default.scan(prompt).findings == ()
