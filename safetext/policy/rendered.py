"""Find the text a prompt asks to be written into the image (the "rendered text").

``A protest sign that says "WORD"`` asks for WORD to be painted; ``a dog next to a sign`` does not
ask for any text. The policy can treat words outside rendered text differently (for example only
log them), so the verdict records which spans are rendered text.

Recognized forms (offsets always into the original prompt):

* quoted text: ``"..."``, ``“...”``, ``'...'``, ``«...»``, ``„...“``, ``「...」``;
* a trigger followed by the text: ``says``, ``saying``, ``reads``/``reading``/``that read``,
  ``spelling``/``spells``/``spelled out``, ``labeled``, ``titled``, ``captioned``,
  ``with the word(s)/text/phrase``, ``inscribed/engraved/stamped (with)``, ``called``;
* a colon after a text-bearing object: ``sign: WORD``, ``placard: WORD``, ``t-shirt: WORD``;
* the text before ``written/painted/printed ... on/in``: ``WORD written on a blue sign``;
* the first two in German, Spanish, French, Portuguese, Italian and Dutch (``mit der Aufschrift``,
  ``que dice``, ``qui dit``, ``com a frase``, ``con la scritta``, ``met de tekst``; ``Aufkleber auf
  einem Laptop: WORT``).

Unquoted text runs until sentence punctuation, a word that resumes the scene description
(``on``, ``in``, ``with``, ``written`` ...) or ``max_words`` words; an ALL-CAPS run is taken whole.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterable, Sequence

_QUOTED = re.compile(
    r'"([^"\n]{1,400})"'
    r"|“([^”\n]{1,400})”"
    r"|„([^“”\n]{1,400})[“”]"
    r"|«\s?([^»\n]{1,400}?)\s?»"
    r"|‘([^’\n]{1,400})’"
    r"|「([^」\n]{1,400})」"
    r"|(?<!\w)'([^'\n]{1,400}?)'(?!\w)"
)
_TEXT_BEARERS = (
    r"sign|signs|signboard|placard|banner|poster|billboard|board|chalkboard|blackboard|whiteboard|shirt|t-shirt|"
    r"tshirt|hoodie|sweater|jersey|cap|hat|mug|cup|card|note|label|sticker|flag|wall|graffiti|tattoo|cake|"
    r"book|cover|headline|newspaper|magazine|letter|letters|neon|plate|menu|door|logo|screen|page|paper|"
    r"caption|text|slogan|message|title|button|badge|bag|box|bottle|can|storefront|marquee|scoreboard"
)
_TRIGGER = re.compile(
    r"\b(?:says|saying|that\s+read|which\s+read|graffiti\s+tag|tagged\s+with|spelling(?:\s+out)?|spells(?:\s+out)?|spelled\s+out|spelt\s+out|"
    # "labeled diagram of ...": an adjective before the picture's kind, not text to write
    r"labell?ed(?!\s+(?:diagrams?|illustrations?|maps?|charts?|drawings?|sketch(?:es)?|plates?|figures?|"
    r"schematics?|cross-sections?|photos?|photographs?|images?|pictures?|models?|infographics?)\b)|titled|entitled|captioned|(?<!\ban\s)(?<!\ba\s)(?<!\bthe\s)(?:inscribed|engraved|stamped)(?:\s+with)?|printed\s+with|emblazoned\s+with|(?<!so-)(?<!so\s)called|"
    r"with\s+the\s+(?:words?|text|phrase|letters|caption|slogan|message|inscription|writing)|"
    r"(?:the\s+)?(?:words?|phrase|slogan|inscription)\s*:)"
    r"(?-i:\s+(?:the\s+)?(?:words?|text|phrase)\b)?\s*:?\s*",
    re.IGNORECASE,
)
# The same forms in the other languages of the shipped lists (de, es, fr, pt, it, nl): a trigger
# ("mit der Aufschrift", "que dice", "qui dit", "com a frase", "con la scritta", "met de tekst") and a
# colon closing a clause that names a text-bearing object ("Aufkleber auf einem Laptop: WORT",
# "tatouage sur l'avant-bras en lettres gothiques : MOT").
_TRIGGER_OTHER = re.compile(
    r"\b(?:mit\s+(?:der|dem|den)\s+(?:Aufschrift|Aufdruck|Text|Worten?|Schriftzug|Spruch)|auf\s+(?:dem|der)\s+steht|"
    r"que\s+(?:dice|pone|diz)|con\s+(?:la|el|las|los)\s+(?:frase|texto|palabras?|leyenda|scritta|parole?|testo)|"
    r"con\s+(?:il|lo)\s+(?:testo|motto)|che\s+dice|qui\s+dit|avec\s+(?:le|les|la|l')\s*(?:texte|mots?|inscription|phrase)|"
    r"o[uù]\s+est\s+[ée]crit|escrito|com\s+(?:a|o|as|os)\s+(?:frase|texto|palavras?|dizeres)|"
    r"met\s+(?:de|het)\s+(?:tekst|woorden?|opschrift|leus)|waarop\s+staat|die\s+zegt)\b\s*:?\s*",
    re.IGNORECASE,
)
#: Substrings one of which every match of :data:`_TRIGGER_OTHER` contains (lowercase).
_TRIGGER_OTHER_KEYS = (
    "mit d", "steht", "que ", "con ", "che dice", "qui dit", "avec ", "crit", "escrito", "com ", "met de", "met het", "waarop", "zegt",
)
#: Text-bearing objects in those languages, lowercase (a colon within a clause naming one starts rendered text).
_BEARERS_OTHER = frozenset(
    "schild aufschrift aufdruck aufkleber plakat banner transparent tasse torte graffiti tattoo leuchtreklame "
    "schrift frakturschrift cartel letrero pancarta pegatina camiseta taza pastel grafiti tatuaje letras bandera "
    "autocollant pancarte panneau affiche enseigne gâteau gateau tatouage lettres banderole placa cartaz adesivo "
    "caneca bolo pichação pichacao tatuagem faixa letreiro cartello insegna maglietta tazza torta graffito tatuaggio "
    "striscione caratteri scritta bord sticker spandoek mok taart tatoeage neonreclame letters t-shirt".split()
)
_CLAUSE_BREAK = re.compile(r"[.!?;:\n\"“”«»]")
_LETTER_RUN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def _colons_after_bearer(text: str) -> Iterable[int]:
    """Offsets just past each colon that closes a clause naming a text-bearing object of :data:`_BEARERS_OTHER`.

    Looks at most 60 characters back from the colon, and not past the clause's start.
    """
    at = text.find(":")
    while at >= 0:
        start = max(0, at - 60)
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(text, start, at)]
        clause = text[breaks[-1] if breaks else start : at].lower()
        if any(word in _BEARERS_OTHER for word in _LETTER_RUN.findall(clause)):
            yield at + 1
        at = text.find(":", at + 1)


_READS = re.compile(r"\b(?:reads|reading)\b\s*:?\s*", re.IGNORECASE)
_BEARER_BEFORE = re.compile(rf"\b(?:{_TEXT_BEARERS})\b(?:\W+\w+){{0,4}}\W*$", re.IGNORECASE)
_COLON = re.compile(rf"\b(?:{_TEXT_BEARERS})\s*:\s*", re.IGNORECASE)
# ``(?<!\s)``: a match starts only at the first character of a whitespace run. Without it every
# position inside a run of n blanks retried ``\s+`` to the run's end (n^2 steps: 14 s for 10,000
# spaces); with it each run is crossed once, and the matches are the same.
_WRITTEN = re.compile(
    r"(?<!\s)\s+(?:written|painted|printed|scrawled|carved|engraved|etched|sprayed|spray-painted|embroidered|"
    r"stitched|inscribed|displayed|spelled\s+out|spelt\s+out|in\s+big\s+letters|in\s+bold\s+letters)\b",
    re.IGNORECASE,
)
_DETERMINERS = frozenset("a an the his her their my our your its this that these those some".split())
_STOP_AFTER = frozenset(
    "on in at with and while written painted printed scrawled carved held holding next near under above below "
    "beside behind against over across into onto hanging standing sitting which where as during by from for "
    "under underneath inside outside along among around".split()
)
_STOP_BEFORE = frozenset(
    "with a an the and is are was were has have had of featuring showing shows show says reads saying reading "
    "word words text phrase letters that which who sign placard banner poster it them".split()
)
_WORD = re.compile(r"[^\s\"“”«»„'‘’]+")
_LOOK_BACK_CHARS = 160


def _is_caps(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop surrounding whitespace and trailing sentence punctuation (keep 'f.u.c.k' intact)."""
    while start < end and (text[start].isspace() or text[start] in ",;:"):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in ".,;:!?)"):
        end -= 1
    return start, end


