"""What every tokenizer of pictext is: the `Tokenizer` protocol, and `pack`, which lays a text out as models take it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from pictext.errors import PictextError


class TextTooLongError(PictextError, ValueError):
    pass


class Tokenizer(Protocol):
    context_length: int
    vocab_size: int
    sot_token_id: int
    eot_token_id: int

    def encode(self, text: str) -> list[int]: ...

    def to_metadata(self) -> dict[str, Any]: ...

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> torch.Tensor: ...


def pack(tokenizer: Tokenizer, texts: str | Sequence[str], context_length: int | None, truncate: bool) -> torch.Tensor:
    """(N, context_length) ids: SOT, tokens, EOT, zeros. Overlong text is cut with EOT kept last, or raises."""
    if isinstance(texts, str):
        texts = [texts]
    length = context_length or tokenizer.context_length
    out = torch.zeros(len(texts), length, dtype=torch.long)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, not a str")
        ids = [tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id]
        if len(ids) > length:
            if not truncate:
                raise TextTooLongError(
                    f"text {i} ({text[:40]!r}...) is {len(ids)} tokens, over the context length {length}; "
                    "shorten it or pass truncate=True (keeps the first tokens and ends with EOT)"
                )
            ids = ids[: length - 1] + [tokenizer.eot_token_id]
        out[i, : len(ids)] = torch.tensor(ids)
    return out
