"""Text to token ids, the way CLIP models expect them: SOT, BPE tokens, EOT, zero padding.

`ClipBPETokenizer` reproduces OpenAI's byte-level BPE (github.com/openai/CLIP,
simple_tokenizer.py) id for id. It is written here rather than taken from
open_clip because importing open_clip pulls in torchvision and timm; we only
need its vocabulary file, which we find on disk and never ship or download.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ftfy
import regex
import torch

from pictext.errors import PictextError
from pictext.text.base import TextTooLongError, Tokenizer, pack
from pictext.text.yttm import YTTMTokenizer

CLIP_VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<start_of_text>", "<end_of_text>"
HF_SOT, HF_EOT = "<|startoftext|>", "<|endoftext|>"  # the same two tokens, as Hugging Face's CLIPTokenizer names them


def _token_name(entry: object, default: str) -> str:
    """A special token's name from special_tokens_map.json: a string, or a map holding it under "content"."""
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else default


class VocabularyNotFoundError(PictextError, FileNotFoundError):
    pass


@functools.lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable unicode map, so BPE never sees whitespace or control bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def _clean(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def _clean_trained(text: str) -> str:
    """CLIP's cleaning, and ё as е, as most Russian text is typed: for BPEs trained here (OpenAI's keeps ё)."""
    return _clean(text).replace("ё", "е")


class ClipBPETokenizer:
    """OpenAI CLIP's tokenizer: ftfy + HTML unescape, lower case, byte-level BPE with 49,152 merges."""

    kind = "clip-bpe"

    def __init__(self, vocab_path: str | os.PathLike | None = None, context_length: int = 77) -> None:
        self.vocab_path = find_clip_vocab(vocab_path)
        lines = gzip.open(self.vocab_path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        byte_chars = list(_bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [SOT, EOT]
        self._setup({token: i for i, token in enumerate(vocab)}, merges, (SOT, EOT), context_length)

    @classmethod
    def from_hf_folder(cls, folder: str | os.PathLike, context_length: int = 77) -> ClipBPETokenizer:
        """The tokenizer a Hugging Face `CLIPTokenizer` folder holds: vocab.json and merges.txt (the slow
        tokenizer's files), or tokenizer.json (all that transformers 5 writes); the names of its start and end
        tokens from special_tokens_map.json or tokenizer_config.json. The same ids as that tokenizer, zero padding."""
        folder = Path(folder)

        def read(name: str) -> dict:
            file = folder / name
            if not file.is_file():
                return {}
            value = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(value, dict):
                raise ValueError(f"{name} is not a JSON object")
            return value

        try:
            if (folder / "vocab.json").is_file():
                encoder = read("vocab.json")
                lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
                merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
            else:
                model = read("tokenizer.json").get("model")
                if not isinstance(model, dict) or model.get("type") != "BPE":
                    raise ValueError("neither vocab.json nor a BPE tokenizer.json")
                encoder = model["vocab"]
                merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            names = read("special_tokens_map.json") or read("tokenizer_config.json")
            sot, eot = (_token_name(names.get(k), d) for k, d in (("bos_token", HF_SOT), ("eos_token", HF_EOT)))
            if not isinstance(encoder, dict) or sot not in encoder or eot not in encoder:
                raise ValueError(f"the vocabulary lacks the start and end tokens {sot} and {eot}")
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise VocabularyNotFoundError(f"{folder} is not a CLIP tokenizer folder ({type(e).__name__}: {e})") from e
        self = cls.__new__(cls)
        self.vocab_path = folder
        self._setup(encoder, merges, (sot, eot), context_length)
        return self

    def _setup(self, encoder: dict[str, int], merges: list, special: tuple[str, str], context_length: int) -> None:
        self.encoder = encoder
        self.decoder = {i: token for token, i in encoder.items()}
        self.bpe_ranks = {merge: i for i, merge in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        sot, eot = special
        self.pattern = regex.compile(
            rf"{regex.escape(sot)}|{regex.escape(eot)}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self.cache: dict[str, str] = {sot: sot, eot: eot}
        self.context_length = context_length
        self.vocab_size = max(encoder.values()) + 1
        self.sot_token_id, self.eot_token_id = encoder[sot], encoder[eot]

    def bpe(self, token: str) -> str:
        """Merge the characters of one pre-token, lowest-ranked pair first; returns space-joined symbols."""
        if token in self.cache:
            return self.cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = result = " ".join(word)
        return result

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self.pattern.findall(_clean(text)):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(piece).split(" "))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.Tensor:
        return pack(self, texts, context_length, truncate)

    def to_metadata(self) -> dict[str, Any]:
        return {"kind": self.kind, "context_length": self.context_length}


class HFTokenizer:
    """A `tokenizers` tokenizer (a BPE trained here, or an imported one such as BERT's WordPiece); its whole
    definition travels inside the checkpoint."""

    kind = "hf-tokenizers"

    def __init__(
        self, definition: str, context_length: int, special: tuple[str, str] = (SOT, EOT), clean: bool = True
    ) -> None:
        """`special`: the start and end tokens `pack` wraps every text in ("[CLS]", "[SEP]" for BERT).
        `clean`: apply CLIP's text cleaning first; False for imported tokenizers, whose own normalizer rules."""
        from tokenizers import Tokenizer as _Tokenizer

        self.definition = definition
        self.backend = _Tokenizer.from_str(definition)
        self.backend.no_truncation()  # `pack` truncates (keeping the end token) or raises, never silently
        self.backend.no_padding()
        self.context_length = context_length
        self.special, self.clean = tuple(special), clean
        self.vocab_size = self.backend.get_vocab_size()
        self.sot_token_id = self.backend.token_to_id(special[0])
        self.eot_token_id = self.backend.token_to_id(special[1])
        if self.sot_token_id is None or self.eot_token_id is None:
            raise ValueError(f"tokenizer definition lacks the special tokens {special[0]} and {special[1]}")

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(_clean_trained(text) if self.clean else text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([int(i) for i in ids])

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.Tensor:
        return pack(self, texts, context_length, truncate)

    def to_metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "context_length": self.context_length,
            "definition": self.definition,
            "special": list(self.special),
            "clean": self.clean,
        }


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int, context_length: int) -> HFTokenizer:
    """Train a small byte-level BPE on `texts` (for models trained from scratch on their own captions)."""
    from tokenizers import Tokenizer as _Tokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = _Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", SOT, EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((_clean_trained(t) for t in texts), trainer=trainer)
    return HFTokenizer(backend.to_str(), context_length)


def tokenizer_from_metadata(meta: dict[str, Any], checkpoint_path: str | os.PathLike | None = None) -> Tokenizer:
    """The text tokenizer a checkpoint's metadata describes; ValueError naming the field for anything malformed."""
    if not isinstance(meta, dict):
        raise ValueError(f"the tokenizer metadata is not a map: {json.dumps(meta)[:200]}")
    kind, length = meta.get("kind"), meta.get("context_length", 77)
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_CONTEXT:
        raise ValueError(f"tokenizer context_length must be between 1 and {MAX_CONTEXT}, got {length!r:.80}")
    if kind == ClipBPETokenizer.kind:
        beside = Path(checkpoint_path).parent / CLIP_VOCAB_NAME if checkpoint_path else None
        vocab = beside if beside is not None and beside.is_file() else None
        return ClipBPETokenizer(vocab, context_length=length)
    if kind == HFTokenizer.kind:
        special, definition = meta.get("special", (SOT, EOT)), meta.get("definition")
        if not isinstance(definition, str) or not (isinstance(special, list | tuple) and len(special) == 2):
            raise ValueError("tokenizer metadata needs a definition (text) and two special tokens")
        try:
            return HFTokenizer(definition, length, tuple(special), bool(meta.get("clean", True)))  # type: ignore[arg-type]
        except Exception as e:  # the tokenizers library raises its own exception types for a bad definition
            raise ValueError(f"the tokenizer definition is not one the tokenizers library reads ({e})") from e
    if kind == YTTMTokenizer.kind:
        definition = meta.get("definition")
        if not isinstance(definition, str):
            raise ValueError("tokenizer metadata of kind yttm-bpe needs its model's text as `definition`")
        return YTTMTokenizer(definition, length, bool(meta.get("lower", True)))
    raise ValueError(f"unknown tokenizer kind {kind!r} in checkpoint metadata: {json.dumps(meta)[:200]}")


MAX_CONTEXT = 4096  # tokens


def find_clip_vocab(path: str | os.PathLike | None = None) -> Path:
    """CLIP's BPE vocabulary: the given path, $PICTEXT_HOME, or an installed open_clip / clip package."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise VocabularyNotFoundError(f"CLIP vocabulary {p} does not exist")
        return p
    candidates = [Path(os.environ.get("PICTEXT_HOME", Path.home() / ".cache" / "pictext")) / CLIP_VOCAB_NAME]
    for package in ("open_clip", "clip"):
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / CLIP_VOCAB_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise VocabularyNotFoundError(
        f"CLIP's BPE vocabulary {CLIP_VOCAB_NAME} was not found (looked in: {', '.join(map(str, candidates))}). "
        "Install it with `pip install open-clip-torch`, or copy the file from github.com/openai/CLIP "
        "to one of those places, or pass its path."
    )


__all__ = ["ClipBPETokenizer", "HFTokenizer", "TextTooLongError", "Tokenizer", "VocabularyNotFoundError", "pack",
           "tokenizer_from_metadata", "train_bpe_tokenizer"]  # fmt: skip
