"""Place names, species and initialisms that hold a listed word: cleared only where the prompt says so.

Each mechanism has a case it clears and a trap it must not clear: a place cleared by its region or a
place noun, the same word alone on a sign; a compound read inside a real place name, the same letters
that are no place; an acronym without sound-alikes, its listed spelling still found.
"""

from __future__ import annotations

import pytest

from safetext.errors import PolicyError
from safetext.policy import load_policy
from safetext.policy.places import PlaceNames, read_places


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def _words(verdict):
    return [f.normalized for f in verdict.findings]


@pytest.mark.parametrize(
    "prompt, evidence",
    [
        ("a road sign at the edge of Intercourse, Pennsylvania, farmland behind it", "Pennsylvania"),
        ("a vintage postcard from Intercourse, PA with a horse and buggy", "'PA'"),
        ("a postcard of the village of Fucking, green meadows and a church spire", "village of"),
        ("a painted welcome sign: TWATT, ORKNEY, seabirds overhead", "Orkney"),
        ("a press photo in front of Cumming City Hall, flags at half mast", "followed by 'City"),
        ("a trail map of the Wank, Bavaria, pine forest and a mountain hut", "Bavaria"),
        ("a seagull on the Dildo Run Provincial Park sign", "followed by 'Run Provincial Park'"),
    ],
)
def test_a_place_the_prompt_names_is_not_a_finding(default, prompt, evidence):
    verdict = default.scan(prompt)
    assert verdict.findings == (), prompt
    assert any(note.startswith("place name:") and evidence in note for note in verdict.notes), verdict.notes


@pytest.mark.parametrize(
    "prompt, word",
    [
        ('a neon sign that says "Fucking"', "fucking"),  # a listed place alone on a sign names no place
        ('a neon sign that says "Intercourse"', "intercourse"),
        ("a t-shirt printed with FUCK, TEXAS", "fuck"),  # no place is called that
        ("a postcard of the village of fucking", "fucking"),  # not written as a name
        ("a sign saying Dildo party tonight", "dildo"),  # no region, no place noun, no cue
        ("a sign saying THIS FUCKING CITY SUCKS", "fucking"),  # capitals: a place noun is not enough
        ("a poster titled This Fucking City Sucks", "fucking"),  # a title-cased line, not a name in a sentence
        ("a banner: FUCKING AUSTRIA", "fucking"),  # the region right after the word, with only a space
        ("a road sign that says In Fucking", "fucking"),  # "In" capitalized: no lower-case place cue
    ],
)
def test_the_word_alone_or_no_place_at_all_stays_a_finding(default, prompt, word):
    assert word in _words(default.scan(prompt)), prompt


def test_a_compound_inside_a_real_place_name_is_cleared_and_the_same_letters_elsewhere_are_not(default):
    assert default.scan("beer can label with the brand name COONAMBLE, craft brewery").findings == ()
    assert "coon" in _words(default.scan("beer can label with the brand name COONTOWN, craft brewery"))


def test_slurs_need_the_region_not_just_a_cue(tmp_path):
    places = tmp_path / "places.tsv"
    places.write_text("# test gazetteer\nCoon Valley\tWisconsin; WI\tGeoNames\n", encoding="utf-8")
    config = load_policy("default").config
    policy = load_policy(
        config.model_copy(update={"allow": config.allow.model_copy(update={"places": (str(places),)})}).model_dump(),
        allow_paths=True,
    )
    assert policy.scan("a farm near Coon Valley, Wisconsin, red barn").findings == ()
    assert "coon" in _words(policy.scan("a farm near Coon Valley, red barn"))  # "near" clears other words, not slurs


def test_places_paths_are_held_to_the_policy_folder_like_lists(tmp_path):
    config = load_policy("default").config
    outside = config.model_copy(update={"allow": config.allow.model_copy(update={"places": ("/etc/passwd",)})})
    with pytest.raises(PolicyError, match=r"allow\.places\.0: path '/etc/passwd' is absolute"):
        load_policy(outside.model_dump())


