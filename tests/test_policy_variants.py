"""Evasions people type, one group per kind of issue 17, and the clean words each step must leave alone.

Every toxic case asserts the finding's span (the text as written), the entry it was matched to and the
step that found it; every clean case asserts that the default policy finds nothing at all.
"""

from __future__ import annotations

import pytest

from safetext.policy import Policy, load_policy
from safetext.policy.variants import skeleton


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _only(policy, prompt):
    verdict = policy.scan(prompt)
    assert len(verdict.findings) == 1, (prompt, verdict.findings)
    return verdict.findings[0]


def _clean(policy, prompt):
    verdict = policy.scan(prompt)
    assert verdict.findings == (), (prompt, verdict.findings)


# (written, entry matched, step that found it)
TOXIC = {
    "misspellings": [
        ("fuxk", "fuck", "fuzzy"), ("cvnt", "cunt", "fuzzy"), ("beotch", "bitch", "fuzzy"), ("azzhole", "azz", "compound"),
        ("shlt", "shit", "fuzzy"), ("cvnt", "cunt", "fuzzy"), ("dikk", "dick", "fuzzy"), ("fuq", "fuk", "fuzzy"),
    ],
    "compounds": [
        ("bigass", "ass", "compound"), ("fagmouth", "fag", "compound"), ("shitshit", "shit", "compound"),
        ("blackc0ck", "cock", "readings"),
    ],
    "abbreviations": [("stfu", "stfu", None), ("a-hole", "ahole", "split"), ("mofo", "mofo", None)],
    "homoglyphs": [
        ("🅵🆄🅲🅺", "fuck", "confusables"), ("ᖴᑌᑕK", "fuck", "confusables"), ("©unt", "cunt", "confusables"),
        ("𝔰𝔥𝔦𝔱", "shit", "nfkc"), ("ꓑussy", "pussy", "confusables"), ("ᏟᎾᏟᏦ", "cock", "confusables"),
    ],
    "leetspeak": [
        ("s1ut", "slut", "readings"), ("c@nt", "cunt", "readings"), ("f@ck", "fack", "leetspeak"), ("@$$h073", "asshole", "readings"),
        ("c|_|nt", "cunt", "readings"), ("|)ick", "dick", "readings"), ("bo11ocks", "bollocks", "readings"),
    ],
    "separators": [
        ("f!u!c!k", "fuck", "readings"), ("f^u^c^k", "fuck", "readings"), ("fu ck", "fuck", "split"),
        ("bit ch", "bitch", "split"), ("as s", "ass", "split"),
    ],
    "html_repeats": [
        ("f<b>u</b>ck", "fuck", "html"), ("sh&#105;t", "shit", "html"), ("b&iuml;tch", "bitch", "html"),
        ("shhhiiiter", "shiter", "repeats"),
    ],
    "vocabulary": [
        ("pussies", "pussies", None), ("fuckers", "fuckers", None), ("asswipe", "asswipe", None),
        ("jerkoff", "jerkoff", None), ("cummed", "cummed", None), ("shat", "shat", None), ("skanky", "skanky", None),
    ],
}


@pytest.mark.parametrize("kind, written, entry, step", [(k, *case) for k, cases in TOXIC.items() for case in cases])
def test_evasions_are_found_with_span_entry_and_step(default, kind, written, entry, step):
    prompt = f'a neon sign that says "{written}" in a rainy alley'
    finding = _only(default, prompt)
    assert finding.text == written
    assert prompt[finding.start : finding.end] == written
    assert finding.normalized == entry
    assert finding.backend == "wordlist"
    if step is not None:
        assert step in finding.normalizations
    assert finding.action.value == "neutralize"


CLEAN = [
    # sound-alikes and stretched letters of real words
    "a teacher assessing a class", "a therapist's office", "two kids rapping on a corner", "a brass sextant",
    "shiitake mushrooms", "a Wankel engine cutaway", "a doormat with a welcome sign", "bumpers on a classic car",
    # compounds and words that contain a listed word
    "Scunthorpe at night", "a cockpit at dawn", "a cocktail bar", "passover dinner", "a raccoonhat costume",
    "a grasshopper on a leaf", "cumulus clouds", "mustard and custard", "fire retardant",
    # numbers, units, and punctuation that leetspeak must not read
    "a 1960s diner", "35mm film, f/1.8, 8k", "the 1970s", "a t-shirt mockup", "Assassin's Creed poster",
    # split words that are two real words
    "the pen is mightier than the sword", "as soon as possible", "a hole in the wall",
    # the false positives named in the issue, and inflections that are English words
    "a honky-tonk bar", "an old HONKEY-TONK saloon", "a board game called tit 4 tat", "tit-for-tat",
    "a cocky rooster", "spicy food", "a farmer hoeing a field", "a blue tit",
    # entities and tags around clean words
    "Fish &amp; Chips", "<b>Welcome</b> home",
]


@pytest.mark.parametrize("prompt", CLEAN)
def test_clean_words_stay_clean(default, prompt):
    _clean(default, prompt)


def test_skeleton_groups_sound_alikes():
    assert skeleton("fuxk") == skeleton("phuq") == skeleton("fuck")
    assert skeleton("kunt") == skeleton("cunt")
    assert skeleton("biatch") == skeleton("bitch") == skeleton("beyotch")
    assert skeleton("fuck") != skeleton("folk")



def test_fuzzy_and_compounds_can_be_switched_off():
    config = load_policy("default").config
    spec = type(config.backends[0])
    no_fuzzy = Policy(config.model_copy(update={"backends": (spec(name="wordlist", params={"fuzzy": False}),), "name": "a"}))
    no_compounds = Policy(config.model_copy(update={"backends": (spec(name="wordlist", params={"compounds": False}),), "name": "b"}))
    assert no_fuzzy.scan("a sign that says cvnt").findings == ()
    assert no_fuzzy.scan("a sign that says bigass").findings[0].normalized == "ass"
    assert no_compounds.scan("a sign that says bigass").findings == ()
    assert no_compounds.scan("a sign that says cvnt").findings[0].normalized == "cunt"


def test_span_of_an_html_obfuscated_word_covers_its_tags(default):
    prompt = "a sign that says f<b>u</b>ck now"
    verdict = default.scan(prompt)
    finding = verdict.findings[0]
    assert finding.text == "f<b>u</b>ck"
    assert verdict.sanitized_prompt == prompt.replace("f<b>u</b>ck", finding.replacement)


def test_sound_alike_readings_do_not_depend_on_the_hash_seed():
    """Replicas (processes with their own salted ``str`` hash) give a prompt the same finding and replacement."""
    import os
    import subprocess
    import sys

    code = (
        "from safetext.policy import load_policy; p = load_policy('default')\n"
        "for prompt in ('a sign that says pouffiasse', 'a sign that says \"fichi\"'):\n"
        "    print([(f.normalized, f.rule_id, f.replacement) for f in p.scan(prompt).findings])\n"
    )
    outputs = set()
    for seed in ("1", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs
    assert "[]" not in next(iter(outputs)).split("\n")[0]  # the sound-alike is read at all
