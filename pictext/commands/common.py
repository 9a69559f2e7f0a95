"""What several areas of the command share: image lists, training paths, the model and precision flags, and the
flags built from a generator's settings dataclass (one default and one check for each, generate/base.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pictext.errors import PictextError, UsageError
from pictext.images.decode import IMAGE_SUFFIXES, list_images

Subparsers = Any  # argparse's _SubParsersAction, a private class


def images_in(inputs: Sequence[str]) -> list[Path]:
    """The image files named or inside the folders named; UsageError when there are none."""
    paths = list_images(inputs)
    if not paths:
        raise UsageError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def train_paths(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """--out (default: the model NAME in $PICTEXT_HOME/models) and --run-dir (default: beside it)."""
    from pictext import hub

    out = Path(args.out) if args.out else hub.models_dir() / f"{name}.safetensors"
    return out, Path(args.run_dir) if args.run_dir else out.with_suffix(".run")


def precision_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    help = "inference precision; auto: bf16 where the CPU or GPU has it natively (default: %(default)s)"
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=default, help=help)


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint file, Hugging Face folder, or local model name (default: default)")
    p.add_argument("--activation", choices=["quick_gelu", "gelu"], help="for OpenCLIP state dicts, which omit it")


def data_args(p: argparse.ArgumentParser, default: str | None = "shapes") -> None:
    p.add_argument(
        "--data",
        default=default,
        help="shapes, digits, a folder (x.jpg + x.txt), a .csv/.tsv/.jsonl table, or WebDataset shards "
        "(x.tar, 'x-{000000..000009}.tar', or a folder of .tar)" + ("" if default else "; default: the recipe's"),
    )
    p.add_argument("--image-column", default="image", help="for tables: the column of image paths")
    p.add_argument("--caption-column", default="caption", help="for tables: the column of captions")


def say_precision(model):
    """Print, once per command, the precision the model runs in."""
    from pictext.training import cpu_has_fast_bf16

    why = " (native on this CPU)" if model.precision == "bf16" and cpu_has_fast_bf16() else ""
    print(f"pictext: inference in {model.precision}{why}", file=sys.stderr)
    return model


# ---- flags from settings dataclasses ---------------------------------------------------------------------------------


def flag_of(f: dataclasses.Field) -> str:
    """The command line's name for a settings field: its declared flag, or --field-name (--no-field-name for a
    switch that is on by default)."""
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    return f"--{'no-' if f.default is True else ''}{f.name.replace('_', '-')}"


def add_settings_flags(parser: argparse.ArgumentParser | Any, owners: dict[str, type]) -> None:
    """A flag for every field the command line takes of the settings classes in `owners` (name -> class); a flag
    several classes share is added once, its help naming each one's default. Every flag defaults to None: a
    setting left out keeps its class's default, and values are checked when the settings are built."""
    flags: dict[str, list[tuple[str, type, dataclasses.Field]]] = {}
    for name, cls in owners.items():
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                flags.setdefault(flag_of(f), []).append((name, cls, f))
    for flag, users in flags.items():
        _, cls, f = users[0]
        defaults = [f"{_shown(u[2].default)}" + (f" ({u[0]})" if len(owners) > 1 else "") for u in users]
        help = f"{f.metadata['help']} (default: {'; '.join(defaults)})".replace("%", "%%")
        if typing.get_type_hints(cls)[f.name] is bool:
            parser.add_argument(flag, dest=f.name, action="store_const", const=not f.default, default=None, help=help)
        else:  # read and checked by the settings class in settings_from: one check, one message
            choices = f.metadata.get("choices")
            parser.add_argument(flag, dest=f.name, default=None, help=help, metavar=_metavar(f.name, choices))


def settings_from(
    args: argparse.Namespace, cls: type, owners: dict[str, type], method: str, preset: str | None = None
) -> Any:
    """`cls` (one of `owners`) built from the flags given over `preset`'s values, read and checked by the class
    (its message names the flag); a flag of another class is an error naming it."""
    own = {f.name: flag_of(f) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    every = {f.name: flag_of(f) for c in owners.values() for f in dataclasses.fields(c) if f.metadata.get("cli", True)}
    foreign = sorted(every[name] for name in set(every) - set(own) if getattr(args, name, None) is not None)
    if foreign:
        raise UsageError(f"{', '.join(foreign)}: not options of {method}")
    given = {name: getattr(args, name) for name in own if getattr(args, name, None) is not None}
    try:
        return cls.build({k: cls.parse(k, v) if isinstance(v, str) else v for k, v in given.items()}, preset)
    except PictextError as e:
        name = str(e).split(" ", 1)[0]
        raise UsageError(str(e).replace(name, own[name], 1) if name in own else str(e)) from None


def _metavar(name: str, choices: Sequence[str] | None) -> str:
    return "{" + ",".join(choices) + "}" if choices else name.upper()


def _shown(value: Any) -> str:
    if value is True or value is False:
        return "on" if value else "off"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
