"""What every generator writes: the PNG with its settings in text chunks, a JSON beside it, frames, a GIF.

Everything goes to a temporary folder inside the output folder and is renamed into place at the end, so an
interrupted or failed run leaves nothing half-written in `--out`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pictext.errors import UsageError

# Every name pictext makes in --out is built from at most two slugs, a seed and a suffix; the longest is a staging
# folder ".A-to-B-variations-SEED.pictext-PID-XXXXXXXX": with slugs of 40 bytes, 10-digit seeds and 7-digit PIDs
# it takes 132 bytes, under 143, the shortest name limit among common file systems (eCryptfs; ext4, APFS, NTFS: 255).
SLUG_BYTES = 40
STAGING = re.compile(r"\..+\.pictext-(\d+)-[^.]+")


def slug(text: str, max_bytes: int = SLUG_BYTES) -> str:
    """A file-name-safe form of a prompt: 'a red circle!' -> 'a-red-circle', at most `max_bytes` in UTF-8 (file
    systems bound names in bytes, and a letter of Cyrillic or Chinese takes 2 or 3), ending at a whole word
    where the prompt has several ('радуга на фоне ночного города' -> 'радуга-на-фоне')."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    out = out.strip("-")
    cut = out.encode()[:max_bytes].decode(errors="ignore")  # at a whole character
    if len(cut) < len(out) and out[len(cut)] != "-" and "-" in cut:  # a word was split: end at the one before
        cut = cut.rsplit("-", 1)[0]
    return cut.strip("-") or "image"


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
    remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.pictext-{os.getpid()}-", dir=out))
    try:
        (staging / f"{name}.png").write_bytes(png_bytes(image, settings))
        sidecar = json.dumps(settings, indent=2, sort_keys=True, ensure_ascii=False)  # a Russian prompt stays legible
        (staging / f"{name}.json").write_text(sidecar + "\n", encoding="utf-8")
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


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders in `out` that a killed run left (.NAME.pictext-PID-XXXXXXXX): those whose
    process is gone, or is a younger process under a reused PID. A running pictext's folder is left alone."""
    removed = []
    for entry in out.iterdir():
        match = STAGING.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        if not _running_since(int(match.group(1)), entry.stat().st_mtime):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _running_since(pid: int, when: float) -> bool:
    """Whether process `pid` exists and started no later than `when` (where /proc tells start times)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    try:  # Linux: the start in clock ticks after boot is field 22 of /proc/PID/stat (after the parenthesised name)
        ticks = int(Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines()
            if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return True  # no /proc (macOS): alive is all we know
    return boot + ticks / os.sysconf("SC_CLK_TCK") <= when + 1


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
    for i, image in enumerate(images):  # scores may be empty: pictures without a CLIP score
        x, y = (i % columns) * w, (i // columns) * (h + 12)
        sheet.paste(image.convert("RGB").resize((w, h), Image.Resampling.NEAREST), (x, y))
        draw.text((x + 2, y + h), f"{i + 1}: {scores[i]:.3f}" if i < len(scores) else f"{i + 1}", fill="black")
    return sheet
