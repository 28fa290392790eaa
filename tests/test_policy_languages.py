"""Policies beyond English: ``languages:``, the shipped lists of de/es/fr/pt/it/nl, cross-language guards."""

from __future__ import annotations

import json

import pytest

from safetext.errors import PolicyError
from safetext.policy import load_policy
from safetext.policy.engine import SHIPPED_DIR
from safetext.policy.languages import PACK_LANGUAGES, guess_language, read_json_list
from safetext.policy.normalize import normalize_chars, tokenize
from safetext.policy.schema import NormalizationConfig

ALL = ("en", "de", "es", "fr", "pt", "it", "nl")
LISTS = SHIPPED_DIR / "lists"


@pytest.fixture(scope="module")
def default():
    return load_policy("default")



def _replacements(code: str) -> set[str]:
    return {line.strip() for line in (LISTS / f"replacements_{code}.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


# (language, list word prompt, its word, obfuscated prompt, its span, trap prompt)
CASES = [
    ("de", 'ein Schild mit der Aufschrift "Scheiße"', "Scheiße", 'Graffiti: "Arschl0ch"', "Arschl0ch",
     "ein Angler mit einem großen Barsch, Blaskapelle beim Marsch"),
    ("es", 'un cartel que dice "gilipollas"', "gilipollas", 'una taza con "p.u.t.a"', "p.u.t.a",
     'un letrero que dice "Computadoras y reparaciones"'),
    ("fr", 'une pancarte qui dit "connard"', "connard", 'un tag "s@lope"', "s@lope",
     "une salopette en jean, un cul-de-sac en Provence"),
    ("pt", 'uma placa escrito "caralho"', "caralho", 'uma faixa com "p0rra"', "p0rra",
     "uma aranha na teia e uma cerveja gelada"),
    ("it", 'un cartello con scritto "stronzo"', "stronzo", 'una tazza con "c.a.z.z.o"', "c.a.z.z.o",
     "un muratore con la cazzuola, un piatto di pesce"),
    ("nl", 'een bord met "klootzak"', "klootzak", 'een mok met "KUUUUT"', "KUUUUT",
     "een kat met een muts naast een asbak"),
]


@pytest.mark.parametrize("code,prompt,word,obfuscated,span,trap", CASES, ids=[c[0] for c in CASES])
def test_each_language(everything, default, code, prompt, word, obfuscated, span, trap):
    verdict = everything.scan(prompt)
    assert [(f.text, f.language) for f in verdict.findings] == [(word, code)]
    # each category of the language lists goes to the policy's rule of that category
    assert verdict.findings[0].rule_id == verdict.findings[0].category in ("profanity", "sexual", "insult", "slur")
    replacement = verdict.findings[0].replacement
    assert replacement in _replacements(code) or replacement.lower() in {w.lower() for w in _replacements(code)}
    assert abs(len(replacement) - len(word)) <= 2
    assert verdict.sanitized_prompt == prompt.replace(word, replacement)
    hidden = everything.scan(obfuscated)
    assert [(f.text, f.language) for f in hidden.findings] == [(span, code)]
    assert hidden.findings[0].score == 0.9 and hidden.findings[0].normalizations
    assert not everything.scan(trap).findings, everything.scan(trap).findings
    # the English-only default does not know the word (it would go onto the sign untouched)
    assert not default.scan(prompt).flagged or word in ("connard",)


@pytest.mark.parametrize("code", PACK_LANGUAGES)
def test_shipped_lists_are_verbatim_ldnoobw_with_licence(code):
    entries = read_json_list(LISTS / f"ldnoobw_{code}.json")
    assert len(entries) >= 60
    raw = json.loads((LISTS / f"ldnoobw_{code}.json").read_text(encoding="utf-8"))
    assert tuple(e.strip() for e in raw) == entries
    licence = (LISTS / "LDNOOBW-LICENSE.txt").read_text(encoding="utf-8")
    assert "Attribution 4.0 International" in licence
    attribution = (LISTS / "LDNOOBW-ATTRIBUTION.txt").read_text(encoding="utf-8")
    assert f"ldnoobw_{code}.json" in attribution and "naughty-words 1.2.0" in attribution


def test_language_replacement_keeps_case_and_length(everything):
    verdict = everything.scan('Tasse mit "FOTZEN"')
    (finding,) = verdict.findings
    assert finding.language == "de" and finding.replacement.isupper()
    assert finding.replacement.lower() in {w.lower() for w in _replacements("de")}
    assert len(finding.replacement) == len("FOTZEN")


def test_english_word_in_a_german_prompt_gets_a_german_replacement(everything):
    verdict = everything.scan('ein Schild mit der Aufschrift "fuck"')
    (finding,) = verdict.findings
    assert finding.language == "en" and finding.replacement.lower() in {w.lower() for w in _replacements("de")}


def test_cross_language_false_positives(everything):
    # English prompts: list words of other languages that are English words
    assert not everything.scan("a con artist takes a bite of a pot pie").findings
    # other languages: English list words (or other lists' words) that are ordinary words there
    assert not everything.scan("un perro negro corriendo en la playa").findings  # es: negro = black
    assert not everything.scan('ein Schild am Kanal: "Bitte nicht füttern"').findings  # fr list: bitte
    assert not everything.scan("un train en retard sur un quai de gare").findings  # en list: retard
    assert not everything.scan('een bord "Hoe laat is het?"').findings  # en list: hoe
    assert not everything.scan("een vrouw die een jurk naait, een schaatser op een sloot").findings  # en fuzzy rules
    # a list word of one language that is an ordinary word of the prompt's language (wordfreq)
    assert not everything.scan('une affiche "Le cheval de Troie" au musée').findings  # it list: troie
    assert not everything.scan("een jongen die zijn huiswerk wil negeren").findings  # not generated from de "neger"
    assert [f.language for f in everything.scan('una scritta "troie" sul muro').findings] == ["it"]
    # ... and the same words stay flagged where they are the offensive word
    assert everything.scan('une pancarte qui dit "nègre"').findings[0].language == "fr"
    assert everything.scan('une pancarte "con"').findings[0].language == "fr"


def test_guess_language_votes_per_word():
    config = NormalizationConfig()

    def guess(text: str) -> str:
        return guess_language(tokenize(normalize_chars(text, config), config), ALL, config)

    assert guess('a German bakery sign "Bäckerei Fuchs"') == "en"
    assert guess("ein Leuchtturm an der Nordsee bei Sturm") == "de"
    assert guess("un panneau Sortie de secours") == "fr"
    assert guess("una tazza Buongiorno mamma") == "it"
    assert guess("") == "en"
    # a tie of votes goes to the language under which the words are likelier (sum of Zipf values)
    assert guess("uma camiseta escrito porra") == "pt"


def test_default_policy_is_english_only(default):
    assert default.config.languages == ("en",)
    verdict = default.scan('A sign that says "shit"')
    assert verdict.findings[0].language == "en"
    assert load_policy("strict").config.languages == ALL


@pytest.mark.parametrize(
    "languages,needle",
    [(["de", "de", "en"], "each code once"), (["de"], "include 'en'"), (["en", "xx"], "languages")],
)
def test_bad_languages_are_refused(default, languages, needle):
    data = default.config.model_dump()
    data["languages"] = languages
    with pytest.raises(PolicyError, match=needle):
        load_policy(data)


def test_languages_need_a_profanity_rule(default):
    data = default.config.model_dump()
    data["languages"] = ["en", "de"]
    data["rules"] = [r for r in data["rules"] if r["category"] != "profanity"]
    data["lists"] = [entry for entry in data["lists"] if entry["category"] != "profanity"]
    with pytest.raises(PolicyError, match="category 'profanity'"):
        load_policy(data)


@pytest.mark.parametrize(
    "written,folded",
    [
        ("Scheiße", "scheisse"), ("SCHEIẞE", "scheisse"), ("ĳsje", "ijsje"), ("Dødel", "dodel"), ("Ærø", "aero"),
        ("ıdiot", "idiot"), ("Łódź", "lodz"), ("coño", "cono"), ("enculé", "encule"), ("cabrão", "cabrao"),
    ],
)
def test_letters_of_other_languages_fold_for_matching(written, folded):
    config = NormalizationConfig()
    assert [t.text for t in tokenize(normalize_chars(written, config), config)] == [folded]


def test_language_inflections_and_excluded_everyday_entries(everything):
    # generated forms of the language: plural / gender / verb endings
    for prompt, word, code in (
        ('Schild "Fotzen"', "Fotzen", "de"), ('cartel "cabrones"', "cabrones", "es"),
        ('insegna "stronzi"', "stronzi", "it"), ('bord "hoeren"', "hoeren", "nl"),
    ):
        assert [(f.text, f.language) for f in everything.scan(prompt).findings] == [(word, code)]
    # LDNOOBW entries whose everyday meaning dominates are excluded (ldnoobw_context_<code>.txt)
    for clean in ("un piatto di pesce, una regina", "uma cerveja e uma aranha", "een muts en een asbak", "un martillo"):
        assert not everything.scan(clean).findings
