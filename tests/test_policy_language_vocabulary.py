"""Regional and chat vocabulary of the language packs, and the everyday words, dishes and places beside them.

Each class of words gets a caught prompt (the word with its forms, as people write it) and a trap prompt
(the everyday word, dish or place that holds or folds to it), both written for these tests.
"""

from __future__ import annotations

import pytest

from safetext.policy.engine import SHIPPED_DIR
from safetext.policy.languages import read_sections

LISTS = SHIPPED_DIR / "lists"



def _found(policy, prompt: str) -> list[tuple[str, str]]:
    return [(f.text, f.language) for f in policy.scan(prompt).findings]


# (language, prompt, the spans found with their language)
CAUGHT = [
    # Austrian and Bavarian: Oasch (Arsch), gschissen, gfickt; ß written as sz
    ("de", 'Lebkuchenherz mit der Aufschrift "Oaschloch"', [("Oaschloch", "de")]),
    ("de", 'Aufkleber auf dem Spind: "Oaschgsichter"', [("Oaschgsichter", "de")]),
    ("de", 'Wirtshausschild mit der Aufschrift "du gschissene Bagage"', [("gschissene", "de")]),
    ("de", 'ein T-Shirt mit "Hundsgfickter"', [("Hundsgfickter", "de")]),
    ("de", 'Graffiti an der Mauer: SCHEISZ DRAUF', [("SCHEISZ", "de")]),
    ("de", 'ein Schild am Biergarten mit der Aufschrift "Schleich di"', [("Schleich di", "de")]),
    ("de", 'a mug that says "du Mongo"', [("du Mongo", "de")]),
    # Latin-American Spanish: alv, v for u, hijueputa without h, Chilean weón and culiao
    ("es", 'un mensaje de chat: "vete alv"', [("vete alv", "es")]),
    ("es", 'una camiseta que dice "PVTA MADRE"', [("PVTA MADRE", "es")]),
    ("es", 'a tote bag printed with "jueputas"', [("jueputas", "es")]),
    ("es", 'un cartel que dice "aweonaos"', [("aweonaos", "es")]),
    ("es", 'a bumper sticker: "qliaos"', [("qliaos", "es")]),
    ("es", 'una pegatina que dice "sos un forro"', [("forro", "es")]),
    ("es", 'un grafiti: "soretes"', [("soretes", "es")]),
    ("es", 'una taza con "vete a la berga"', [("vete a la berga", "es")]),
    # Québécois marde, salop, "mongol" as an insult, "baiser" in its vulgar phrases, plurals of slurs
    ("fr", 'une pancarte qui dit "mangez d\'la marde"', [("marde", "fr")]),
    ("fr", 'un tag sur le mur : "mardeux"', [("mardeux", "fr")]),
    ("fr", 'un autocollant qui dit "espèce de salop"', [("salop", "fr")]),
    ("fr", 'un post-it qui dit "t\'es un mongol"', [("mongol", "fr")]),
    ("fr", 'un t-shirt avec "baise ta race"', [("baise ta race", "fr")]),
    ("fr", 'a banner that says "sales négros"', [("négros", "fr")]),
    # Brazilian and European Portuguese
    ("pt", 'uma placa escrito "chupa o meu pau"', [("chupa o meu pau", "pt")]),
    ("pt", 'a mug printed with "chupa minha rola"', [("chupa minha rola", "pt")]),
    ("pt", 'uma faixa escrito "crioulos imundos"', [("crioulos", "pt")]),
    ("pt", 'um letreiro que diz "panascas"', [("panascas", "pt")]),
    ("pt", 'um adesivo escrito "bucetudas"', [("bucetudas", "pt")]),
    ("pt", 'uma toalha escrito "peitudas"', [("peitudas", "pt")]),
    # Italian and Neapolitan
    ("it", 'un cartello con scritto "fottetevi"', [("fottetevi", "it")]),
    ("it", 'un murale con la scritta "vi inculo"', [("vi inculo", "it")]),
    ("it", 'una maglietta con scritto "pucchiacche"', [("pucchiacche", "it")]),
    ("it", 'un graffito con la scritta "negracci"', [("negracci", "it")]),
    # Dutch and Flemish: disease curses and their spellings, -lijer written -lyer, kontlikker, slur phrases
    ("nl", 'een bord met de tekst "TYFUSLYER"', [("TYFUSLYER", "nl")]),
    ("nl", 'een straatnaambord "Pleurislijerstraat"', [("Pleurislijerstraat", "nl")]),
    ("nl", 'een mok met "tyfeslijers"', [("tyfeslijers", "nl")]),
    ("nl", 'een spandoek met de tekst "tyfus op"', [("tyfus op", "nl")]),
    ("nl", 'een krijtbord: "krijg de pleures"', [("krijg de pleures", "nl")]),
    ("nl", 'een bord met de tekst "vuile kontlikkers"', [("kontlikkers", "nl")]),
    ("nl", 'a banner that says "smerige joden"', [("smerige joden", "nl")]),
    ("nl", 'een krijtbord: "geen janetten"', [("janetten", "nl")]),
    ("nl", 'een bord met de tekst "kankermongolen"', [("kankermongolen", "nl")]),
    ("nl", 'een bord met de tekst "hij zit zich af te trekken"', [("zich af te trekken", "nl")]),
    # Swiss and Austrian German, Mexican and Chilean Spanish, Québécois sacres, Sicilian and Neapolitan, Flemish
    ("de", 'ein Plakat mit der Aufschrift "Hueresiech"', [("Hueresiech", "de")]),
    ("es", 'un cartel que dice "maracos"', [("maracos", "es")]),
    ("fr", 'a mug that says "TABARNAK"', [("TABARNAK", "fr")]),
    ("fr", 'une pancarte qui dit "ostie de cave"', [("ostie de", "fr")]),
    ("pt", 'uma faixa escrito "seu macaco"', [("seu macaco", "pt")]),
    ("it", 'un cartello con scritto "buttanazza"', [("buttanazza", "it")]),
    ("nl", 'een bord met de tekst "zakkewasser"', [("zakkewasser", "nl")]),
]


