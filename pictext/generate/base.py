"""One way in for every text-to-image method: a settings dataclass, `load`, and `__call__`.

A method (VQGAN+CLIP, DALL-E, unCLIP) is a `Generator` subclass with
- `Settings`: a frozen dataclass of what a drawing takes, each field declared with `setting(...)`: its default,
  its help, its bounds and the web page's limit. The CLI's flags, the server's parameters and the one
  validation (`Settings.__post_init__`) are all read from it, so a default or a limit lives in one place.
- `MODELS`: the models it draws with (their argument names, e.g. `clip` and `vqgan`), with `defaults(prompt)`
  naming the ones used when none is given, and `load(**models)` turning names, paths or loaded models into a
  ready generator.
- `__call__(prompt, settings, callback)`: the picture(s) and their records.
`generate()` in `pictext.generate` is a lookup in `METHODS` followed by those three.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from pictext.errors import Cancelled, PictextError

MAX_SEED = 2**63 - 1


class GenerationError(PictextError, ValueError):
    pass


@dataclass
class Step:
    """One step of a drawing: an optimisation step (VQGAN+CLIP), or a finished picture (DALL-E, unCLIP)."""

    step: int
    loss: float
    clip_score: float  # cosine of the picture with the positive prompts, averaged over CLIPs and prompts
    terms: dict[str, float]


@dataclass
class Generated:
    image: Image.Image  # the best picture
    steps: list[Step]
    frames: list[Image.Image] = field(default_factory=list)
    stopped_early: bool = False
    samples: list[Image.Image] = field(default_factory=list)  # the kept pictures, best first
    scores: list[float] = field(default_factory=list)  # their CLIP scores
    all_scores: list[float] = field(default_factory=list)  # every drawn picture's score, kept or not
    records: list[dict[str, Any]] = field(default_factory=list)  # per kept picture: how it was made (PNG, JSON)

    def png(self, rank: int = 0) -> bytes:
        """The kept picture of this rank (0: the best) as the PNG the CLI writes and the page downloads: the same
        bytes, with `records[rank]` in its text chunks."""
        from pictext.generate.outputs import png_bytes

        pictures = self.samples or [self.image]
        return png_bytes(pictures[rank], self.records[rank] if self.records else None)

    @property
    def clip_score(self) -> float:
        if self.scores:
            return self.scores[0]
        return self.steps[-1].clip_score if self.steps else float("nan")


Callback = Callable[[Step, Image.Image | None], bool | None]  # each step or picture; returning False stops


def progress_check(callback: Callback | None, total: int) -> Callable[[], None] | None:
    """The check a long loop calls at each unit of work (a token, a diffusion step): it reports the progress to
    `callback` as (Step(done, terms={"total": total}), None), and raises Cancelled when the callback returns False."""
    if callback is None:
        return None
    done = 0

    def check() -> None:
        nonlocal done
        done += 1
        if callback(Step(done, float("nan"), float("nan"), {"total": float(total)}), None) is False:
            raise Cancelled

    return check


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    page: float | bool = True,
    flag: str | None = None,
    cli: bool = True,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A settings field: `low`/`high` bound it everywhere; `page` is the web page's upper limit (False: not offered
    there); `flag` the CLI's name for it (default --field-name); `cli=False` keeps it to Python; `parse` reads it
    from a command line or a query string (default: by its type)."""
    meta = {"help": help, "low": low, "high": high, "page": page, "flag": flag, "cli": cli, "choices": choices,
            "parse": parse}  # fmt: skip
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Base of every method's settings: checks each field against its declaration, then `check()`."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}  # named sets of values a method declares (its settings)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Rules between fields (a method's settings override it)."""

    @classmethod
    def build(cls, values: dict[str, Any], preset: str | None = None) -> Settings:
        """The settings from `values`, then the preset's (if any), then the defaults; a name that is no field is
        named with the known ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise GenerationError(f"unknown settings {unknown} (known: {', '.join(sorted(names))})")
        if preset is not None and preset not in cls.PRESETS:
            known = ", ".join(cls.PRESETS) or "none"
            raise GenerationError(f"preset must be one of this method's presets ({known}), got {preset!r}")
        return cls(**(cls.PRESETS[preset] if preset else {}) | values)

    @classmethod
    def parse(cls, name: str, text: str) -> Any:
        """The value of field `name` read from a string (a flag's or a query parameter's)."""
        f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if f is None:
            raise GenerationError(f"{name} is not a setting")
        reader = f.metadata.get("parse") or _reader(typing.get_type_hints(cls)[name])
        try:
            return reader(text)
        except (TypeError, ValueError) as e:
            raise GenerationError(f"{name} {e}") from None

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_field(f: dataclasses.Field, hint: Any, value: Any) -> None:
    meta, name = f.metadata, f.name
    if value is None:
        if not _optional(hint):
            raise GenerationError(f"{name} must be given")
        return
    kind = _base(hint)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise GenerationError(f"{name} must be a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GenerationError(f"{name} must be a finite number, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise GenerationError(f"{name} must be true or false, got {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise GenerationError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        raise GenerationError(f"{name} must be {_range(low, high)}, got {value}")


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def _optional(hint: Any) -> bool:
    return (isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union) and type(None) in (
        typing.get_args(hint)
    )


def _base(hint: Any) -> Any:
    """int for `int | None`, float for `float`, the origin for generics."""
    if _optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _reader(hint: Any) -> Callable[[str], Any]:
    kind = _base(hint)
    optional = _optional(hint)

    def read(text: str) -> Any:
        text = text.strip()
        if optional and text.lower() in ("", "none"):
            return None
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"must be true or false, got {text!r}")
            return text.lower() in ("1", "true", "yes", "on")
        if kind is int:
            if not text.lstrip("+-").isdigit():
                raise ValueError(f"must be a whole number, got {text!r}")
            return int(text)
        if kind is float:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"must be a number, got {text!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"must be a finite number, got {text!r}")
            return value
        return text

    return read


def read_size(text: str) -> tuple[int, int]:
    """'64' -> (64, 64), '96x64' -> (96, 64): a picture's width and height in pixels."""
    w, _, h = str(text).lower().partition("x")
    if not w.strip().isdigit() or (h and not h.strip().isdigit()) or int(w) <= 0 or (h and int(h) <= 0):
        raise ValueError(f"must be N or WxH in pixels, e.g. 64 or 96x64; got {text!r}")
    return int(w), int(h or w)


def read_seed(text: str) -> int:
    if not text.strip().isdigit() or int(text) > MAX_SEED:
        raise ValueError(f"must be a whole number between 0 and 2^63 - 1, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class ModelArg:
    """A model a method draws with: its argument name, whether it takes several, and what it is."""

    name: str
    help: str
    many: bool = False  # several models, their losses or scores summed (CLIPs)


ModelSpec = str | os.PathLike | Any  # a local model name, a file, or the loaded model itself


class Generator(ABC):
    """A text-to-image method with its models loaded (see the module doc)."""

    method: ClassVar[str]
    Settings: ClassVar[type[Settings]]
    MODELS: ClassVar[tuple[ModelArg, ...]]
    INPUTS: ClassVar[tuple[str, ...]] = ()  # pictures a drawing may take besides the prompt (keyword arguments)

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = names  # what each model was given as (a name or path), for the records

    @classmethod
    @abstractmethod
    def defaults(cls, prompt: str | None) -> dict[str, Any]:
        """The model names used where none is given (some methods choose by the prompt; see each)."""

    @classmethod
    def models_for(cls, prompt: str | None, given: dict[str, Any]) -> dict[str, Any]:
        """Every model this method draws `prompt` with: those `given`, the defaults for the rest."""
        return cls.defaults(prompt) | given

    @classmethod
    def preset_for(cls, models: dict[str, Any]) -> str | None:
        """The settings preset these models call for when the caller names none (None: the plain defaults)."""
        return None

    @classmethod
    def check_prompt(cls, prompt: str) -> None:
        """GenerationError for a prompt this method cannot draw, before any model loads."""
        if not prompt.strip():
            raise GenerationError(f"the prompt is empty; {cls.method} draws a caption, e.g. 'a red circle'")

    @classmethod
    @abstractmethod
    def load(cls, cache: ModelCache | None = None, **models: ModelSpec) -> Generator:
        """The generator with these models (names, files or loaded models); `cache` keeps loaded ones."""

    @abstractmethod
    def __call__(self, prompt: str, settings: Any, callback: Callback | None = None, **inputs: Any) -> Generated:
        """Draw `prompt`; `callback` sees each step (or picture) and stops the drawing by returning False."""

    def record(self, prompt: str, settings: Settings) -> dict[str, Any]:
        """What every picture's PNG and JSON say of how it was made."""
        return {"prompt": prompt, "method": self.method, **self.names, **settings.as_record()}


class ModelCache:
    """Loaded models by (kind, name): the server loads each once and reuses it across requests."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, spec: ModelSpec, load: Callable[[ModelSpec], Any]) -> Any:
        if not isinstance(spec, str | os.PathLike):
            return spec  # a loaded model, given as it is
        key = (kind, os.fspath(spec))
        if key not in self.models:
            self.models[key] = load(spec)
        return self.models[key]


METHODS: dict[str, str] = {  # loaded on first use: unCLIP brings diffusers (seconds to import)
    "vqgan-clip": "pictext.generate.vqgan_clip:VQGANCLIPGenerator",
    "dalle": "pictext.generate.dalle:DALLEGenerator",
    "unclip": "pictext.generate.unclip:UnclipGenerator",
}


def method(name: str) -> type[Generator]:
    """The Generator class of a method name; GenerationError naming the methods for any other name."""
    if name not in METHODS:
        raise GenerationError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    module, _, cls = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def model_name(spec: ModelSpec) -> Any:
    """How a model given as `spec` appears in a record: its name or path, or 'given' for a loaded model."""
    if isinstance(spec, list | tuple):
        return [model_name(s) for s in spec]
    return os.fspath(spec) if isinstance(spec, str | os.PathLike) else "given"
