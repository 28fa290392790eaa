"""Prompt pairs for a localization sweep: the same sentence asking for two different words.

The paper localizes with ``A sign that says "<A>".`` -> ``A sign that says "<B>".``: everything but
the written word is equal, so whatever moves from B's image into A's when one layer's text K/V are
swapped is the text. :func:`prompt_pairs` builds such pairs from a word list and a template;
:func:`glyph_prompt_pairs` builds them in the glyph model's own prompt language and vocabulary.

    >>> pairs = prompt_pairs(2, words=["cat", "dog", "sun"], seed=0)
    >>> pairs[0].source_prompt.startswith('A sign that says "')
    True

Pairs are deterministic in ``seed``: pair ``i`` draws two distinct words from a ``random.Random(seed)``
stream and uses noise seed ``seed + i``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from safetext.localize.records import LocalizationError, PromptPair

#: The paper's SimpleBench template.
SIGN_TEMPLATE = 'A sign that says "{word}".'

#: Word splits of the glyph vocabulary (:func:`safetext.models.glyph.data.load_vocabulary`).
GLYPH_SPLITS: tuple[str, ...] = ("common", "heldout", "replacements", "train")


def _check_count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise LocalizationError(f"the number of prompt pairs must be a positive int, got {count!r}")
    return count


def _word_pool(words: Iterable[str], exclude: Iterable[str]) -> list[str]:
    excluded = {word.lower() for word in exclude}
    pool = sorted({word for word in words if word and word.lower() not in excluded})
    if len(pool) < 2:
        raise LocalizationError(
            f"prompt pairs need at least 2 distinct words, got {len(pool)} after exclusions; pass a longer word list"
        )
    return pool


def _pop_same_length(order: list[str]) -> tuple[str, str] | None:
    """Pop the last word of ``order`` and the nearest-to-the-end word of the same length (None: no such pair)."""
    while order:
        first = order[-1]
        for j in range(len(order) - 2, -1, -1):
            if len(order[j]) == len(first):
                second = order.pop(j)
                order.pop()
                return first, second
        order.pop()  # no partner left for this word in this pass
    return None


def _draw(pool: Sequence[str], count: int, seed: int, same_length: bool = False) -> list[tuple[str, str]]:
    """``count`` ordered pairs of distinct words; without repeating a word while the pool lasts.

    With ``same_length`` both words of a pair have the same number of letters (as safetext's replacement
    words have: the policy picks a replacement of the flagged word's length).
    """
    rng = random.Random(seed)
    drawn: list[tuple[str, str]] = []
    order: list[str] = []
    for _ in range(count):
        if same_length:
            pair = _pop_same_length(order)
            if pair is None:
                order = list(pool)
                rng.shuffle(order)
                pair = _pop_same_length(order)
                if pair is None:
                    raise LocalizationError("same_length pairs need two words of the same length in the word pool")
            drawn.append(pair)
            continue
        if len(order) < 2:
            order = list(pool)
            rng.shuffle(order)
        first, second = order.pop(), order.pop()
        drawn.append((first, second))
    return drawn


def prompt_pairs(
    count: int,
    *,
    words: Iterable[str] | None = None,
    template: str = SIGN_TEMPLATE,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> list[PromptPair]:
    """Source/target pairs from a word list and a one-word template.

    Args:
        count: number of pairs.
        words: the words to write (default: the glyph vocabulary's common words, a general English list).
        template: a prompt with a ``{word}`` placeholder.
        seed: seed of the word draw; pair ``i`` uses noise seed ``seed + i``.
        exclude: words never to use (e.g. those of another set of pairs, to keep an evaluation held out).

    Returns:
        ``count`` :class:`PromptPair` objects with two different words each.

    Raises:
        LocalizationError: ``count`` < 1, a template without ``{word}``, or fewer than two usable words.
    """
    _check_count(count)
    if "{word}" not in template:
        raise LocalizationError(f"template {template!r} must contain the placeholder {{word}}")
    if words is None:
        from safetext.models.glyph.data import load_vocabulary

        words = load_vocabulary()["common"]
    pool = _word_pool(words, exclude)
    return [
        PromptPair(template.format(word=a), template.format(word=b), a, b, seed + index)
        for index, (a, b) in enumerate(_draw(pool, count, seed))
    ]


def glyph_prompt_pairs(
    count: int,
    *,
    split: str = "common",
    template: int = 0,
    seed: int = 0,
    exclude: Iterable[str] = (),
    same_length: bool = False,
) -> list[PromptPair]:
    """Pairs in the glyph model's prompt language: same sign colour and template, two different words.

    Args:
        count: number of pairs.
        split: which glyph vocabulary words to use: ``common`` (trained), ``heldout`` (never trained),
            ``replacements`` or ``train``.
        template: index into :data:`safetext.models.glyph.data.TEMPLATES`
            (0: ``A {color} sign that says "{word}".``).
        seed: seed of the word draw; pair ``i`` uses noise seed ``seed + i`` and colour ``i mod 8``.
        exclude: words never to use.
        same_length: pair only words of the same length (what safetext's neutralization does: the
            replacement has the flagged word's length, so the layout of the sign need not change).

    Raises:
        LocalizationError: unknown split or template, or ``count`` < 1.
    """
    from safetext.models.glyph.data import COLORS, TEMPLATES, load_vocabulary, make_prompt

    _check_count(count)
    if split not in GLYPH_SPLITS:
        raise LocalizationError(f"unknown glyph word split {split!r}; choose one of {', '.join(GLYPH_SPLITS)}")
    if not 0 <= template < len(TEMPLATES):
        raise LocalizationError(f"glyph template must be an index in 0..{len(TEMPLATES) - 1}, got {template!r}")
    pool = _word_pool(load_vocabulary()[split], exclude)
    pairs = []
    for index, (a, b) in enumerate(_draw(pool, count, seed, same_length)):
        color = COLORS[index % len(COLORS)]
        pairs.append(PromptPair(make_prompt(a, color, template), make_prompt(b, color, template), a, b, seed + index))
    return pairs


def is_glyph_pipeline(pipe: object) -> bool:
    """True for safetext's embedded glyph pipeline (its prompts and vocabulary apply)."""
    return type(pipe).__name__ == "GlyphPipeline"


def default_prompt_pairs(pipe: object, count: int, *, seed: int = 0, exclude: Iterable[str] = ()) -> list[PromptPair]:
    """The pairs :func:`~safetext.localize.localize_layers` uses when none are given.

    Glyph pipelines get :func:`glyph_prompt_pairs` (common words); any other pipeline gets the paper's
    ``A sign that says "<word>".`` pairs over the same common English words.
    """
    if is_glyph_pipeline(pipe):
        return glyph_prompt_pairs(count, seed=seed, exclude=exclude)
    return prompt_pairs(count, seed=seed, exclude=exclude)


def pair_words(pairs: Iterable[PromptPair]) -> set[str]:
    """Every source and target text of ``pairs`` (to exclude them from an evaluation set)."""
    return {text for pair in pairs for text in (pair.source_text, pair.target_text)}
