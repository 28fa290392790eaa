"""Each normalization step: it undoes its evasion, is reported in the finding, maps offsets back to the
original prompt, and switching it off in the policy really turns it off."""

from __future__ import annotations

import pytest

from safetext.policy import Policy, PolicyConfig, load_policy
from safetext.policy.normalize import normalize_chars, run_lengths, tokenize
from safetext.policy.schema import NormalizationConfig


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _policy_without(step: str) -> Policy:
    base = load_policy("default").config
    steps = step.split("+")
    normalization = base.normalization.model_copy(update={name: False for name in steps})
    # the word lists only: the shipped classifier scores words whatever the normalization steps
    backends = tuple(spec for spec in base.backends if spec.name == "wordlist")
    return Policy(base.model_copy(update={"normalization": normalization, "backends": backends, "name": f"no-{'-'.join(steps)}"}))


# (prompt, offending span as written, matched term, step reported)
CASES = [
    ('A sign that says "ｆｕｃｋ"', "ｆｕｃｋ", "fuck", "nfkc"),
    ('A sign that says "𝐬𝐡𝐢𝐭"', "𝐬𝐡𝐢𝐭", "shit", "nfkc"),
    ('A sign that says "fu\u200bck"', "fu\u200bck", "fuck", "invisible"),
    ('A sign that says "sh\u00adit"', "sh\u00adit", "shit", "invisible"),
    ('A sign that says "c\u2060u\u2060n\u2060t"', "c\u2060u\u2060n\u2060t", "cunt", "invisible"),
    ('A sign that says "ƒuck"', "ƒuck", "fuck", "confusables"),
    ('A sign that says "ѕһіt"', "ѕһіt", "shit", "confusables"),  # Cyrillic
    ('A sign that says "ΒΙΤCΗ"', "ΒΙΤCΗ", "bitch", "confusables"),  # Greek capitals
    ('A sign that says "fück"', "fück", "fuck", "confusables"),  # accented Latin
    ('A sign that says "fu\u0308ck"', "fu\u0308ck", "fuck", "confusables"),  # combining diaeresis
    ('A sign that says "sh1t"', "sh1t", "shit", "leetspeak"),
    ('A sign that says "b!tch"', "b!tch", "bitch", "leetspeak"),
    ('A sign that says "@$$hole"', "@$$hole", "asshole", "leetspeak"),
    ('A sign that says "5lu7"', "5lu7", "slut", "leetspeak"),
    ('A sign that says "d1ck"', "d1ck", "dick", "leetspeak"),
    ('A sign that says "wh0r3"', "wh0r3", "whore", "leetspeak"),
    ('A sign that says "+wat"', "+wat", "twat", "leetspeak"),
    ('A sign that says "c4nt"', None, None, None),  # 4 reads as 'a': "cant" is not a term
    ('A sign that says f u c k', "f u c k", "fuck", "separators"),
    ('A sign that says f.u.c.k', "f.u.c.k", "fuck", "separators"),
    ('A sign that says f-u-c-k', "f-u-c-k", "fuck", "separators"),
    ('A sign that says f_u_c_k', "f_u_c_k", "fuck", "separators"),
    ('A sign that says f*u*c*k', "f*u*c*k", "fuck", "separators"),
    ('A sign that says fuuuuck', "fuuuuck", "fuck", "repeats"),
    ('A sign that says shiiiiit', "shiiiiit", "shit", "repeats"),
    ('A sign that says f*ck', "f*ck", "fuck", "wildcards"),
    ('A sign that says sh#t', "sh#t", "shit", "wildcards"),
    ('A sign that says f**k', "f**k", "fuck", "wildcards"),
    ('A sign that says c*nt', "c*nt", "cunt", "wildcards"),
]


