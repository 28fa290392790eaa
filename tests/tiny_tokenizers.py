"""Small CLIP and T5 tokenizers built in memory, for the tiny test pipelines.

Both encode arbitrary ASCII text (different prompts give different ids) with vocabularies of a few
hundred tokens, and both need no files and no network.

Example:
    >>> from tests.tiny_tokenizers import build_clip_tokenizer, build_t5_tokenizer
    >>> build_clip_tokenizer().tokenize("a sign that says")
    ['a</w>', 'sign</w>', 'that</w>', 'says</w>']
    >>> build_t5_tokenizer().tokenize("a sign")
    ['▁a', '▁sign']
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer, T5Tokenizer

# Words that get a single token in both tokenizers, so prompts built from them stay short; any other
# ASCII text still encodes (byte-level BPE for CLIP, one piece per character for T5).
COMMON_WORDS = (
    "a an the of on in with and that says sign photo picture painting text word written hello world "
    "cat dog man woman street wall shop poster banner letters red blue green white black"
).split()

CLIP_MAX_LENGTH = 77


def build_clip_tokenizer(model_max_length: int = CLIP_MAX_LENGTH) -> CLIPTokenizer:
    """Build a byte-level BPE CLIP tokenizer in memory.

    Merges are learned from :data:`COMMON_WORDS` (each becomes one token); the vocabulary also holds all
    256 byte symbols with and without the ``</w>`` end-of-word suffix, so any text encodes without
    unknown tokens. About 620 tokens in all.

    Args:
        model_max_length (`int`): Padding/truncation length the pipelines read from the tokenizer.

    Returns:
        `CLIPTokenizer`: ``<|startoftext|>`` and ``<|endoftext|>`` (also the pad token) are the last two ids.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=10_000,
        min_frequency=1,
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator([" ".join(COMMON_WORDS)], trainer=trainer)
    learned = json.loads(bpe.to_str())["model"]
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    known = set(tokens)
    tokens += [token for token in learned["vocab"] if token not in known]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = [tuple(merge) for merge in learned["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """Build a Unigram T5 tokenizer in memory.

    Pieces are every printable ASCII character (with and without the ``▁`` word-start marker) plus one
    piece per word of :data:`COMMON_WORDS`; non-ASCII characters map to ``<unk>``.

    Args:
        model_max_length (`int`): Default truncation length (the pipelines pass their own).

    Returns:
        `T5Tokenizer`: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no sentinel tokens.
    """
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    for code in range(33, 127):
        pieces += [(chr(code), -5.0), ("▁" + chr(code), -5.5)]
    pieces += [("▁" + word, -2.0) for word in COMMON_WORDS if len(word) > 1]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)
