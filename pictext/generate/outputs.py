"""What every generator writes: the PNG with its settings in text chunks, a JSON beside it, frames, a GIF.

Everything goes to a temporary folder inside the output folder and is renamed into place at the end, so an
interrupted or failed run leaves nothing half-written in `--out`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe form of a prompt: 'a red circle!' -> 'a-red-circle'."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:limit] or "image"


def write_outputs(
    out: str | os.PathLike,
    name: str,
    image: Image.Image,
    settings: dict[str, Any],
    frames: Sequence[Image.Image] = (),
    frame_ms: int = 120,
) -> dict[str, Path]:
    """Write NAME.png (settings in its text chunks), NAME.json, NAME-frames/ and NAME.gif into `out`; returns
    their paths. Existing files of the same name are replaced only once everything is written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        info = PngInfo()
        info.add_text("pictext", json.dumps(settings, sort_keys=True))
        for key in ("prompt", "seed", "method"):
            if key in settings:
                info.add_text(key, str(settings[key]))
        image.save(staging / f"{name}.png", pnginfo=info)
        (staging / f"{name}.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        if frames:
            (staging / f"{name}-frames").mkdir()
            for i, frame in enumerate(frames):
                frame.save(staging / f"{name}-frames" / f"{i:04d}.png")
            first, *rest = [f.convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
            first.save(staging / f"{name}.gif", save_all=True, append_images=rest, duration=frame_ms, loop=0)
        written = {}
        for item in sorted(staging.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
            written[item.suffix.lstrip(".") or "frames"] = target
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def contact_sheet(
    images: Sequence[Image.Image], scores: Sequence[float], columns: int = 8, scale: int = 2
) -> Image.Image:
    """The pictures in rank order on one sheet, each enlarged `scale` times (nearest) above its CLIP score."""
    from PIL import ImageDraw

    if not images:
        raise ValueError("a contact sheet needs at least one picture")
    w, h = images[0].width * scale, images[0].height * scale
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, score) in enumerate(zip(images, scores)):
        x, y = (i % columns) * w, (i // columns) * (h + 12)
        sheet.paste(image.convert("RGB").resize((w, h), Image.Resampling.NEAREST), (x, y))
        draw.text((x + 2, y + h), f"{i + 1}: {score:.3f}", fill="black")
    return sheet
