"""Evasions and traps of the second evaluation round: parenthesized letters, emoji between letters,
words cut in three, phrases glued with short words, silent final e, scene senses of ambiguous words."""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.policy.normalize import normalize_chars
from safetext.policy.variants import skeleton


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _found(policy, prompt):
    return [(f.text, f.normalized) for f in policy.scan(prompt).findings]


@pytest.mark.parametrize(
    "prompt, text, normalized",
    [
        ('a doormat that says "⒡⒰⒞⒦"', "⒡⒰⒞⒦", "fuck"),  # parenthesized letters (NFKC gives "(f)")
        ('skywriting "f❤u❤c❤k" across a blue sky', "f❤u❤c❤k", "fuck"),  # a dingbat between letters
        ("a sticker: f❤️u❤️c❤️k", "f❤️u❤️c❤️k", "fuck"),  # ... with its emoji variation selector
        ("a sign: s💩h💩i💩t", "s💩h💩i💩t", "shit"),  # emoji between letters
        ("a mug that says sh.it.ty", "sh.it.ty", "shitty"),  # a word cut in three
        ("Instagram post text: suckmydick #mood", "suckmydick", "dick"),  # glued with "my"
        ("a bandana printed with kissmyass", "kissmyass", "ass"),
        ("a pumpkin carved with the word asshoal", "asshoal", "asshole"),  # silent final e
        ('a patch reading "jerking off"', "jerking off", "jerking off"),
    ],
)
def test_evasions_are_found(default, prompt, text, normalized):
    assert (text, normalized) in _found(default, prompt)


def test_parenthesized_letters_fold_to_the_letter_and_keep_their_offsets():
    norm = normalize_chars("⒡⒰ x", load_policy("default").config.normalization)
    assert norm.text == "fu x"
    assert norm.span(0, 2) == (0, 2)


@pytest.mark.parametrize(
    "prompt",
    [
        "I ❤ NY on a white t-shirt",  # a symbol between words, not letters
        "a → b → c flow chart",
        "myspace profile page, 2006 aesthetic",  # "my" glues only after the first piece
        "tomato and antonym and Mississippi",
        "a well-to-do family in a state-of-the-art kitchen",  # three words, not a word cut in three
        "a gardener with a hoe weeding a vegetable patch",  # object sense in the scene
        "a hen harrier and a tit flying over moorland",
        "a baby bottle with a silicone nipple on a kitchen counter",
        'billboard reading "Cockburn Street Market"',  # names in the allow-list
        "a coffee mug printed with Coon Rapids, Minnesota",
        "bumper sticker saying Van Dyke Brown Paint",
    ],
)
def test_traps_stay_clean(default, prompt):
    assert default.scan(prompt).findings == ()


def test_scene_sense_words_are_replaced_when_they_are_text_to_write(default):
    verdict = default.scan('a t-shirt that says "HOE"')
    assert verdict.action.value == "neutralize"
    assert [(f.rule_id, f.rendered) for f in verdict.findings] == [("scene-sense", True)]
    assert default.scan("a gardener with a hoe").action.value == "allow"
    assert default.scan("dykes and windmills in the Netherlands").action.value == "allow"


def test_clinical_anatomy_is_allowed_in_the_scene_and_replaced_as_text(default):
    for prompt in (
        "anatomical diagram of the human penis and testes for a urology textbook",
        "medical illustration of the female reproductive system showing the vagina, cervix and uterus",
        "cross-section of the anus and rectum, medical textbook plate",
        "labeled diagram of the vulva for a gynecology textbook",  # "labeled diagram": not text to write
    ):
        assert default.scan(prompt).action.value == "allow", prompt
    verdict = default.scan('a neon sign that says "PENIS"')
    assert verdict.action.value == "neutralize"
    assert [(f.rule_id, f.rendered) for f in verdict.findings] == [("clinical", True)]


def test_silent_final_e_only_in_longer_words():
    assert skeleton("asshole") == skeleton("asshoal")
    assert skeleton("rape") != skeleton("rap")  # short words keep their "e": "rapp" is not "rape"


def test_capitalized_names_that_wordfreq_knows_are_not_glued_words():
    policy = load_policy("default")
    config = policy.config.model_copy(update={"allow": policy.config.allow.model_copy(update={"lists": ()}), "name": "no-allow"})
    bare = load_policy(config.model_dump())  # no allow-list: the name rule alone decides
    for name in ("Cockburn Street", "Cockfosters", "Dickmann"):
        assert bare.scan(name).findings == (), name
        # the same letters in lower case are a glued word
        assert [f.normalizations for f in bare.scan(name.lower()).findings] == [("compound",)], name
    # obfuscated or CamelCase tokens are never names
    assert bare.scan("ClusterFuck").flagged and bare.scan("Bigc0ck").flagged
