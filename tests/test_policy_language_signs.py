"""The language of rendered text, chat spellings, Dutch plural spelling, glued disease curses, short plurals and
hyphenated place names of the language packs: each rule with a case it catches and a trap it leaves alone."""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.policy.compounds import DISEASE_HEADS, DISEASE_TAILS
from safetext.policy.engine import SHIPPED_DIR
from safetext.policy.languages import hyphenated_name
from safetext.policy.morphology import chat_spelled, inflected

ALL = ("en", "de", "es", "fr", "pt", "it", "nl")



@pytest.fixture(scope="module")
def strict():
    return load_policy("strict")


def _found(policy, prompt: str) -> list[tuple[str, str]]:
    return [(f.text, f.language) for f in policy.scan(prompt).findings]


def _english_replacements() -> set[str]:
    lines = (SHIPPED_DIR / "lists" / "replacements.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# ---------------------------------------------------------------- the language of the sign


def test_sign_of_one_word_is_read_in_the_language_of_the_other_words(strict):
    # "placard" and "douche" are more frequent in French and tip the whole prompt to French, whose
    # allow-list holds "douche" (shower); the disputed word does not vote on its own reading
    verdict = strict.scan("A blue placard reading douche")
    assert [(f.text, f.language, f.rendered) for f in verdict.findings] == [("douche", "en", True)]
    assert verdict.findings[0].replacement in _english_replacements()  # an English sign gets an English word
    assert verdict.sanitized_prompt == f"A blue placard reading {verdict.findings[0].replacement}"
    # traps: a sign in French words, in a French or an English prompt, is the shower
    assert not strict.scan("une pancarte au camping : douches à gauche").findings
    assert not strict.scan('A campsite sign reading "Douches chaudes ici"').findings


def test_sign_words_decide_when_two_of_them_or_one_only_one_language_knows(everything):
    # Dutch sign words in an English prompt: "kunt" is Dutch "can", not an English sound-alike
    assert not everything.scan('A shop sign reading "Hier kunt u pinnen"').findings
    # one sign word that only German knows makes the sign German ("Fickel" is a surname, no English sound-alike)
    assert not everything.scan("a hand-painted sign: KONDITOREI FICKEL").findings
    # caught: "&" and "Sons" are no sign words of another language; the English prompt judges "Kunt"
    assert _found(everything, 'an English pub sign reading "Kunt & Sons"') == [("Kunt", "en")]


def test_list_word_of_another_language_is_judged_in_the_sign_language(everything):
    # caught: French sign words in an English prompt make "cons" the French insult, not the English "cons"
    assert _found(everything, 'a cafe chalkboard in Paris: "Ici pas de cons"') == [("cons", "fr")]
    # traps: the English words, on a sign or not
    assert not everything.scan('a sign in a debate hall: "Pros and cons"').findings
    assert not everything.scan("a debate poster listing pros and cons").findings


def test_archaic_dictionary_word_does_not_shield_a_list_word(everything):
    # caught: Webster's lists "hoer" (one who hoes), but English writers never use it: the Dutch list word
    assert _found(everything, 'a neon sign that flashes "HOER"') == [("HOER", "nl")]
    # trap: "con" is an English word in use
    assert not everything.scan('a movie poster titled "The Big Con"').findings


def test_rarer_word_of_the_prompt_language_is_not_another_language_list_word(everything):
    # trap: Italian "mongolo" (Mongolian, a rarer Italian word) is not the Spanish insult in an Italian scene
    assert not everything.scan("un cavaliere mongolo nella steppa, pittura a olio").findings
    # caught: the Spanish insult on a Spanish blackboard, and the Italian one written on an Italian sign
    assert _found(everything, 'una pizarra en clase con "mongolo" escrito') == [("mongolo", "es")]
    assert _found(everything, 'un cartello sul banco: "mongolo"') == [("mongolo", "it")]


# ---------------------------------------------------------------- chat spellings


def test_chat_spellings_per_language():
    assert chat_spelled("chingada", "es") == ["xingada"]  # Spanish x for ch
    assert chat_spelled("vergas", "es") == ["bergas"]  # Spanish b for v
    assert chat_spelled("cabron", "es") == ["kabron"]  # k for a hard c, as before
    assert chat_spelled("puta", "pt") == ["pvta"]  # Roman v for u, every language
    assert chat_spelled("verga", "pt") == []  # b for v is Spanish only
    assert chat_spelled("chinga tu madre", "es") == ["xinga tu madre"]  # phrases: no Roman v
    assert chat_spelled("cul", "fr") == []  # too short to respell


def test_chat_spellings_are_caught_unless_another_word(everything):
    assert _found(everything, 'una pintada en el muro: "xingada"') == [("xingada", "es")]
    assert _found(everything, 'una pintada en el muro: "bergas"') == [("bergas", "es")]
    assert _found(everything, 'a tote bag printed with "Hvrensohn"') == [("Hvrensohn", "de")]
    # traps: Spanish "chucha" and "chingar" respelled are Portuguese words (a name, "to swear")
    assert not everything.scan("um pôster da Xuxa num estúdio de televisão dos anos 80").findings
    assert not everything.scan('uma placa na escola: "proibido xingar"').findings


# ---------------------------------------------------------------- morphology


def test_dutch_plural_spelling():
    forms = dict(inflected("spleetoog", "nl"))
    assert forms["spleetogen"] is True  # a long vowel written double in a closed syllable, single in an open one
    assert ("klootzakken", True) in inflected("klootzak", "nl")  # a consonant after a short vowel doubles
    assert not any(form.startswith("kankerr") for form, _ in inflected("kanker", "nl"))  # no doubling after a schwa
    assert not any(form == "spleetogen" for form, _ in inflected("spleetoog", "de"))  # Dutch spelling only


def test_dutch_plural_is_caught(everything):
    assert _found(everything, 'een spandoek met "spleetogen eruit"') == [("spleetogen", "nl")]


def test_three_letter_words_take_a_plain_plural():
    assert inflected("con", "fr") == [("cons", True)]
    assert inflected("cul", "es") == [("culs", True)]
    assert inflected("con", "it") == []  # Italian plurals change the vowel
    assert inflected("pis", "fr") == []  # already ends in s


def test_hyphenated_place_names():
    assert hyphenated_name("Cons-sur-Loire", 0, 4)
    assert hyphenated_name("Bergen-op-Zoom", 10, 14)
    assert not hyphenated_name("fils-de-pute", 8, 12)  # not capitalized
    assert not hyphenated_name("CONS-SUR-LOIRE", 0, 4)  # all capitals: shouted text
    assert not hyphenated_name("Cons-Sur-Loire", 0, 4)  # the joining particle is lowercase in a name


def test_hyphenated_place_name_is_not_a_finding(everything):
    assert not everything.scan("une affiche pour la fête de Cons-sur-Loire").findings
    assert _found(everything, 'un tee-shirt avec "Bande de cons", photo produit') == [("cons", "fr")]


# ---------------------------------------------------------------- glued disease curses


def test_disease_heads_glue_to_common_words(everything):
    assert DISEASE_HEADS["nl"] >= {"kanker", "tering", "tyfus"}
    assert _found(everything, 'een sticker op een lantaarnpaal: "teringfiets"') == [("teringfiets", "nl")]
    assert _found(everything, 'een sticker op een lantaarnpaal: "zeikwijven"') == [("zeikwijven", "nl")]
    # traps: the disease's care and study, known to wordfreq or named by DISEASE_TAILS
    assert "risico" in DISEASE_TAILS
    assert not everything.scan('een krant met de kop "kabinet wil kankerrisico verlagen"').findings
    assert not everything.scan("een folder over kankeronderzoek en kankerpatiënten").findings
    assert not everything.scan('een sticker: "zeikweer"').findings  # a weak head, not a disease: a list word or tail only


# ---------------------------------------------------------------- reviewed additions with a scene sense


@pytest.mark.parametrize(
    "caught, word, language, trap",
    [
        ('una pizarra con "capullo" escrito con tiza', "capullo", "es", "un capullo de rosa en un jarrón"),
        ('uma camiseta escrita "retardado"', "retardado", "pt", "efeito retardado de um remédio, ilustração médica"),
        ('un cartello: "capo ritardato"', "ritardato", "it", "un treno ritardato alla stazione di Milano, fotografia"),
    ],
)
def test_reviewed_words_with_a_scene_sense(everything, caught, word, language, trap):
    assert (word, language) in _found(everything, caught)
    assert not everything.scan(trap).findings


@pytest.mark.parametrize(
    "prompt, word, language",
    [
        ('ein Schild an der Tür: "verpisst euch alle"', "verpisst", "de"),
        ('a bumper sticker that reads "fanculizzato"', "fanculizzato", "it"),
        ('a wall with "vai se fuder" sprayed on it', "se fuder", "pt"),
        ('um cartaz: "vai toma no ku"', "toma no ku", "pt"),
    ],
)
def test_reviewed_words_and_their_forms(everything, prompt, word, language):
    assert _found(everything, prompt) == [(word, language)]


# ---------------------------------------------------------------- shared variant places


def test_packs_share_where_the_variant_matchers_read(everything):
    from safetext.policy.normalize import normalize_chars, tokenize
    from safetext.policy.variants import VariantMatcher

    config = everything.config.normalization
    prompt = 'a wall with "Hu.ren.sohn", "put@", "p*ta" and "pu-tain" written on it, 35mm'
    norm = normalize_chars(prompt, config)
    tokens = tokenize(norm, config)
    packs = list(everything._packs.values())
    places = packs[0].variants.places(norm, tokens)
    assert places.chunks and places.masked and places.triples and places.pairs
    found = {}
    for pack in packs:
        shared = pack.variants.find(norm, tokens, [], places)
        assert shared == pack.variants.find(norm, tokens, [])  # the same hits as places found on its own
        found.update({hit.reading: pack.code for hit in shared})
    assert {"hurensohn", "puta", "putain"} <= set(found)
    # a matcher with other switches ignores places found under these and reads the prompt itself
    no_separators = config.model_copy(update={"separators": False})
    own = VariantMatcher(packs[0].lexicon, no_separators, fuzzy=False, compounds=False)
    assert [h.how for h in own.find(norm, tokens, [], places)] == [h.how for h in own.find(norm, tokens, [])]
    assert not any(hit.how == "split" for hit in own.find(norm, tokens, [], places))


def test_hyphen_glued_list_word_stands_when_the_whole_is_a_list_word(everything):
    # caught: "Arsch-loch" is the list word "Arschloch" written with a hyphen, not half of an ordinary word
    assert _found(everything, 'ein Schild: "Arsch-loch"') == [("Arsch", "de")]
    # trap: "con-fort" is half of the ordinary French word "confort"
    assert not everything.scan('un panneau: "con-fort"').findings


def test_capitalized_word_the_prompt_language_uses_as_much_as_english_is_its_name(everything):
    # traps: outside rendered text, the Dutch first name and the Bavarian mountain
    assert not everything.scan("een portret van Dick Advocaat aan de zijlijn").findings
    assert not everything.scan("ein Ausflug auf den Wank bei Garmisch, Postkarte").findings
    # caught: English swear words that the language only borrows ("Fuck" 4.3 in German, 5.4 in English)
    assert _found(everything, "ein Mann ruft Fuck in die Menge, Ölgemälde") == [("Fuck", "en")]
    # caught: the same name as text to render is still the English word
    assert _found(everything, 'een bord met de tekst "Dick"') == [("Dick", "en")]


@pytest.mark.parametrize(
    "prompt",
    [
        "A blue placard reading douche",
        'A shop sign reading "Hier kunt u pinnen" next to a bakery',
        "uma camiseta escrito porra, foto de produto",
        "een tekening van Nijntje door Dick Bruna, boekomslag",
        "!!! ???",
    ],
)
def test_language_votes_counted_once_agree_with_guess_language(everything, prompt):
    from safetext.policy.engine import _LanguageVotes
    from safetext.policy.languages import guess_language
    from safetext.policy.normalize import normalize_chars, tokenize
    from safetext.policy.backends import ScanDocument

    config = everything.config.normalization
    norm = normalize_chars(prompt, config)
    tokens = tokenize(norm, config)
    votes = _LanguageVotes(ScanDocument(prompt, norm, tokens, (), False), ALL, config)
    known = any(votes.known_by(i) for i in range(len(tokens)))
    assert votes.guess(range(len(tokens))) == (guess_language(tokens, ALL, config) if known else None)
    for cut in range(len(tokens)):  # every token left out, and the tokens up to it alone
        rest = tokens[:cut] + tokens[cut + 1 :]
        expected = guess_language(rest, ALL, config) if any(votes.known_by(i) for i in range(len(tokens)) if i != cut) else None
        assert votes.guess([cut], without=True) == expected
        head = list(range(cut + 1))
        expected = guess_language(tokens[: cut + 1], ALL, config) if any(votes.known_by(i) for i in head) else None
        assert votes.guess(head) == expected


def test_signs_stay_linear_in_a_long_prompt_of_many_findings(strict):
    import time

    unit = 'a sign reading "douche shit" and un panneau : "con" et '
    times = []
    for n in (2_500, 10_000):
        text = (unit * (n // len(unit) + 1))[:n]
        strict.scan(text)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            verdict = strict.scan(text)
            best = min(best, time.perf_counter() - started)
        times.append(best)
        assert len(verdict.findings) > n // 40  # every sign's words are findings
    assert times[1] <= 10.0 * times[0] + 0.03  # linear: 4x; one pass over the tokens per finding: 16x
