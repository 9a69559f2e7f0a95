"""Weighted queries: `"beach" + "sunset" - "people"`, `2:"red car"`, images as terms.

A query is a list of (weight, term) where a term is text or an image. Its vector
is the weighted sum of the terms' normalized embeddings, renormalized, so that
"red" + "circle" - "small" scores an image by how red, how circular and how
not-small it is at once (the arithmetic rclip popularised).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pictext.errors import PictextError
from pictext.images.decode import ImageInput

Term = str | ImageInput | bytes


@dataclass(frozen=True)
class Weighted:
    weight: float
    term: Term


MAX_WEIGHT = 100.0  # |weight| of one term; larger ones are typos or attempts to overflow
_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.*)$", re.DOTALL)


class QueryError(PictextError, ValueError):
    pass


def parse_terms(tokens: Sequence[str]) -> list[Weighted]:
    """Command-line tokens to weighted text terms: `a + b - c`, `2:a`, `0.5:"red car" - 2:people`.

    `+` and `-` tokens separate terms and set the sign of the next one; words
    between operators form one term, so `a dog on the beach` is a single query.
    """
    terms: list[Weighted] = []
    sign, words, weight = 1.0, [], 1.0

    def flush() -> None:
        if words:
            terms.append(Weighted(sign * weight, " ".join(words)))

    for token in tokens:
        token = token.strip()
        if token in ("+", "-"):
            if not words:
                raise QueryError(f"{token!r} needs a term before it and after it, e.g. beach + sunset - people")
            flush()
            sign, words, weight = (-1.0 if token == "-" else 1.0), [], 1.0
            continue
        match = _WEIGHT.match(token)
        if match:
            flush()
            sign = sign if not words else 1.0
            words, weight = [match[2].strip()], float(match[1])
            if not weight or abs(weight) > MAX_WEIGHT:
                raise QueryError(f"query term {token!r}: a weight must be non-zero and at most {MAX_WEIGHT:g}")
            if not words[0]:
                raise QueryError(f"query term {token!r} has a weight but no text")
        elif token:
            words.append(token)
    if tokens and not words and terms:
        raise QueryError("the query ends with an operator; put a term after it")
    flush()
    if not terms:
        raise QueryError('the query is empty; give text (pictext search "a dog") or an image (--image FILE)')
    return terms


def parse_query(text: str) -> list[Weighted]:
    """One string with the command-line syntax (for the web box): `"beach" + "sunset" - people`."""
    try:
        return parse_terms(shlex.split(text))
    except ValueError as e:
        if isinstance(e, QueryError):
            raise
        raise QueryError(f"cannot read the query {text!r}: {e} (close every quote)") from e


def as_terms(query: object) -> list[Weighted]:
    """Normalize what `Index.search` accepts: text, an image (path, PIL, bytes), Weighted, or a list of those.

    A list of (weight, term) pairs works too.
    """
    items = query if isinstance(query, list | tuple) and not _is_pair(query) else [query]
    terms = []
    for item in items:
        if isinstance(item, Weighted):
            terms.append(item)
        elif _is_pair(item):
            terms.append(Weighted(float(item[0]), item[1]))  # type: ignore[index]
        else:
            terms.append(Weighted(1.0, item))  # type: ignore[arg-type]
    for t in terms:
        if isinstance(t.term, str) and not t.term.strip():
            raise QueryError("a query term is empty; give some text or an image")
        if not isinstance(t.term, str | bytes | os.PathLike | Image.Image):
            raise QueryError(f"a query term must be text, an image path, PIL image or bytes, got {type(t.term)}")
    if not terms:
        raise QueryError("the query is empty")
    return terms


def _is_pair(item: object) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int | float)


def combine(weights: Sequence[float], embeddings: np.ndarray) -> np.ndarray:
    """Weighted sum of normalized rows, renormalized: the query vector.

    Terms that (nearly) cancel out, as in `red - red`, leave no direction to search in: a QueryError, never a
    vector of rounding noise or NaN.
    """
    weights = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(weights)) or np.abs(weights).max() > MAX_WEIGHT:
        raise QueryError(f"query weights must be numbers between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")
    vector = weights @ np.asarray(embeddings, np.float64)  # (E,)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-3 * np.abs(weights).sum():
        raise QueryError("the query's terms cancel out (their weighted sum is zero); change a weight")
    return (vector / norm).astype(np.float32)