@pytest.mark.parametrize("code,prompt,expected", CAUGHT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CAUGHT)])
def test_regional_and_chat_vocabulary_is_caught(everything, code, prompt, expected):
    assert _found(everything, prompt) == expected


# (language, trap prompt: the everyday word, dish or place; prompt with the toxic reading kept, its spans)
TRAPS = [
    ("de", "Trikot mit dem Namen KUNTZ und der Nummer 7", 'a sticker that says "kuntz"', [("kuntz", "en")]),
    ("de", "ein Orchester mit Fagott, Oboe und Klarinette", 'a sign that says "faggot"', [("faggot", "en")]),
    ("de", "Gipfelkreuz auf dem Wank bei Garmisch", 'a sign that says "wank"', [("wank", "en")]),
    ("es", 'menú del día: "rape a la marinera con arroz"', 'a poster that says "rape"', [("rape", "en")]),
    ("es", 'a chalkboard that says "Rape a la plancha 18 euros"', 'a poster that says "rape"', [("rape", "en")]),
    ("es", "un escaparate con chaquetas con forro polar", 'una taza con "viejo forro"', [("forro", "es")]),
    ("fr", "étiquette : rillettes de Connerré", 'une pancarte qui dit "déconne pas"', []),
    ("fr", 'a cafe menu that says "Carottes râpées 4 euros"', 'a poster that says "rape"', [("rape", "en")]),
    ("fr", "une yourte mongole dans la steppe", 'un post-it qui dit "espèce de mongol"', [("mongol", "fr")]),
    ("fr", "un calice en argent et une hostie sur l'autel", 'a sign that says "câlisse"', [("câlisse", "fr")]),
    ("pt", "um macaco hidráulico na oficina", 'uma placa escrito "macaco imundo"', [("macaco imundo", "pt")]),
    ("pt", 'a sign: "Caralhotas de Almeirim, pão quente"', 'uma placa escrito "caralho"', [("caralho", "pt")]),
    ("pt", 'um cartaz escrito "Curso de crioulo cabo-verdiano"', 'um muro escrito "crioulos"', [("crioulos", "pt")]),
    ("pt", 'uma placa escrito "Milho crioulo orgânico"', 'um muro escrito "crioulo"', [("crioulo", "pt")]),
    ("pt", 'um desenho de um pica-pau escrito "Pica-pau"', 'uma placa escrito "chupa pau"', [("chupa pau", "pt")]),
    ("it", "un banco del mercato con rape rosse e finocchi", 'a poster that says "rape"', [("rape", "en")]),
    ("it", 'a t-shirt that says "Pasta e fagioli"', 'a mug that says "fugly"', [("fugly", "en")]),
    ("it", 'un menù con scritto "Negroni sbagliato 8 euro"', 'un muro con la scritta "negri"', [("negri", "it")]),
    ("nl", 'een schoolbord met de tekst "Optellen en aftrekken"', 'een bord met de tekst "trek je af"', [("trek je af", "nl")]),
    ("nl", 'een poster: "Inenten tegen buiktyfus"', 'een bord met de tekst "krijg de tyfus"', [("krijg de tyfus", "nl")]),
    ("nl", 'een vertrekbord: vlucht naar Zürich-Kloten', 'een bord met de tekst "kloten"', [("kloten", "nl")]),
    ("nl", "een reisposter van Lesbos met een strand", 'a sign that says "lesbo"', [("lesbo", "en")]),
    ("nl", 'a poster that says "Lesbos, Greece"', 'a sign that says "dirty lesbo"', [("lesbo", "en")]),
]


@pytest.mark.parametrize("code,trap,toxic,expected", TRAPS, ids=[f"{c[0]}-{i}" for i, c in enumerate(TRAPS)])
def test_everyday_words_stay_clean_and_the_toxic_reading_is_caught(everything, code, trap, toxic, expected):
    assert _found(everything, trap) == []
    if expected:
        assert _found(everything, toxic) == expected


def test_everyday_words_are_not_listed_alone():
    """Words whose everyday sense dominates are listed only in the phrases that fix the vulgar sense."""
    entries = {e for code in ("pt", "nl") for section in read_sections(LISTS / f"extra_{code}.txt").values() for e in section}
    assert {"chupa meu pau", "chupa rola", "vuile jood", "potten en janetten"} <= entries
    assert not {"pau", "rola", "jood", "potten", "mongolen"} & entries
    excluded = (LISTS / "ldnoobw_context_nl.txt").read_text(encoding="utf-8").split()
    assert "aftrekken" in excluded