@pytest.mark.parametrize("prompt, span, term, step", CASES, ids=[c[0].split("says ")[1] for c in CASES])
def test_each_step_undoes_its_evasion_and_maps_offsets_back(default, prompt, span, term, step):
    verdict = default.scan(prompt)
    if span is None:
        assert verdict.findings == ()
        return
    assert len(verdict.findings) == 1, verdict.findings
    finding = verdict.findings[0]
    assert finding.normalized == term
    assert step in finding.normalizations
    # offsets index the ORIGINAL prompt, whatever the normalization did to lengths
    assert prompt[finding.start : finding.end] == span == finding.text
    assert verdict.sanitized_prompt == prompt[: finding.start] + finding.replacement + prompt[finding.end :]


@pytest.mark.parametrize(
    "step, prompt",
    [
        # the TR39 confusables data also reads mathematical letters: both steps must be off
        ("nfkc+confusables", 'A sign that says "𝐬𝐡𝐢𝐭"'),
        ("invisible", 'A sign that says "fu\u200bck"'),
        ("confusables", 'A sign that says "ѕһіt"'),
        ("leetspeak", 'A sign that says "sh1t"'),
        ("separators", "A sign that says f u c k"),
        ("repeats", "A sign that says fuuuuck"),
        ("wildcards", "A sign that says f*ck"),
    ],
)
def test_switching_a_step_off_disables_it(default, step, prompt):
    assert default.scan(prompt).action.value == "neutralize"
    assert _policy_without(step).scan(prompt).findings == ()


def test_plain_hit_reports_no_step_and_full_score(default):
    finding = default.scan('A sign that says "shit"').findings[0]
    assert finding.normalizations == ()
    assert finding.score == 1.0
    assert default.scan("A sign that says sh1t").findings[0].score == 0.9
    assert default.scan("A sign that says sh*t").findings[0].score == 0.8


def test_several_steps_combine_and_are_all_reported(default):
    prompt = "A sign that says ｓ\u200bh1iiit"
    finding = default.scan(prompt).findings[0]
    assert finding.normalized == "shit"
    assert set(finding.normalizations) == {"nfkc", "invisible", "leetspeak", "repeats"}
    assert prompt[finding.start : finding.end] == "ｓ\u200bh1iiit"


def test_repeats_never_shorten_a_term():
    # "as" must not match "ass"; "niger" must not match the slur with a double g.
    policy = load_policy("default")
    assert policy.scan("as good as new").findings == ()
    assert policy.scan("Niger river").findings == ()
    assert [f.normalized for f in policy.scan("asssss").findings] == ["ass"]


def test_index_map_handles_expansion_and_removal():
    config = NormalizationConfig()
    norm = normalize_chars("ﬁ\u200bne ß", config)  # ligature expands, zero-width is dropped, ß -> ss
    assert norm.text == "fine ss"
    assert [norm.span(i, i + 1) for i in range(len(norm.text))] == [
        (0, 1), (0, 2), (2, 3), (3, 4), (4, 5), (5, 6), (5, 6)
    ]


def test_ascii_fast_path_is_identity_and_lower_case():
    norm = normalize_chars("Hello\tWorld", NormalizationConfig())
    assert norm.text == "hello world"
    assert norm.starts is None and norm.span(0, 5) == (0, 5)


def test_tokenize_trims_punctuation_but_keeps_inner_leet():
    config = NormalizationConfig()
    tokens = tokenize(normalize_chars("shit!!! sh!t *bold* #tag 2024 a$$", config), config)
    assert [t.text for t in tokens] == ["shit", "shit", "bold", "tag", "2024", "ass"]


def test_separator_join_needs_three_single_letters():
    config = NormalizationConfig()
    assert [t.text for t in tokenize(normalize_chars("a b", config), config)] == ["a", "b"]
    assert [t.text for t in tokenize(normalize_chars("x y z word", config), config)] == ["xyz", "word"]


def test_run_lengths():
    assert run_lengths("fuuuck") == ("fuck", (1, 3, 1, 1))
    assert run_lengths("") == ("", ())


def test_normalization_config_lists_enabled_steps():
    assert NormalizationConfig(leetspeak=False).enabled_steps() == (
        "html", "nfkc", "invisible", "confusables", "separators", "repeats", "wildcards"
    )
    assert isinstance(load_policy("default").config, PolicyConfig)
