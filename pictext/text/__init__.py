"""Tokenizers: CLIP's byte-level BPE, and BPEs trained here with the `tokenizers` package."""

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

__all__ = [
    "ClipBPETokenizer",
    "HFTokenizer",
    "TextTooLongError",
    "Tokenizer",
    "VocabularyNotFoundError",
    "find_clip_vocab",
    "tokenizer_from_metadata",
    "train_bpe_tokenizer",
]
