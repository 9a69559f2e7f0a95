"""The `pictext` command's handlers by area, and what several areas share; pictext/cli.py holds the parser's
root, `main`, and the CLIP, search and model commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pictext.images.decode import IMAGE_SUFFIXES, list_images


def images_in(inputs: Sequence[str]) -> list[Path]:
    """The image files named or inside the folders named; ValueError when there are none."""
    paths = list_images(inputs)
    if not paths:
        raise ValueError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def train_paths(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """--out (default: the model NAME in $PICTEXT_HOME/models) and --run-dir (default: beside it)."""
    from pictext import hub

    out = Path(args.out) if args.out else hub.models_dir() / f"{name}.safetensors"
    return out, Path(args.run_dir) if args.run_dir else out.with_suffix(".run")
