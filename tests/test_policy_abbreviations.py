"""Initialisms and shortened forms (``abbreviations_en.txt``, the ``text-abbreviations`` rule, the
context phrases and ``allow_abbreviations_en.txt``), masked words over an inside-word stem, the
vocabulary added by class, and the rendered-text triggers the initialisms rely on."""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.policy.rendered import find_rendered_spans


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


@pytest.fixture(scope="module")
def strict():
    return load_policy("strict")


def _found(policy, prompt):
    return [(f.text, f.rule_id) for f in policy.scan(prompt).findings]


@pytest.mark.parametrize(
    "prompt, text",
    [
        ("a coffee mug for a sysadmin with RTFM in bold letters", "RTFM"),
        ("motivational gym poster: JFDI", "JFDI"),
        ("a skateboard deck with idgaf scratched into the grip tape", "idgaf"),
        ("teenager's bedroom door covered in stickers, one of them says ROFLMAO", "ROFLMAO"),
        ("a biker jacket patch with SOAB stitched in red", "SOAB"),
        ("anonymous comment painted on a fence: DIAF", "DIAF"),
        ("a reaction meme, caption smfh over a facepalm", "smfh"),
        ("prepper bunker door stenciled SHTF READY", "SHTF"),
        ("a neon sign reading wtfbbq in a burger joint", "wtfbbq"),
    ],
)
def test_unambiguous_initialisms_are_found_anywhere(default, prompt, text):
    assert (text, "profanity") in _found(default, prompt)


@pytest.mark.parametrize(
    "prompt, text",
    [
        ('a greeting card that says "POS"', "POS"),
        ("a baseball cap that says FOH in white letters", "FOH"),
        ('a t-shirt that reads "AF"', "AF"),
        ("a phone wallpaper that says tf is going on", "tf"),
        ("a mug that says MF in gold", "MF"),
        ('a hoodie printed with "DTF"', "DTF"),
    ],
)
def test_colliding_initialisms_are_findings_as_text_to_write(default, prompt, text):
    assert (text, "text-abbreviations") in _found(default, prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "a cashier swiping a card at the POS, supermarket interior",  # point of sale, in the scene
        "the FOH engineer behind the mixing desk at a festival",  # front of house
        "a Canon MF lens on a wooden table, product photo",
        "a t-shirt printer pulling a DTF sheet off the heat press",
        'a storefront sign that says "POS SYSTEMS & REPAIR"',  # clean phrase as text to write
        'a window decal that says "DTF PRINTING WHILE YOU WAIT"',
        'a vinyl record sleeve that says "MF DOOM"',
        'a stadium banner reading "FK PARTIZAN"',
        'a linguistics slide titled "tf-idf weighting"',
    ],
)
def test_colliding_initialisms_stay_clean_in_the_scene_and_in_their_clean_phrases(default, prompt):
    assert _found(default, prompt) == []


def test_strict_still_flags_colliding_initialisms_it_lists_everywhere(strict):
    # strict has no text-only rule: MF and DTF are plain list entries there, their clean phrases stay allowed
    assert _found(strict, "a photographer holding an MF camera") == [("MF", "profanity")]
    assert _found(strict, 'a window decal that says "DTF PRINTING"') == []


@pytest.mark.parametrize(
    "prompt, text",
    [
        ("birthday card for my brother, inside it says you SOB, love you", "you SOB"),
        ("an angry bumper sticker: what a POS", "what a POS"),
        ("political cartoon with a speech bubble, that's BS", "that's BS"),
        ("a plaque on a desk: no BS allowed", "no BS"),
        ("a vintage car with a dent and a sign taped on it, pos car, for sale", "pos car"),
        ("a rapper in a gold chain with bad mf written across his hoodie", "bad mf"),
        ("a cartoon raccoon, broke af, sitting in a trash can", "broke af"),  # af after an adjective
    ],
)
def test_ambiguous_initialisms_are_found_in_a_context_that_makes_them_profane(default, prompt, text):
    assert (text, "profanity") in _found(default, prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "a woman holding back a sob at a funeral, rain",  # the verb and the noun
        'a paperback cover titled "The Sob Story"',
        'a graduation banner that says "BS in Nursing, class of 2026"',  # a degree
        'a sign that says "BS" above a lab door, Bachelor of Science building',
        "a barcode scanner next to an old POS terminal, retail store",
        "a lighthouse called Sob Point on a rocky coast",
        "a mirrorless camera with fast AF and a quiet AF motor, product shot",  # autofocus
    ],
)
def test_ambiguous_initialisms_without_that_context_stay_clean(default, prompt):
    assert _found(default, prompt) == []


