"""Dataclass configs to and from plain dicts: unknown keys refused, every value checked against its field's type
and bounds before anything is built from it.

A config read from a file is the file's word, and a hostile or corrupt one must be refused before it costs
anything: `depth: 300000` would build 300,000 modules (minutes even on the meta device), a NaN width ends in
a traceback deep inside torch. So every int field is bounded: by the class's `LIMITS` (field -> (low, high),
which also bounds each entry of a tuple field) or by `DEFAULT_LIMIT`; tuples have at most `MAX_ITEMS`
entries, strings `MAX_TEXT` characters, and floats must be finite. The limits sit well above the largest
published model of each family (docs/architecture.md, "Model files are data").
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_LIMIT = (0, 1 << 17)  # an int field the class does not bound: codebooks, vocabularies, ids
MAX_ITEMS = 16  # entries of a tuple field (levels, stages, attention kinds)
MAX_TEXT = 256  # characters of a str field (names of activations, schedules, quantizers)
COUNT = (1, 128)  # depths: layers, blocks per level
HEADS = (1, 256)
WIDTH = (1, 16384)  # channels, widths, embedding sizes
SIDE = (1, 4096)  # image sides and sequence lengths
VOCAB = (1, 1 << 19)  # text vocabularies (multilingual ones have 250,002 entries)
TOKEN_ID = (-1, 1 << 19)  # token ids; -1: none (a BERT tower has no EOT)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`; nested dataclasses are built too. Unknown keys, values of the wrong
    type and values out of bounds raise ValueError or TypeError naming the field (`where`: its parents)."""
    if not isinstance(data, dict):
        raise TypeError(f"{where or cls.__name__} must be a dict of {cls.__name__} fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(names)}")
    limits = getattr(cls, "LIMITS", {})
    kwargs = {
        key: _checked(hints[key], value, where + key, limits.get(key, DEFAULT_LIMIT)) for key, value in data.items()
    }
    return cls(**kwargs)


def _checked(hint: Any, value: Any, name: str, bounds: tuple[int, int]) -> Any:
    """`value` as field `name` of type `hint` takes it (lists become tuples, dicts nested dataclasses)."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, name + ".")  # type: ignore[arg-type]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        errors = []
        for arg in args:
            try:
                return _checked(arg, value, name, bounds)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{name}: {value!r:.80} is none of {hint} ({'; '.join(errors)})")
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) > MAX_ITEMS:
            raise ValueError(f"{name} must be a list of at most {MAX_ITEMS} entries, got {value!r:.80}")
        homogeneous = len(args) == 2 and args[1] is Ellipsis
        if not homogeneous and len(value) != len(args):
            raise ValueError(f"{name} must have {len(args)} entries, got {len(value)}")
        kinds = [args[0]] * len(value) if homogeneous else list(args)
        return tuple(_checked(kind, v, f"{name}[{i}]", bounds) for i, (kind, v) in enumerate(zip(kinds, value)))
    return _scalar(hint, value, name, bounds)


def _scalar(hint: Any, value: Any, name: str, bounds: tuple[int, int]) -> Any:
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{name} must be null, got {value!r:.80}")
    elif hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r:.80}")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {value!r:.80}")
        if not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{name} must be between {bounds[0]} and {bounds[1]}, got {value}")
    elif hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, got {value!r:.80}")
        return float(value)
    elif hint is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise TypeError(f"{name} must be a string of at most {MAX_TEXT} characters, got {value!r:.80}")
    return value
