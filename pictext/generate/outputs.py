"""What every generator writes: the PNG with its settings in text chunks, a JSON beside it, frames, a GIF.

Everything goes to a temporary folder inside the output folder and is renamed into place at the end, so an
interrupted or failed run leaves nothing half-written in `--out`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pictext.errors import UsageError


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe form of a prompt: 'a red circle!' -> 'a-red-circle'."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:limit] or "image"


def png_bytes(image: Image.Image, record: dict[str, Any] | None = None) -> bytes:
    """The PNG of a picture with how it was made in its text chunks: what the CLI writes and the page downloads."""
    info = PngInfo()
    if record is not None:
        info.add_text("pictext", json.dumps(record, sort_keys=True))
        for key in ("prompt", "seed", "method"):
            if key in record:
                info.add_text(key, str(record[key]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def check_target(out: str | os.PathLike, names: Sequence[str] = ()) -> Path:
    """`out` as a folder outputs can go to, checked before any work: not a file, and none of `names` (the entries
    a run will replace) a symlink, which pictext never replaces."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    for name in names:
        if (out / name).is_symlink():
            raise UsageError(
                f"{out / name} is a symlink; pictext does not replace links: remove it or use another --out"
            )
    return out


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
    out = check_target(out, [f"{name}.png", f"{name}.json", f"{name}-frames", f"{name}.gif"])
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        (staging / f"{name}.png").write_bytes(png_bytes(image, settings))
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
