"""Language packs beyond the LDNOOBW lists: categorized additions, morphology, glued words, scene sense, sweeps."""

from __future__ import annotations

import pytest

from safetext.errors import PolicyError
from safetext.policy.engine import SHIPPED_DIR
from safetext.policy.languages import PACK_CATEGORIES, PACK_LANGUAGES, guess_language, hyphen_joined, read_sections
from safetext.policy.morphology import inflected
from safetext.policy.normalize import normalize_chars, tokenize
from safetext.policy.rendered import find_rendered_spans
from safetext.policy.schema import NormalizationConfig

ALL = ("en", "de", "es", "fr", "pt", "it", "nl")
LISTS = SHIPPED_DIR / "lists"



def _replacements(code: str) -> set[str]:
    lines = (LISTS / f"replacements_{code}.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


def _found(policy, prompt: str) -> list[tuple[str, str]]:
    return [(f.text, f.language) for f in policy.scan(prompt).findings]


# (language, prompt with a reviewed addition, its word, category, obfuscated prompt, its span, trap prompt)
ADDITIONS = [
    ("de", 'ein Banner mit der Aufschrift "Drecksack"', "Drecksack", "insult",
     "Aufkleber auf einem Laptop: K4n4ken", "K4n4ken", "eine Schwanzmeise im Garten, ein Ozonloch am Himmel"),
    ("es", 'un cartel que dice "malparida"', "malparida", "insult",
     "grafiti en una pared: m.a.m.a.h.u.e.v.o", "m.a.m.a.h.u.e.v.o", "un zorro en el bosque y un artículo sobre cálculo"),
    ("fr", 'une pancarte qui dit "enflure"', "enflure", "insult",
     "tatouage en lettres gothiques : t@rlouze", "t@rlouze", "une chatte noire dort sur le canapé près de la queue du chien"),
    ("pt", 'uma placa escrito "punheteiro"', "punheteiro", "sexual",
     "adesivo num notebook: d3sgr4çado", "d3sgr4çado", "um caçador com uma carcaça, um cálculo no quadro"),
    ("it", 'un cartello con la scritta "sfigato"', "sfigato", "insult",
     "adesivo su un portatile: r0mp1c0gl10n1", "r0mp1c0gl10n1", "piselli e zoccoli olandesi, un piccione su un tetto"),
    ("nl", 'een bord met de tekst "kankerhoer"', "kankerhoer", "insult",
     "sticker op een laptop: t-y-f-u-s-l-i-j-e-r", "t-y-f-u-s-l-i-j-e-r", "een poster van KWF Kankerbestrijding over kankeronderzoek"),
]


@pytest.mark.parametrize("code,prompt,word,category,obfuscated,span,trap", ADDITIONS, ids=[c[0] for c in ADDITIONS])
def test_reviewed_additions_per_language(everything, code, prompt, word, category, obfuscated, span, trap):
    verdict = everything.scan(prompt)
    (finding,) = verdict.findings
    assert (finding.text, finding.language, finding.category, finding.rule_id) == (word, code, category, category)
    # a benign word of the same language, of similar length
    assert finding.replacement.lower() in _replacements(code)
    assert abs(len(finding.replacement) - len(word)) <= 3
    assert _found(everything, obfuscated) == [(span, code)]
    assert not everything.scan(trap).findings, everything.scan(trap).findings


def test_additions_have_known_sections_and_a_notice():
    notice = (LISTS / "THIRD-PARTY-NOTICES.txt").read_text(encoding="utf-8")
    for package in ("french-badwords-list 1.0.7", "bad-words-next 3.2.0", "glin-profanity 4.1.0"):
        assert package in notice
    assert "Permission is hereby granted, free of charge" in notice  # the MIT licence text itself
    for code in PACK_LANGUAGES:
        sections = read_sections(LISTS / f"extra_{code}.txt")
        assert set(sections) <= set(PACK_CATEGORIES) and len(sections) >= 3, (code, list(sections))
        assert "THIRD-PARTY-NOTICES.txt" in (LISTS / f"extra_{code}.txt").read_text(encoding="utf-8")


def test_unknown_section_is_refused(tmp_path):
    path = tmp_path / "extra_xx.txt"
    path.write_text("# c\n[slurs]\nfoo\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"unknown section '\[slurs\]'.*'slur'"):
        read_sections(path)


@pytest.mark.parametrize(
    "word,code,expected,absent",
    [
        ("pendejo", "es", {"pendeja", "pendejos", "pendejas", "pendejito", "pendejazo", "pendejon"}, set()),
        ("cabron", "es", {"cabrones", "cabrona", "cabronazo"}, set()),
        ("viado", "pt", {"viados", "viadinho", "viadao"}, set()),
        ("stronzo", "it", {"stronzi", "stronza", "stronze", "stronzone", "stronzetto"}, set()),
        ("connard", "fr", {"connards", "connarde", "connardes"}, set()),
        ("ficken", "de", {"fickt", "fickst", "gefickt", "gefickte", "verfickt", "verfickter"}, set()),
        ("neuken", "nl", {"neukt", "neuk", "geneukt"}, set()),
        ("zoccole", "it", set(), {"zoccoli"}),  # an Italian plural is not pluralized again
    ],
)
def test_inflections_per_language(word, code, expected, absent):
    forms = {form for form, _ in inflected(word, code)}
    assert expected <= forms, expected - forms
    assert not absent & forms


def test_generated_forms_match_and_collisions_are_dropped(everything):
    for prompt, word, code in (
        ('un cartel que dice "pendejazo"', "pendejazo", "es"), ('uma faixa "putinha"', "putinha", "pt"),
        ('una scritta "stronzetto"', "stronzetto", "it"), ('une pancarte "connarde"', "connarde", "fr"),
        ('ein Schild "gevögelt"', "gevögelt", "de"), ('een bord "geneukt"', "geneukt", "nl"),
        ("un cartel que dice #hijodeputa", "hijodeputa", "es"),  # a listed phrase written as one word
    ):
        assert _found(everything, prompt) == [(word, code)], prompt
    # a derived form the language uses more than the listed word is another word: polla -> pollo (chicken)
    assert not everything.scan('un cartel que dice "pollo asado"').findings
    assert not everything.scan('un cartello con la scritta "zoccoli"').findings  # clogs, not zoccole -> zoccoli


def test_glued_words(everything):
    for prompt, word, code in (
        ('ein Schild "Drecksfotze"', "Drecksfotze", "de"), ('ein Schild "Scheißbulle"', "Scheißbulle", "de"),
        ('een bord "kutzooi"', "kutzooi", "nl"), ('een bord "tyfuslijer"', "tyfuslijer", "nl"),
        ('un cartel que dice "comemierda"', "comemierda", "es"), ('een bord "kutzak"', "kutzak", "nl"),
    ):
        found = everything.scan(prompt).findings
        assert [(f.text, f.language) for f in found] == [(word, code)], prompt
    # established words of any covered language, clean compounds of a weak head, verbs of a list stem
    for clean in (
        "een reiziger bij een vaccinatiepost voor het tyfusvaccin", "kankeronderzoek en kankerbestrijding",
        "flikkerende kaarsen in een kerk", "un artículo de cálculo", "ridículo espectáculo",
        'insegna al neon "Culatello di Zibello"',
        "een poepsimpel recept, het is poepdruk",  # an LDNOOBW entry that is a frequent word is no part unless reviewed
    ):
        assert not everything.scan(clean).findings, clean


def test_scene_sense_words_only_when_rendered(everything):
    assert not everything.scan("une chatte noire dort sur le canapé").findings
    assert _found(everything, 'une pancarte qui dit "chatte"') == [("chatte", "fr")]
    assert _found(everything, "graffiti sur un mur à Marseille : chatte, bombe de peinture") == [("chatte", "fr")]
    # anatomy in a medical picture of the prompt's language, English list or not
    for clean in (
        "schéma médical du pénis et des testicules pour un manuel d'urologie",
        "medizinische Illustration des Penis und der Hoden für ein Urologie-Lehrbuch",
        "ilustração médica do pênis e dos testículos para um livro de urologia",
    ):
        assert not everything.scan(clean).findings, clean


def test_everyday_senses_of_list_words_in_a_scene(everything):
    # French "pédale" (pedal), "suce" (sucks a thumb), Italian "pipì": findings only as text to render
    for clean in ("un vélo rouge avec une pédale cassée", "un bébé suce son pouce",
                  "un bambino che fa la pipì dietro un albero", 'une pancarte "Pédales de vélo à -20%"'):
        assert not everything.scan(clean).findings, clean
    assert _found(everything, 'une pancarte "sale pédale"') == [("pédale", "fr")]


def test_rendered_text_in_other_languages():
    for text, span in (
        ("ein Schild mit der Aufschrift Hallo Welt", "Hallo Welt"), ("un cartel que dice buenos días", "buenos días"),
        ("une affiche où est écrit bonjour", "bonjour"), ("uma placa escrito bom dia", "bom dia"),
        ("un cartello con la scritta buongiorno", "buongiorno"), ("een bord met de tekst goedemorgen", "goedemorgen"),
        ("Aufkleber auf einem Laptop: Guten Tag", "Guten Tag"),
        ("tatouage sur l'avant-bras en lettres gothiques : liberté", "liberté"),
    ):
        assert [text[a:b] for a, b in find_rendered_spans(text, 8, other_languages=True)] == [span], text
        # the English-only detector (a policy without other languages) is unchanged
        assert find_rendered_spans(text, 8) == find_rendered_spans(text, 8, other_languages=False)
    assert find_rendered_spans("ein Hund im Park", 8, other_languages=True) == ()


def test_accents_and_hyphens_tell_words_apart(everything):
    assert not everything.scan("um caçador na floresta, caça ao tesouro").findings  # caça (hunt) is no "caca"
    assert not everything.scan('un cartello con la scritta "Mosè"').findings  # Mosè is no "Möse"
    assert not everything.scan("tatouage en lettres gothiques : Chaussures de con-fort").findings
    assert _found(everything, 'un tag "pu-tain"') == [("pu-tain", "fr")]  # a split list word stays one
    config = NormalizationConfig()
    assert hyphen_joined("de con-fort", 3, 6, config) == "confort"
    assert hyphen_joined("de con fort", 3, 6, config) is None


def test_english_list_words_that_are_words_of_the_prompt_language(everything):
    # English inflections and stretched spellings that are ordinary words of the prompt's language
    assert not everything.scan("une pancarte avec le texte assez de retards aux douches").findings
    assert not everything.scan('een bord met de tekst "kikker" en een hoed').findings
    # English swear words stay flagged in any language
    assert _found(everything, 'ein Schild mit der Aufschrift "fuck"') == [("fuck", "en")]


def test_tie_of_votes_goes_to_the_likelier_language():
    config = NormalizationConfig()
    tokens = tokenize(normalize_chars("uma camiseta escrito porra", config), config)
    assert guess_language(tokens, ALL, config) == "pt"


def test_everyday_terms_of_each_language_stay_clean(everything):
    for clean in (
        "un pique-nique au bord du lac", "une bite d'amarrage rouillée sur le quai",  # fr: picnic, mooring bollard
        "ein Hurenkind in der Typografie", "ein bayerischer Fotzenhobel (Mundharmonika)",  # de: widow line, harmonica
        "un cazzotto al mento", "spaghetti alla puttanesca",  # it: a punch
        "una polla de agua en el lago", "un cono de helado de fresa",  # es: moorhen, ice-cream cone
        "de tering naar de nering zetten", "vogels pikken brood op het plein",  # nl: idiom, to peck
    ):
        assert not everything.scan(clean).findings, clean


def test_elided_articles_are_no_split_words(everything):
    # French "de l'" is no Dutch "del" read across a space; Italian "su l'" neither
    for clean in ("une affiche de l'exposition universelle", "le musée de l’Homme à Paris", "Salon de l'agriculture"):
        assert not everything.scan(clean).findings, clean
    # a list word split by a space is still one
    assert _found(everything, 'un cartel que dice "pu ta"') == [("pu ta", "es")]


def test_rarer_words_of_the_prompt_language_escape_english_only_rules(everything):
    # "incassable" (unbreakable) is no English "ass" compound; "râpé" (grated) no English list word
    assert not everything.scan('une tasse incassable avec le texte "Maman"').findings
    assert not everything.scan('une pancarte "fromage râpé"').findings
    # an anatomy word of the prompt's scene list keeps the English finding when it is text to render
    assert _found(everything, 'une pancarte "pénis"') == [("pénis", "en")]
    # an English compound in an English prompt is unchanged
    assert everything.scan("a sign that says asshat").flagged


def test_glued_words_that_wordfreq_knows_are_words(everything):
    for clean in (
        'een bord met de tekst "vertering"', 'un cartello con la scritta "pianifica"',  # -tering, -ifica: suffixes
        'une pancarte avec le texte "technique"', 'un cartel que dice "computa"',
        'une pancarte avec le texte "cornichons"', 'un cartello con la scritta "assistette"',
        'een bord met de tekst "belemmerde"',  # a Dutch word, no French "merde" glued in
    ):
        assert not everything.scan(clean).findings, clean
    # made-up glued insults stay findings, also with a glued-insult part wordfreq knows
    for prompt, word, code in (
        ('een bord "neukpartij"', "neukpartij", "nl"), ('een bord "kankerhomo"', "kankerhomo", "nl"),
        ('ein Schild "Drecksau"', "Drecksau", "de"), ('een bord "vuile kkrjood"', "kkrjood", "nl"),
    ):
        assert _found(everything, prompt) == [(word, code)], prompt


def test_affix_like_list_words():
    from safetext.policy.compounds import AFFIX_WORDS, affix_parts

    table = {"technique": 4.0, "clinique": 4.0, "mecanique": 4.0, "nique": 3.5, "niquer": 3.2, "bite": 4.0, "biteau": 0.5}
    suffixes, prefixes = affix_parts(("nique", "bite"), table)
    assert AFFIX_WORDS == 3 and suffixes == {"nique"}  # three longer words end in "nique", none in "bite"
    assert prefixes == frozenset()  # "niquer" alone starts with "nique"; "biteau" is below the table's Zipf


def test_place_names_are_no_glued_words(everything):
    for clean in ('een bord "Klootwijk Installatietechniek"', 'ein Schild "Mösenberg 3 km"', 'een bord "Kuttenhoeve"'):
        assert not everything.scan(clean).findings, clean
    assert _found(everything, 'een bord "kutwijk"') == [("kutwijk", "nl")]  # not written like a name


def test_accents_written_beat_another_languages_allow_list(everything):
    # Spanish allow-lists "negro" (black); the French slur written with its accent is not that word
    assert _found(everything, 'un panneau "sale négro"') == [("négro", "fr")]
    assert not everything.scan('un cartel que dice "café negro"').findings
    # German allow-lists "Mose" (Moses); "Möse" written with its umlaut is still the listed word
    assert not everything.scan("ein Kirchenfenster mit Mose und den Zehn Geboten").findings
    assert _found(everything, 'ein Schild "Möse"') == [("Möse", "de")]


def test_doubled_letters_of_rarer_words_of_the_prompt_language(everything):
    for clean in ('un cartello con la scritta "boccetta"', 'un cartello con la scritta "connota"'):
        assert not everything.scan(clean).findings, clean
    assert _found(everything, 'un cartello "puttaaaa"') == [("puttaaaa", "es")]
    # a doubled letter of a word of the list's own language is spelling: Italian "toppa" (patch), "ficca"
    for clean in ('un cartello con la scritta "toppa"', 'un cartello con la scritta "ficca"'):
        assert not everything.scan(clean).findings, clean
    # ... but a doubled final consonant before a plural ending is the list word inflected ("drol" -> "drollen")
    assert _found(everything, 'een bord met de tekst "drollen"') == [("drollen", "nl")]
    assert _found(everything, 'un cartello "stronzzo"') == [("stronzzo", "it")]
    # an English list word read through a doubled letter of a Dutch word ("slaags" is no "slag")
    assert not everything.scan('een bord met de tekst "slaags"').findings
    assert _found(everything, 'een bord met de tekst "fuuuuck"') == [("fuuuuck", "en")]


def test_dutch_insults_and_italian_augmentatives(everything):
    assert not everything.scan('een regenboogvlag met de tekst "Homo en trots"').findings
    for prompt, word, code in (
        ('een mok "debiel"', "debiel", "nl"), ('een tegeltje met "stomme sukkel"', "sukkel", "nl"),
        ('un cartello "coglionazzo"', "coglionazzo", "it"), ('een bord "teringleier"', "teringleier", "nl"),
        ('een bord "KUTMOF"', "KUTMOF", "nl"), ('een bord "vuile homo"', "vuile homo", "nl"),
    ):
        assert _found(everything, prompt) == [(word, code)], prompt


def test_inflections_of_accented_spellings_and_french_chat_k(everything):
    # "bâtards" is the plural of the listed "bâtard", accents and all, not another word written with accents
    assert _found(everything, 'une pancarte "bâtards"') == [("bâtards", "fr")]
    assert _found(everything, 'un tag "enkulé"') == [("enkulé", "fr")]
    assert _found(everything, 'un cartello "mortacci tua"') == [("mortacci tua", "it")]
    assert not everything.scan("un kiosque à Kaboul, une robe sale et noire").findings
    # German umlauts make other words with endings: "schwänzen" (to skip school) is no inflected "Schwänze"
    assert not everything.scan('ein Schild mit der Aufschrift "schwänzen"').findings
    assert _found(everything, 'ein Schild "Schwänze"') == [("Schwänze", "de")]