def _forward(text: str, start: int, max_words: int) -> tuple[int, int] | None:
    """The unquoted text starting at ``start`` (after a trigger)."""
    if start >= len(text) or text[start] in "\"“„«‘'「":
        return None  # quoted: the quote pattern takes it
    words = []
    for match in _WORD.finditer(text, start):
        gap = text[words[-1][1] if words else start : match.start()]
        if words and ("\n" in gap or any(c in gap for c in "\"“”«»")):
            break
        words.append((match.start(), match.end()))
        raw = match.group()
        if raw[-1] in ".,;:!?" and (match.end() == len(text) or text[match.end()].isspace()):
            break
        if len(words) >= max_words:
            break
    if not words:
        return None
    caps = _is_caps(text[words[0][0] : words[0][1]])
    kept: list[tuple[int, int]] = []
    for index, (w_start, w_end) in enumerate(words):
        word = text[w_start:w_end]
        bare = word.strip(".,;:!?()").lower()
        if caps:
            if not _is_caps(word) and not bare.isdigit() and not (len(bare) <= 1 and bare.isalpha()):
                break
        elif index > 0 and bare in _STOP_AFTER:
            break
        kept.append((w_start, w_end))
        if word[-1] in ".,;:!?" and (w_end == len(text) or text[w_end].isspace()):
            break
    if not kept:
        return None
    span = _trim(text, kept[0][0], kept[-1][1])
    return span if span[0] < span[1] else None


