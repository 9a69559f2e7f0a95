"""Tokenizers: CLIP's byte-level BPE, BPEs trained here with the `tokenizers` package, and YouTokenToMe's BPE
(ruDALL-E, ruCLIP) read from its model file."""

from pictext.text.tokenizer import (
    ClipBPETokenizer,
    HFTokenizer,
    TextTooLongError,
    Tokenizer,
    VocabularyNotFoundError,
    find_clip_vocab,
    tokenizer_from_metadata,
    train_bpe_tokenizer,
)
from pictext.text.yttm import YTTMTokenizer

__all__ = [
    "ClipBPETokenizer",
    "HFTokenizer",
    "TextTooLongError",
    "Tokenizer",
    "VocabularyNotFoundError",
    "YTTMTokenizer",
    "find_clip_vocab",
    "tokenizer_from_metadata",
    "train_bpe_tokenizer",
]
