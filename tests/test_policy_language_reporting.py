"""Languages in what safetext reports (logs, metrics, ``scan --explain``), the language tables, and
the word-splitting readings of the language packs."""

from __future__ import annotations

import contextlib
import io
import itertools

import pytest
from prometheus_client import CollectorRegistry

from safetext.policy import load_policy
from safetext.policy.languages import MIN_ZIPF_WORD, _fold, language_zipf
from safetext.telemetry import SafetextMetrics, request_event




GERMAN = 'Graffiti an einer Mauer: "Hu.ren.sohn" und ein Schild "shit"'


def test_findings_log_and_count_the_language_of_the_list_that_matched(everything):
    verdict = everything.scan(GERMAN)
    assert [(f.text, f.language) for f in verdict.findings] == [("Hu.ren.sohn", "de"), ("shit", "en")]
    event = request_event(verdict, seconds=0.01)
    assert [finding["language"] for finding in event["findings"]] == ["de", "en"]
    metrics = SafetextMetrics(CollectorRegistry())
    metrics.observe_request(verdict)
    get = metrics.registry.get_sample_value
    assert get("safetext_rule_hits_total", {"rule_id": "profanity", "backend": "wordlist", "match": "split", "language": "de"}) == 1.0
    assert get("safetext_rule_hits_total", {"rule_id": "profanity", "backend": "wordlist", "match": "exact", "language": "en"}) == 1.0
    # the language label is bounded: an unknown code counts as "other", never as a new series
    odd = verdict.findings[0].model_copy(update={"language": "klingon"})
    metrics.observe_request(verdict.model_copy(update={"findings": (odd,)}))
    assert get("safetext_rule_hits_total", {"rule_id": "profanity", "backend": "wordlist", "match": "split", "language": "other"}) == 1.0
    languages = {s.labels.get("language") for m in metrics.registry.collect() for s in m.samples} - {None}
    assert languages == {"de", "en", "other"}


def test_policy_debug_log_names_the_languages(everything, caplog):
    with caplog.at_level("DEBUG", logger="safetext.policy"):
        everything.scan(GERMAN)
    assert any("languages=de,en" in record.getMessage() for record in caplog.records)


def test_scan_explain_shows_the_prompt_language_and_the_packs_evidence():
    from safetext.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["scan", GERMAN, "--policy", "strict", "--explain"]) == 0
    text = out.getvalue()
    assert "language: de (guessed from the words" in text
    assert "wordlist[de]: [26:37] 'Hu.ren.sohn' -> 'hurensohn' ('hu' + 'ren' + 'sohn' = 'hurensohn')" in text
    assert "language=de" in text and "language=en" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["scan", "a sign that says shit", "--explain"]) == 0
    assert "language: " not in out.getvalue().split("verdict:")[0]  # English-only policy: no guess to show


def test_language_table_is_the_fold_of_every_frequent_word():
    import wordfreq

    config = load_policy("default").config.normalization
    table = language_zipf("de", config)
    buckets = wordfreq.get_frequency_list("de", wordlist="small")
    # every alphabetic word of Zipf >= MIN_ZIPF_WORD is in the table under its full-pipeline fold,
    # with the Zipf of its most frequent spelling; rarer words are not read
    frequent = [(w, 9.0 - i / 100) for i, bucket in enumerate(buckets[: int((9.0 - MIN_ZIPF_WORD) * 100) + 1]) for w in bucket]
    non_ascii = [(w, z) for w, z in frequent if w.isalpha() and not w.isascii()]
    assert len(non_ascii) > 5000
    for word, zipf in itertools.islice(non_ascii, 0, None, 41):
        folded = _fold(word, config)
        assert folded in table and table[folded] >= zipf - 1e-9, word
    assert table["scheisse"] == table["scheiße".replace("ß", "ss")] and table["strasse"] >= 4.0
    large = wordfreq.get_frequency_list("de")
    rare = [w for w in large[int((9.0 - MIN_ZIPF_WORD) * 100) + 50] if w.isascii() and w.isalpha()]
    # words below the threshold are not read (a few are there as the fold of a frequent accented word)
    assert len(rare) > 20 and sum(w in table for w in rare) < len(rare) / 10


@pytest.mark.parametrize(
    "prompt, found",
    [
        ('des supporters avec une banderole "pu-tain" au stade', "pu-tain"),
        ('Tattoo auf dem Unterarm in Frakturschrift: Hu.ren.sohn', "Hu.ren.sohn"),
        ('un cartel que dice "p.u.t.a"', "p.u.t.a"),
    ],
)
def test_language_packs_read_words_split_by_punctuation(everything, prompt, found):
    verdict = everything.scan(prompt)
    assert [f.text for f in verdict.findings] == [found]
    assert "separators" in verdict.findings[0].normalizations


def test_english_sound_alikes_do_not_judge_a_prompt_in_another_language(everything):
    # "Couillet" (a Belgian town) is one edit from an English sound-alike; in a French prompt it is clean
    assert not everything.scan('gâteau d\'anniversaire avec l\'inscription "Couillet" en sucre').flagged
    # ... while an English sound-alike in an English prompt is still one
    assert everything.scan("a sign that says kunt").flagged


def test_italian_chat_spelling_with_k(everything):
    for prompt, found in (('un cartello con la scritta "kazzo"', "kazzo"), ('un muro con la scritta "MINKIA"', "MINKIA")):
        assert [(f.text, f.language) for f in everything.scan(prompt).findings] == [(found, "it")], prompt
    # Italian words written with ch/k anyway stay clean
    assert not everything.scan('una foto di un kiwi, dei cachi e la chiesa di San Marco con la scritta "Chianti"').flagged


def test_spanish_and_portuguese_chat_spelling_with_k(everything):
    for prompt, found in (
        ('una camiseta que dice "kabrón"', "kabrón"),
        ('un letrero que dice "KULERO"', "KULERO"),
        ('aficionados con una bandera "k o ñ o"', "k o ñ o"),
    ):
        assert [f.text for f in everything.scan(prompt).findings] == [found], prompt
    # words that are written with k anyway stay clean, and no other language gets the rule
    assert not everything.scan("un koala y un kayak en el kiosco de Kuala Lumpur").flagged
    from safetext.policy.morphology import k_spelled

    assert k_spelled("cabron", "es") == ["kabron"] and k_spelled("ficken", "de") == []
    assert k_spelled("cazzo", "it") == ["kazzo"] and k_spelled("minchia", "it") == ["minkia"]
    assert k_spelled("maricon", "es") == ["marikon"]  # applied to the folded word: "maricón" -> "marikon"
