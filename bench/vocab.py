"""Word vocabulary with byte fallback, for the bench's sub-word language models.

Real language models tokenize with a vocabulary learned on their pre-training text
(BPE, unigram), thousands of tokens wide. When such a model is fine-tuned on other
text, the embedding rows of tokens that the new text never uses get no gradient: a
fresh AdamW keeps their moments at exactly zero and only weight decay moves them. A
byte-level model (every byte appears in any text) has no such rows, so the bench
trains both kinds.

This is the simplest tokenizer with that property: ids 0-255 are the bytes, ids
256 and up are the most frequent multi-byte words (identifiers, numbers, runs of
spaces) of the pre-training text; any other word is spelled in bytes.
"""
from __future__ import annotations

import re
from array import array
from collections import Counter

import numpy as np

WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|[0-9]+| +|\n+|.", re.S)


def build_vocab(text: bytes, size: int) -> list[bytes]:
    """The ``size - 256`` most frequent multi-byte words of ``text`` (ties by bytes)."""
    counts = Counter(w for w in WORD.findall(text) if len(w) > 1)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:max(0, size - 256)]]


def encode(text: bytes, words: list[bytes]) -> np.ndarray:
    """Token ids (int64) of ``text``: a vocabulary word's id, else its bytes."""
    ids = {w: 256 + i for i, w in enumerate(words)}
    out = array("q")
    for w in WORD.findall(text):
        i = ids.get(w)
        if i is None:
            out.extend(w)
        else:
            out.append(i)
    return np.frombuffer(out, dtype=np.int64)


def decode(tokens, words: list[bytes]) -> bytes:
    """Bytes of token ids (the inverse of :func:`encode`)."""
    return b"".join(bytes([t]) if t < 256 else words[t - 256] for t in map(int, tokens))
