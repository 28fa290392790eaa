"""Real words, places and names stay clean; the reviewed vocabulary from registry lists is matched.

The place and name cases come from ``benchmarks/vocabulary_sweep.py`` (GeoNames cities, US census
names), each one a false positive of an earlier matcher, with the rule that now keeps it clean.
"""

from __future__ import annotations

import pytest

from safetext.policy import load_policy
from safetext.policy.vocabulary import is_name_shaped, name_shaped_at


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _sign(text: str) -> str:
    return f'a neon sign that says "{text}"'


@pytest.mark.parametrize(
    "word",
    ["assess", "class", "Scunthorpe", "cocktail", "therapist", "rapping", "honky-tonk", "tit for tat", "Cockburn", "Penistone"],
)
def test_classic_traps_stay_clean_as_text_to_write(default, word):
    assert default.scan(_sign(word)).findings == ()


@pytest.mark.parametrize(
    "place",
    [
        "Bitche",  # sounds like an entry: no sound-alike for words written like names
        "Brétigny-sur-Orge",  # "Orge" ~ "orgy"; the name shape holds across hyphens
        "Kuz’minki",  # "minki" ~ "minge"; a token after an apostrophe takes its word's shape
        "Zemen",
        "Wānkāner",  # the classifier does not guess on names either
        "Fakfak",
        "Bankass",  # compound with an entry that has a dictionary sense ("ass")
        "Castricum",
        "Shitterton",  # compound whose other piece is no common word
        "Slutsk",  # inside-word stems do not apply to names
        "Königslutter",
        "Losser",  # one doubled letter of a name is spelling, not stretching
        "Arsin",  # generated inflections ("arse" -> "arsin") never match names
    ],
)
def test_places_written_like_names_stay_clean(default, place):
    assert default.scan(_sign(place)).findings == (), place
    assert default.scan(f"a street in {place} at dusk").findings == (), place


@pytest.mark.parametrize("name", ["Bonner", "Titsworth", "Horney", "Seman", "Kiker"])
def test_surnames_stay_clean(default, name):
    assert default.scan(_sign(f"{name} & Sons Hardware")).findings == ()


@pytest.mark.parametrize(
    "text, base",
    [
        ("Fuuuck", "fuck"),  # stretched by more than one letter: still a stretch
        ("Shitgibbon", "shit"),  # entry without a dictionary sense + a common word
        ("Fuckmonday", "fuck"),
        ("fook", "fook"),  # lower case: sound-alikes and list entries as before
        ("Fook", "fook"),  # capitalized respellings are matched through the lists
        ("Kunt", "kunt"),
        ("Biatch", "biatch"),
        ("Asshat", "asshat"),
        ("twatting", "twatting"),  # inflection of an entry wordfreq rarely sees
    ],
)
def test_capitalized_and_glued_evasions_are_still_found(default, text, base):
    findings = default.scan(_sign(text)).findings
    assert [f.normalized for f in findings] == [base]


@pytest.mark.parametrize("word", ["shatters", "creepers", "creeped", "jerked", "bonner"])
def test_inflections_and_doubled_letters_of_real_words_stay_clean(default, word):
    assert default.scan(_sign(word)).findings == ()


@pytest.mark.parametrize(
    "word, category",
    [
        ("masterbate", "sexual"),
        ("cameltoe", "sexual"),
        ("pillowbiter", "slur"),
        ("junglebunny", "slur"),
        ("skumbag", "insult"),
        ("jackhole", "profanity"),
        ("asshats", "insult"),
        ("masterbating", "sexual"),  # listed form
        ("cameltoes", "sexual"),  # generated plural of a registry entry
    ],
)
def test_reviewed_registry_vocabulary_is_matched_with_its_category(default, word, category):
    findings = default.scan(_sign(word)).findings
    assert [f.category for f in findings] == [category]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Abala", True),
        ("Afuá", True),
        ("Łomża", True),
        ("Kuz’minki", True),
        ("Achkhoy-Martan", True),
        ("l'Atalaye", True),
        ("ShitShow", False),  # CamelCase is a glued phrase, not a name
        ("FUCK", False),
        ("fuck", False),
        ("Fuсk", False),  # Cyrillic "с"
        ("ꜰᴜᴄᴋ", False),  # small capitals
        ("Ｆｕｃｋ", False),  # fullwidth
        ("F4ck", False),
    ],
)
def test_name_shape(text, expected):
    assert is_name_shaped(text) is expected