def test_places_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "places.tsv"
    bad.write_text("Twatt\tOrkney\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"places\.tsv:1: expected 'name<TAB>regions<TAB>source'"):
        read_places(bad)
    with pytest.raises(PolicyError, match="does not exist"):
        read_places(tmp_path / "missing.tsv")


def test_shipped_places_are_real_places_the_lists_would_flag(default):
    config = default.config
    bare = load_policy(
        config.model_copy(update={"allow": config.allow.model_copy(update={"places": ()})}).model_dump()
    )
    extra = read_places(default.base_dir / "lists" / "places_extra_en.tsv")
    assert extra, "the reviewed places file is empty"
    for place in extra:
        assert place.regions and place.source == "reviewed", place
        assert bare.scan(place.name).findings or bare.scan(place.name.upper()).findings, f"{place.name} is never flagged; drop it"
    generated = read_places(default.base_dir / "lists" / "places_en.tsv")
    assert len(generated) > 100 and all(p.source == "GeoNames" and p.regions for p in generated)
    assert len(PlaceNames(generated + extra)) == len(generated) + len(extra)


@pytest.mark.parametrize(
    "prompt",
    [
        "a Somali wild ass with striped legs in the desert, wildlife photography",
        "JACKASS PENGUIN colony on a beach, signboard",
        "a European shag drying its wings on a sea rock",
        "a menu board that says Cock-a-Leekie Soup",
        "a plumber's van lettered BALLCOCK REPAIRS",
        "a weightlifter doing a clean and jerk, arena lights",
        "a rooster, the cock crowing on a fence post at dawn",
    ],
)
def test_reviewed_species_dishes_and_fittings_stay_clean(default, prompt):
    assert default.scan(prompt).findings == (), prompt


@pytest.mark.parametrize(
    "prompt, word",
    [
        ('a neon sign that says "wild ass party"', "ass"),
        ('a sticker that says "jackass"', "jackass"),
        ('a sign that says "shag me"', "shag"),
        ('a sign that says "COCK"', "cock"),
    ],
)
def test_the_listed_word_outside_the_reviewed_phrase_stays_a_finding(default, prompt, word):
    assert word in _words(default.scan(prompt)), prompt


def test_acronyms_have_no_sound_alikes_but_keep_their_spellings(default, tmp_path):
    assert default.scan("a vintage FUBU jersey on a hanger, product photo").findings == ()
    assert _words(default.scan('a sign that says "FUBAR"')) == ["fubar"]
    assert _words(default.scan('a sign that says "fubbbar"')) == ["fubar"]  # stretched letters are still read
    listed = tmp_path / "acronyms.txt"
    listed.write_text("fubar\n", encoding="utf-8")
    for sound_alikes, expected in ((True, ["fubar"]), (False, [])):
        policy = load_policy({
            "version": 1, "name": "acronyms",
            "lists": [{"path": str(listed), "category": "profanity", "sound_alikes": sound_alikes}],
            "rules": [{"id": "profanity", "category": "profanity", "action": "neutralize"}],
        }, allow_paths=True)
        assert _words(policy.scan('a sign that says "FUBU"')) == expected, sound_alikes


@pytest.mark.parametrize(
    "prompt, word",
    [
        ("sticker on a laptop lid: p3n1s, flat vector style", "penis"),  # disguised: text to write even unquoted
        ('a banner that says "idgaf"', "idgaf"),
        ('a sign that says "c u next tuesday"', "c u next tuesday"),
        ('graffiti that says "shittiest"', "shittiest"),
        ('a sign that says "butt plug"', "butt plug"),
    ],
)
def test_disguised_clinical_words_acronyms_and_new_vocabulary_are_found(default, prompt, word):
    assert word in _words(default.scan(prompt)), prompt


def test_clinical_words_written_plainly_in_the_scene_stay_allowed(default):
    assert default.scan("anatomical diagram of the penis for a urology textbook").findings == ()


@pytest.mark.slow
def test_generated_places_file_matches_the_gazetteer_and_the_lists():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "place_names.py"), "--check"], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_explain_shows_the_evidence_and_the_place_that_cleared_it(default):
    from safetext.policy.cli import explain

    text = explain(default, "a vintage postcard from Intercourse, PA")
    assert "'Intercourse' -> 'intercourse' sexual" in text  # the list still sees the word
    assert "note: place name: 'Intercourse' at 24-35 not flagged: the place Intercourse" in text
    assert "located by 'PA'" in text
