"""Word-list matching: whole words only (no Scunthorpe problem), allow-list, phrases, plurals, categories,
and the glyph vocabularies (every toxic word flagged, no common or replacement word flagged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetext.policy import load_policy
from safetext.policy.lexicon import read_word_list

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "safetext" / "models" / "glyph" / "vocab"
LISTS = ROOT / "safetext" / "policies" / "lists"


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


TRAPS = [
    "Scunthorpe", "Penistone", "Middlesex", "cockpit", "shiitake", "therapist", "Niger", "snigger",
    "Dick Van Dyke", "class", "assassin", "grass", "bass", "Essex", "Sussex", "cocktail", "peacock",
    "hancock", "dickens", "analysis", "Nigeria", "sniggering", "Moby Dick", "cum laude", "pussy willow",
    "a blue tit on a branch", "knee-jerk reaction", "spic and span", "the cocker spaniel", "Hitchcock",
]


@pytest.mark.parametrize("word", TRAPS)
def test_trap_words_are_not_flagged(default, word):
    for prompt in (word, f'A sign that says "{word}"', f"A poster of {word} at night"):
        verdict = default.scan(prompt)
        assert verdict.findings == (), (prompt, verdict.findings)
        assert verdict.sanitized_prompt == prompt


def test_allow_list_suppresses_only_the_allowed_phrase(default):
    verdict = default.scan("Dick Van Dyke next to a sign that says dick")
    assert [(f.text, f.start) for f in verdict.findings] == [("dick", 39)]


def test_allow_list_does_not_match_longer_runs(default):
    # "Niger" is allow-listed; the slur with a double g is not covered by it.
    verdict = default.scan("A sign that says nigger")
    assert [(f.normalized, f.category) for f in verdict.findings] == [("nigger", "slur")]


@pytest.mark.parametrize(
    "prompt, term",
    [
        ("A sign that says 2 girls 1 cup", "2 girls 1 cup"),
        ("A sign that says blow job", "blow job"),
        ("A sign that says PIECE OF SHIT", "piece of shit"),
        ("A shirt with the words son of a bitch", "son of a bitch"),
    ],
)
def test_multi_word_entries_match_as_phrases(default, prompt, term):
    findings = default.scan(prompt).findings
    assert [f.normalized for f in findings] == [term]
    assert findings[0].text.lower() == term


def test_phrase_parts_alone_do_not_match(default):
    # "blow job" is a phrase entry; "blow" and "job" alone are ordinary words.
    assert default.scan("blow out the candles, a job well done").findings == ()


def test_context_dependent_ldnoobw_entries_are_excluded(default):
    for prompt in ("a girl on a horse", "a big black dog", "world domination", "Super Bowl XX", "vino negro"):
        assert default.scan(prompt).findings == (), prompt
    # ... but they are still in the verbatim list file
    assert "girl on" in read_word_list(LISTS / "ldnoobw_en.txt")


def test_plurals_are_matched_and_keep_the_listed_base(default):
    findings = default.scan("A sign that says bitches and cunts").findings
    assert [(f.normalized, f.text) for f in findings] == [("bitches", "bitches"), ("cunts", "cunts")]


@pytest.mark.parametrize(
    "word, category, rule",
    [("fuck", "profanity", "profanity"), ("dildo", "sexual", "sexual"), ("kike", "slur", "slur"),
     ("idiot", "insult", "insult"), ("swastika", "hate", "hate"), ("faggot", "slur", "slur")],
)
def test_categories_follow_the_last_list(default, word, category, rule):
    finding = default.scan(f'A sign that says "{word}"').findings[0]
    assert (finding.category, finding.rule_id) == (category, rule)


def test_ldnoobw_list_is_kept_verbatim_with_attribution():
    lines = (LISTS / "ldnoobw_en.txt").read_text(encoding="utf-8").splitlines()
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "CC-BY-4.0" in header and "LDNOOBW" in header
    entries = read_word_list(LISTS / "ldnoobw_en.txt")
    assert len(entries) == 403 and entries[0] == "2g1c" and entries[-1] == "🖕"


def test_every_toxic_glyph_word_is_neutralized(default):
    words = read_word_list(VOCAB / "toxic.txt")
    assert len(words) > 40
    # as text to write: the clinical and scene-sense words (penis, dyke) are allowed in a scene
    missed = [w for w in words if default.scan(f"a sign that says {w}").action.value != "neutralize"]
    assert missed == []
    missed_rendered = [w for w in words if default.scan(f'A sign that says "{w.upper()}"').action.value != "neutralize"]
    assert missed_rendered == []


@pytest.mark.parametrize("vocab", [VOCAB / "common.txt", LISTS / "replacements.txt"], ids=["common", "replacements"])
def test_no_common_or_replacement_word_is_flagged(default, vocab):
    words = [word for line in read_word_list(vocab) for word in line.split()]  # common.txt: several per line
    assert len(words) > 50
    flagged = [w for w in words if default.scan(w).findings or default.scan(f'A sign that says "{w}"').findings]
    assert flagged == []


def test_inline_custom_terms_form_their_own_rule():
    config = load_policy("default").config
    rules = config.rules + (
        config.rules[0].model_copy(update={"id": "brand", "category": "custom", "terms": ("acme corp", "zorblax")}),
    )
    policy = load_policy(config.model_copy(update={"rules": rules, "name": "custom"}).model_dump())
    findings = policy.scan('A billboard that says "ACME Corp sucks, buy Z0RBLAX"').findings
    assert [(f.rule_id, f.category, f.normalized) for f in findings] == [
        ("brand", "custom", "acme corp"),
        ("brand", "custom", "zorblax"),
    ]


def test_emoji_entry_matches_inside_text(default):
    finding = default.scan("A sign that says 🖕🏽 ok").findings[0]
    assert (finding.text, finding.category) == ("🖕", "profanity")