def _backward(text: str, end: int, max_words: int) -> tuple[int, int] | None:
    """The unquoted text ending at ``end`` (before 'written on ...')."""
    window = max(0, end - _LOOK_BACK_CHARS)  # bounded: long prompts with many triggers stay linear
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, window, end)]
    if window and words:
        words = words[1:]  # the first word of the window may be cut
    kept: list[tuple[int, int]] = []
    for w_start, w_end in reversed(words):
        word = text[w_start:w_end]
        if word[-1] in ".,;:!?" and kept:
            break
        stop = not _is_caps(word) and word.strip(".,;:!?()").lower() in _STOP_BEFORE
        if stop or len(kept) >= max_words:
            break
        kept.append((w_start, w_end))
        if word[0] in "(":
            break
    if not kept:
        return None
    span = _trim(text, kept[-1][0], kept[0][1])
    return span if span[0] < span[1] else None


def find_rendered_spans(text: str, max_words: int = 8, other_languages: bool = False) -> tuple[tuple[int, int], ...]:
    """Character spans of the text that ``text`` asks to be written into the image.

    Args:
        text: the original prompt.
        max_words: longest unquoted span taken after (or before) a trigger.
        other_languages: also the triggers and text-bearing objects of German, Spanish, French,
            Portuguese, Italian and Dutch (for a policy with ``languages`` beyond English).

    Returns:
        Sorted, non-overlapping ``(start, end)`` spans into ``text``.

    Example:
        >>> text = 'A red sign that says "HELLO".'
        >>> [text[s:e] for s, e in find_rendered_spans(text)]
        ['HELLO']
    """
    spans: list[tuple[int, int]] = []
    for match in _QUOTED.finditer(text):
        group = next(i for i in range(1, 8) if match.group(i) is not None)
        span = _trim(text, match.start(group), match.end(group))
        if span[0] < span[1]:
            spans.append(span)
    patterns = [_TRIGGER, _COLON]
    if other_languages:
        lowered = text.lower()
        if any(key in lowered for key in _TRIGGER_OTHER_KEYS):  # the regex only where it can match: it is slow
            patterns.append(_TRIGGER_OTHER)
    for pattern in patterns:
        for match in pattern.finditer(text):
            span = _forward(text, match.end(), max_words)
            if span is not None:
                spans.append(span)
    for end in _colons_after_bearer(text) if other_languages else ():
        while end < len(text) and text[end].isspace():
            end += 1
        span = _forward(text, end, max_words)
        if span is not None:
            spans.append(span)
    for match in _READS.finditer(text):
        following = _WORD.match(text, match.end())
        after_det = following is not None and following.group().lower() in _DETERMINERS
        if after_det and not _BEARER_BEFORE.search(text, max(0, match.start() - _LOOK_BACK_CHARS), match.start()):
            continue  # "a girl reading a book": no text-bearing object before, no rendered text
        span = _forward(text, match.end(), max_words)
        if span is not None:
            spans.append(span)
    for match in _WRITTEN.finditer(text):
        span = _backward(text, match.start(), max_words)
        if span is not None:
            spans.append(span)
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    """True when ``[start, end)`` overlaps any of ``spans`` (sorted and non-overlapping, as returned
    by :func:`find_rendered_spans`).

    A binary search, so a prompt with thousands of findings and rendered spans stays linear overall.
    """
    index = bisect.bisect_right(spans, start, key=_span_end)  # first span that ends after ``start``
    return index < len(spans) and spans[index][0] < end


def _span_end(span: tuple[int, int]) -> int:
    return span[1]


class SpanSet:
    """Half-open spans with logarithmic overlap and containment queries.

    ``add`` keeps disjoint spans (the first finding taken wins); ``contains`` asks whether one span of
    a fixed collection (which may overlap) covers a span. Both replace linear scans that made a prompt
    with n findings cost n^2.

    Args:
        spans: initial spans; they may overlap (only :meth:`contains` is meaningful then).

    Example:
        >>> spans = SpanSet([(0, 10), (5, 20)])
        >>> spans.contains(6, 18), spans.contains(15, 25)
        (True, False)
    """

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self._spans = sorted(spans)
        self._reach: list[int] = []  # running maximum of the ends, for containment
        for _, end in self._spans:
            self._reach.append(max(end, self._reach[-1]) if self._reach else end)

    def __len__(self) -> int:
        return len(self._spans)

    def contains(self, start: int, end: int) -> bool:
        """True when one span ``(a, b)`` has ``a <= start`` and ``end <= b``."""
        index = bisect.bisect_right(self._spans, (start, float("inf")))
        return index > 0 and self._reach[index - 1] >= end

    def overlaps(self, start: int, end: int) -> bool:
        """True when ``[start, end)`` overlaps a span (the spans must be disjoint, as :meth:`add` keeps them)."""
        return overlaps(start, end, self._spans)

    def add(self, start: int, end: int) -> None:
        """Insert a span that overlaps none of the present ones."""
        index = bisect.bisect_left(self._spans, (start, end))
        self._spans.insert(index, (start, end))
        self._reach.insert(index, end)  # spans are disjoint here, so the running maximum is the end itself
