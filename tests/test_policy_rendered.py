"""Rendered-text extraction: which words the prompt asks to be written, and how the policy treats words
outside that text (scene description)."""

from __future__ import annotations

import pytest

from safetext.policy import Policy, find_rendered_spans, load_policy
from safetext.policy.verdict import Action

TEMPLATES = [
    'A red sign that says "{w}".',
    "A red sign that says {w}.",
    "{w} written on a blue sign",
    "A green placard reading {w}",
    'A sign that says "{w}".',
    "Flowers in a beautiful garden with the word {w} written",
]
WORDS = ["WORD", "hello", "Peace", "shit", "f.u.c.k", "sh1t", "f*ck", "fuuuck"]


def _rendered(text: str) -> list[str]:
    return [text[s:e] for s, e in find_rendered_spans(text)]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("word", WORDS)
def test_required_templates_extract_the_word(template, word):
    prompt = template.format(w=word)
    assert _rendered(prompt) == [word]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("A T-shirt with the words I LOVE NY on it", ["I LOVE NY"]),
        ("a sign that says go away in red letters", ["go away"]),
        ("A protest placard: NO MORE WAR, in a street", ["NO MORE WAR"]),
        ("A cake with happy birthday written on it", ["happy birthday"]),
        ("A book titled The Long Night on a table", ["The Long Night"]),
        ("A jar labeled sugar next to a cup", ["sugar"]),
        ("Magnets spelling out hi there on a fridge", ["hi there"]),
        ("A neon sign reads OPEN 24 HOURS in the window", ["OPEN 24 HOURS"]),
        ("A banner “Welcome home” over the door", ["Welcome home"]),
        ("The dog's bowl says 'Rex'", ["Rex"]),
        ("A mug with the text best dad ever", ["best dad ever"]),
        ("A girl reading a book in a park", []),
        ("A dog next to a red sign at dusk", []),
    ],
)
def test_other_rendered_forms(prompt, expected):
    assert _rendered(prompt) == expected


def test_findings_say_whether_they_are_rendered():
    policy = load_policy("default")
    verdict = policy.scan('An idiot holding a sign that says "shit"')
    by_text = {f.text: f.rendered for f in verdict.findings}
    assert by_text == {"idiot": False, "shit": True}
    start, end = verdict.rendered_spans[0]
    assert verdict.prompt[start:end] == "shit"


def test_outside_rendered_action_is_configurable():
    config = load_policy("default").config
    policy = Policy(config.model_copy(update={"outside_rendered": Action.LOG, "name": "scene-log"}))
    verdict = policy.scan('An idiot holding a sign that says "shit"')
    actions = {f.text: (f.action, f.replacement is not None) for f in verdict.findings}
    assert actions == {"idiot": (Action.LOG, False), "shit": (Action.NEUTRALIZE, True)}
    assert verdict.sanitized_prompt.startswith("An idiot holding")
    # a per-rule setting overrides the policy-wide one
    rules = tuple(
        r.model_copy(update={"outside_rendered": Action.BLOCK}) if r.category == "insult" else r for r in config.rules
    )
    strict_insults = Policy(config.model_copy(update={"outside_rendered": Action.LOG, "rules": rules, "name": "x"}))
    assert strict_insults.scan('An idiot holding a sign that says "shit"').action is Action.BLOCK


def test_default_checks_words_outside_rendered_text_with_the_same_action():
    verdict = load_policy("default").scan("a shitty drawing of a house")
    assert [(f.text, f.rendered, f.action) for f in verdict.findings] == [("shitty", False, Action.NEUTRALIZE)]


def test_disabling_extraction_counts_every_finding_as_rendered():
    config = load_policy("default").config
    policy = Policy(config.model_copy(update={
        "rendered_text": config.rendered_text.model_copy(update={"enabled": False}),
        "outside_rendered": Action.LOG,
        "name": "no-extraction",
    }))
    verdict = policy.scan("a shitty drawing")
    assert verdict.rendered_spans == ()
    assert [(f.rendered, f.action) for f in verdict.findings] == [(True, Action.NEUTRALIZE)]