@pytest.mark.parametrize(
    "prompt, normalized",
    [
        ('a chalk drawing that says "a-wipe"', "awipe"),
        ('a sticker that says "A-HAT"', "ahat"),
        ('a text message that says "m\'fer"', "m fer"),
        ('a meme caption that says "effed up"', "effed up"),
        ('a license plate "FGGT"', "fgt"),  # vowels dropped, one letter doubled
    ],
)
def test_shortened_forms_are_found(default, prompt, normalized):
    assert [f.normalized for f in default.scan(prompt).findings] == [normalized]


@pytest.mark.parametrize(
    "prompt",
    [
        "a man in a hat wiping the counter with a wipe, a clown laughing",  # the one-letter word stays a word
        "a kitchen towel, a wipe and a sponge on a counter",
        "portrait of F. D. Roosevelt at his desk",
    ],
)
def test_shortened_forms_do_not_fire_on_the_words_they_are_built_from(default, prompt):
    assert _found(default, prompt) == []


@pytest.mark.parametrize(
    "prompt, normalized",
    [
        ('a diner sign that says "sl*tty"', "slutty"),
        ('a tote bag that says "stop b*tching"', "bitching"),
        ('a cake that says "wh*rey"', "whorey"),
    ],
)
def test_masked_words_over_an_inside_word_stem_are_found(default, prompt, normalized):
    findings = default.scan(prompt).findings
    assert [f.normalized for f in findings] == [normalized]
    assert findings[0].score == 0.8  # a wildcard guess, not an exact hit


@pytest.mark.parametrize("prompt", ['a bakery sign that says "gl*tter"', 'a note that says "p*tty training"', "5 * 3 = 15"])
def test_masks_that_hide_no_stem_letter_stay_clean(default, prompt):
    assert _found(default, prompt) == []


@pytest.mark.parametrize(
    "prompt, normalized",
    [
        ('a pub chalkboard that says "wankered again"', "wankered"),
        ("a cross-stitch that says fapping", "fapping"),
        ('a keyring that says "boobie"', "boobie"),
        ('a sticker that says "titties and tittie"', "titties"),
        ('a cap that says "gism"', "gism"),
        ('a sign that says "seggs"', "seggs"),
        ('a mug that says "BOLLUX"', "bollux"),
        ("a knuckle tattoo that says nonce", "nonce"),
        ('a cake that says "what a knob"', "what a knob"),
        ('a laptop sticker that says "fagtastic"', "fagtastic"),
        ('a mug that says "World\'s Okayest Fucknut"', "fucknut"),
    ],
)
def test_vocabulary_added_by_class_is_found(default, prompt, normalized):
    assert normalized in [f.normalized for f in default.scan(prompt).findings]


@pytest.mark.parametrize(
    "prompt",
    [
        "a brass door knob on an old oak door",
        "a volume knob on a vintage guitar amplifier, macro shot",
        'a linguistics poster titled "nonce words in Shakespeare"',
        'a chalkboard menu that says "Jerk Chicken with rice and peas"',
        "a 70s woman in a boob tube top on roller skates",
        "nude-colored high heels on a marble floor, product photo",
        'a picnic sign that says "BYOB"',
        'a shop window that says "BOGO FRIDAY"',
        "a vintage FUBU hoodie on a hanger, streetwear product photo",  # a brand, not "fubar"
    ],
)
def test_clean_senses_stay_clean(default, prompt):
    assert _found(default, prompt) == []


def test_bare_listed_words_behind_the_clean_phrases_are_still_found(default):
    assert _found(default, 'a shirt that says "JERK"') == [("JERK", "insult")]
    assert [f.rule_id for f in default.scan('a sticker that says "nude"').findings] == ["sexual"]
    assert [f.normalized for f in default.scan('a shirt that says "boob"').findings] == ["boob"]


@pytest.mark.parametrize(
    "prompt, span",
    [
        ("a brass keychain engraved XOXO for 10 dollars", "XOXO"),
        ("a wooden crate stamped with FRAGILE in red", "FRAGILE"),
        ("a shipping box stamped THIS SIDE UP", "THIS SIDE UP"),
        ("a streetwear brand called Night Owl, bold logo", "Night Owl"),
    ],
)
def test_engraved_stamped_and_called_start_text_to_write(prompt, span):
    assert span in [prompt[a:b] for a, b in find_rendered_spans(prompt, 8)]


@pytest.mark.parametrize(
    "prompt",
    ["an engraved silver ring on velvet", "a so-called expert at a desk", "the stamped envelope on a doormat"],
)
def test_engraved_stamped_and_called_as_adjectives_start_no_text(prompt):
    assert find_rendered_spans(prompt, 8) == ()
