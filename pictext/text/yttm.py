"""YouTokenToMe's BPE (github.com/VKCOM/YouTokenToMe), read from its `bpe.model` as data: ruDALL-E's and ruCLIP's
tokenizer, without youtokentome at run time.

youtokentome is a C++ extension published only as a 2020 source package (its build needs Cython < 3), so
pictext encodes by its rules here, in Python. A model file is text: a line "n_chars n_rules", n_chars lines
"codepoint id", n_rules lines "x y z" (merge tokens x and y into z; earlier rules first), and a last line
with the unk, pad, bos and eos ids. Encoding, as youtokentome's `BaseEncoder::encode_sentence`:

- trailing whitespace is dropped and the text split into words at whitespace (ASCII whitespace and U+2581);
- each word becomes the word-start symbol U+2581 followed by its characters; a run of characters outside
  the model's alphabet becomes one unknown token (the unk id);
- merges are applied lowest rule first, leftmost first among equals, until no adjacent pair has a rule.

`tests/test_rudalle.py` checks the ids against youtokentome's on 1,200 Russian and English lines.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pictext.text.base import pack

SPACE = "\u2581"  # youtokentome's word-start symbol
_SPLIT = re.compile("[\t\n\v\f\r \u2581]+")  # C's isspace below 256, and U+2581
MAX_MODEL_BYTES = 64 << 20  # ruDALL-E's bpe.model is about 0.2 MB
MAX_ENTRIES = 1 << 20
WORD_CACHE = 100_000  # words whose ids are kept


class YTTMTokenizer:
    """youtokentome's BPE with the layout ruDALL-E and ruCLIP give it: lower case, BOS, tokens, EOS, pads (id 0)
    to `context_length`. `encode` gives youtokentome's ids for a text (no BOS or EOS)."""

    kind = "yttm-bpe"

    def __init__(self, definition: str, context_length: int = 128, lower: bool = True) -> None:
        """`definition`: the text of a youtokentome `bpe.model`; ValueError names the line that is wrong."""
        chars, rules, special = _parse(definition)
        self.definition, self.context_length, self.lower = definition, context_length, lower
        self.unk_token_id, self.pad_token_id, self.sot_token_id, self.eot_token_id = special
        self.char_to_id = chars
        self.rule_of_pair = {(x, y): (rank, z) for rank, (x, y, z) in enumerate(rules)}
        self.vocab_size = len(chars) + len(rules) + sum(i != -1 for i in special)
        if SPACE not in chars:
            raise ValueError("the model has no word-start symbol U+2581: not a youtokentome BPE")
        self._pieces = {i: c for c, i in chars.items()}  # id -> its characters
        for x, y, z in rules:
            self._pieces[z] = self._pieces[x] + self._pieces[y]
        self._words: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike, context_length: int = 128, lower: bool = True) -> YTTMTokenizer:
        path = Path(path)
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ValueError(f"{path} is {size:,} bytes; a youtokentome model is at most {MAX_MODEL_BYTES:,}")
        try:
            return cls(path.read_text(encoding="ascii"), context_length, lower)
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not a youtokentome model: it is not ASCII text of numbers") from e
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def encode(self, text: str) -> list[int]:
        if self.lower:
            text = text.lower()
        ids: list[int] = []
        for word in _words(text):
            cached = self._words.get(word)
            if cached is None:
                cached = self._encode_word(word)
                if len(self._words) < WORD_CACHE:
                    self._words[word] = cached
            ids.extend(cached)
        return ids

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """One word's ids: its symbols merged as youtokentome merges them (a heap of (rule, position) events)."""
        tokens, unknown = [self.char_to_id[SPACE]], -1
        for ch in word:
            i = self.char_to_id.get(ch)
            if i is not None:
                tokens.append(i)
            elif tokens[-1] != unknown:  # a run of unknown characters is one token
                unknown = -len(tokens) - 1  # an id no rule names, distinct per run
                tokens.append(unknown)
        n = len(tokens)
        prev, nxt = list(range(-1, n - 1)), [*range(1, n), -1]
        heap = [(self.rule_of_pair[p][0], i) for i, p in enumerate(zip(tokens, tokens[1:])) if p in self.rule_of_pair]
        heapq.heapify(heap)
        while heap:
            rank, p1 = heapq.heappop(heap)
            p2 = nxt[p1]
            if p2 == -1 or self.rule_of_pair.get((tokens[p1], tokens[p2]), (None,))[0] != rank:
                continue  # the pair this event was for has changed since
            tokens[p1], tokens[p2] = self.rule_of_pair[tokens[p1], tokens[p2]][1], None  # type: ignore[call-overload]
            p0, p3 = prev[p1], nxt[p2]
            nxt[p1] = p3
            if p3 != -1:
                prev[p3] = p1
                self._push(heap, tokens, p1, p3)
            if p0 != -1:
                self._push(heap, tokens, p0, p1)
        return tuple(self.unk_token_id if t < 0 else t for t in tokens if t is not None)

    def _push(self, heap: list, tokens: list, left: int, right: int) -> None:
        rule = self.rule_of_pair.get((tokens[left], tokens[right]))
        if rule is not None:
            heapq.heappush(heap, (rule[0], left))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens left out (as ruDALL-E's `decode_text`)."""
        special = {self.unk_token_id, self.pad_token_id, self.sot_token_id, self.eot_token_id}
        text = "".join(self._pieces.get(int(i), "") for i in ids if int(i) not in special)
        return text.replace(SPACE, " ").removeprefix(" ")

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.Tensor:
        return pack(self, texts, context_length, truncate)

    def to_metadata(self) -> dict[str, Any]:
        return {"kind": self.kind, "context_length": self.context_length, "definition": self.definition,
                "lower": self.lower}  # fmt: skip


def _words(text: str) -> list[str]:
    """Words split at youtokentome's whitespace (not Python's: U+00A0 and U+0085 belong to words there)."""
    return [word for word in _SPLIT.split(text) if word]


def _parse(definition: str) -> tuple[dict[str, int], list[tuple[int, int, int]], tuple[int, int, int, int]]:
    """(character -> id, merge rules (x, y, z), (unk, pad, bos, eos)) of a model file's text, every number checked."""
    lines = definition.split("\n")

    def numbers(index: int, count: int) -> list[int]:
        if index >= len(lines):
            raise ValueError(f"the model ends at line {len(lines)}; line {index + 1} is missing")
        parts = lines[index].split()
        if len(parts) != count or not all(p.lstrip("-").isdigit() and len(p) < 12 for p in parts):
            raise ValueError(f"line {index + 1} must be {count} integers, got {lines[index][:60]!r}")
        return [int(p) for p in parts]

    n_chars, n_rules = numbers(0, 2)
    if not (0 < n_chars <= MAX_ENTRIES and 0 <= n_rules <= MAX_ENTRIES):
        raise ValueError(f"line 1: {n_chars} characters and {n_rules} rules are out of bounds")
    chars, ids = {}, set()
    for k in range(1, n_chars + 1):
        codepoint, i = numbers(k, 2)
        if not (0 <= codepoint <= 0x10FFFF and 0 <= i < MAX_ENTRIES) or i in ids:
            raise ValueError(f"line {k + 1}: character {codepoint} with id {i} is out of range or repeats an id")
        chars[chr(codepoint)] = i
        ids.add(i)
    rules = []
    for k in range(n_chars + 1, n_chars + n_rules + 1):
        x, y, z = numbers(k, 3)
        if x not in ids or y not in ids or z in ids or not 0 <= z < MAX_ENTRIES:
            raise ValueError(f"line {k + 1}: rule {x} + {y} -> {z} merges an unknown id or makes a known one")
        rules.append((x, y, z))
        ids.add(z)
    special = numbers(n_chars + n_rules + 1, 4)
    used = [i for i in special if i != -1]
    if any(i in ids or i < -1 for i in special) or len(set(used)) != len(used):
        raise ValueError(
            f"line {n_chars + n_rules + 2}: special ids {special} collide with the vocabulary or each other"
        )
    return chars, rules, tuple(special)  # type: ignore[return-value]


__all__ = ["YTTMTokenizer"]