def test_name_shape_reads_the_whole_word_around_a_token():
    text = 'a sign that says "Kuz’minki"'
    start = text.index("minki")
    assert name_shaped_at(text, start, start + len("minki"))
    assert not name_shaped_at("a sign: kuz’minki", 13, 18)


@pytest.mark.parametrize(
    "text, base, step",
    [
        ("Beotch", "bitch", "fuzzy"),  # the vowels of a common entry respelled, in a word wordfreq has not seen
        ("Faggit", "faggot", "fuzzy"),
        ("Puzzy", "pussy", "fuzzy"),  # "zz" sounds like "ss"
        ("Dikk", "dick", "fuzzy"),  # "kk" sounds like "ck"
        ("Twatz", "twatz", "exact"),  # a "z" plural wordfreq has not seen
        ("Cunty", "cunty", "exact"),  # an inflection of a common entry with no clean sense
        ("Shitter", "shitter", "exact"),
        ("Slutt", "slut", "normalized"),  # the last letter doubled
        ("Shitt", "shit", "normalized"),
    ],
)
def test_capitalized_respellings_of_common_entries_are_found(default, text, base, step):
    from safetext.telemetry import match_kind

    findings = default.scan(_sign(text)).findings
    assert [(f.normalized, match_kind(f)) for f in findings] == [(base, step)]
    assert default.scan(_sign(text.lower())).flagged  # as in lower case


@pytest.mark.parametrize(
    "place",
    [
        "Jucás",  # accents: a respelling is matched only in a plain ASCII word ("jucas" ~ "jackass")
        "Bannūr",
        "Saint-Josse-ten-Noode",  # hyphen-joined ("Noode" ~ "nude")
        "Nagua",  # the consonant letters differ ("nigga" has two g)
        "Shituo",  # the last letter differs ("shitty")
        "Kuntz",  # a "z" plural wordfreq knows as a name
        "Sloot",  # a word wordfreq knows (Zipf 2.1): Dutch for ditch, and a surname
    ],
)
def test_names_that_sound_like_entries_stay_clean(default, place):
    assert default.scan(_sign(place)).findings == (), place
    assert default.scan(f"a street in {place} at dusk").findings == (), place


@pytest.mark.parametrize(
    "word, category",
    [("tosspot", "insult"), ("slapper", "insult"), ("clunge", "sexual"), ("todger", "sexual"),
     ("shirtlifter", "slur"), ("bum bandit", "slur")],
)
def test_reviewed_additions_are_matched_with_their_category(default, word, category):
    assert [f.category for f in default.scan(_sign(word)).findings] == [category]


@pytest.mark.parametrize("prompt", ["a photo of a dirt bag in the back of a truck", 'a sign that says "Münster"'])
def test_neighbours_of_the_additions_stay_clean(default, prompt):
    assert default.scan(prompt).findings == ()


@pytest.mark.parametrize("text, base", [("Cuntface", "cunt"), ("Shitstain", "shit"), ("Fuckstick", "fuck"), ("Thundercunt", "cunt")])
def test_capitalized_compounds_wordfreq_knows_are_found_when_their_entry_has_no_clean_sense(default, text, base):
    # wordfreq has seen these insults (Zipf 1.0-1.5), which alone made them names before
    assert [(f.normalized, f.normalizations) for f in default.scan(_sign(text)).findings] == [(base, ("compound",))]
