"""CLIP's tokenizer gives open_clip's ids exactly; overlong text truncates with EOT last, or raises; the
vocabulary is found on disk or a clear error says how to get it."""

from __future__ import annotations

import open_clip
import pytest
import torch

from pictext.text import ClipBPETokenizer, TextTooLongError, VocabularyNotFoundError, find_clip_vocab
from pictext.text import tokenizer as tokenizer_module

CORPUS = [
    "a photo of a cat.",
    "Hello, World!!! (punctuation); isn't it? -- yes: 100% & more...",
    "café naïve résumé Ångström façade",
    "東京タワーの写真、北京烤鸭，서울의 밤",
    "🐶 dog 🐱 cat 👩‍👩‍👧 family 🇫🇷 flag",
    "fish &amp; chips &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39; &amp;amp;",
    "it's what we'll do, I'd say they've been",
    "   lots\t\tof\n\nwhitespace\u00a0here  ",
    "<start_of_text> literal special tokens <end_of_text>",
    "",
    "the quick brown fox " * 30,  # far over 77 tokens
]


def test_ids_equal_open_clip():
    ours = ClipBPETokenizer()
    ref = open_clip.get_tokenizer("ViT-B-32")
    assert torch.equal(ours(CORPUS), ref(CORPUS))


def test_truncation_keeps_eot_last_or_raises():
    tok = ClipBPETokenizer()
    ids = tok(CORPUS[-1], truncate=True)
    assert ids.shape == (1, 77) and ids[0, -1] == tok.eot_token_id and ids[0, 0] == tok.sot_token_id
    with pytest.raises(TextTooLongError, match="over the context length 77"):
        tok(CORPUS[-1], truncate=False)


def test_decode_roundtrip():
    tok = ClipBPETokenizer()
    assert tok.decode(tok.encode("a photo of a cat")).strip() == "a photo of a cat"


def test_missing_vocabulary_says_how_to_get_it(monkeypatch, tmp_path):
    with pytest.raises(VocabularyNotFoundError, match="does not exist"):
        find_clip_vocab(tmp_path / "nope.txt.gz")
    monkeypatch.setattr(tokenizer_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VocabularyNotFoundError, match="pip install open-clip-torch"):
        ClipBPETokenizer()
