"""The emoji set: Google's emoji images with their names, built from the npm package emoji-datasource-google.

`pictext data build emoji` runs `npm pack emoji-datasource-google` into the cache (or takes a tarball you
already have) and writes a folder of pairs a person can look through: `train/` and `held_out/`, each
`<code>.png` with `<code>.txt` beside it (captions from the name, the short names and the subcategory)
and `labels.json` (the category of each image). 20% of the base emoji are held out, chosen by a hash of the
base code, so every skin-tone variant of an emoji lands on the same side.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from pictext.checkpoint import atomic_write
from pictext.data.pairs import DatasetError

VENDORS = ("google", "twitter", "facebook")  # facebook's drawings are not openly licensed: evaluation only


def package(vendor: str) -> str:
    if vendor not in VENDORS:
        raise DatasetError(f"emoji vendor must be one of {VENDORS}, got {vendor!r}")
    return f"emoji-datasource-{vendor}"


def fetch_tarball(cache: Path, vendor: str = "google") -> Path:
    """The vendor's package tarball in `cache`, fetched once with `npm pack` (npm's registry; nothing else)."""
    name = package(vendor)
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name}-*.tgz"))
    if found:
        return found[-1]
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError(
            f"npm is not installed, and pictext needs it once to fetch {name}. Install Node.js, or run "
            f"`npm pack {name}` elsewhere and pass the .tgz with --tarball"
        )
    result = subprocess.run([npm, "pack", name, "--silent"], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{name}-*.tgz"))
    if result.returncode != 0 or not found:
        raise DatasetError(f"`npm pack {name}` failed: {result.stderr.strip()[-500:]}")
    return found[-1]


def held_out(base_code: str, fraction: float = 0.2) -> bool:
    return int(hashlib.sha256(base_code.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def captions(entry: dict) -> list[str]:
    name = entry.get("name") or entry["short_names"][0]
    lines = [name.lower(), *(s.replace("_", " ").replace("-", " ") for s in entry.get("short_names", []))]
    lines.append(f"a {entry.get('subcategory', '').replace('-', ' ')} emoji: {name.lower()}")
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


def emoji_samples(tarball: Path, vendor: str = "google") -> Iterator[tuple[str, str, bytes, list[str], str]]:
    """(split, file stem, PNG bytes, captions, category) for every emoji image in the vendor's package tarball."""
    name, images = package(vendor), f"package/img/{vendor}/64/"
    try:
        archive = tarfile.open(tarball, "r:gz")
    except (OSError, tarfile.TarError) as e:
        raise DatasetError(f"{tarball} is not the {name} tarball: {e}") from e
    with archive:
        try:
            entries = json.load(archive.extractfile("package/emoji.json"))  # type: ignore[arg-type]
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{tarball} has no readable package/emoji.json; is it {name}?") from e
        for entry in entries:
            split = "held_out" if held_out(entry["unified"]) else "train"
            variants = [entry, *({**entry, **v} for v in (entry.get("skin_variations") or {}).values())]
            for variant in variants:
                try:
                    data = archive.extractfile(images + variant["image"])
                except KeyError:
                    continue  # no Google image for this one
                if data is None or not variant.get(f"has_img_{vendor}", True):
                    continue
                yield split, Path(variant["image"]).stem, data.read(), captions(entry), entry.get("category", "")


def build_emoji(out: Path, tarball: Path, per_shard: int | None = None, vendor: str = "google") -> dict[str, int]:
    """Write train/ and held_out/ from the vendor's package tarball, as pair folders or, with `per_shard`, as
    WebDataset shards of that many samples; returns counts. The split depends on the emoji alone, so every
    vendor's held-out emoji are the same ones."""
    counts = {"train": 0, "held_out": 0}
    labels: dict[str, dict[str, str]] = {"train": {}, "held_out": {}}
    samples: dict[str, list[tuple[str, bytes, str, str]]] = {"train": [], "held_out": []}
    for split, stem, png, lines, category in emoji_samples(tarball, vendor):
        text = "\n".join(lines) + "\n"
        if per_shard:
            samples[split].append((stem, png, "png", text))
        else:
            atomic_write(out / split / f"{stem}.png", lambda tmp, png=png: Path(tmp).write_bytes(png))
            atomic_write(out / split / f"{stem}.txt", lambda tmp, text=text: Path(tmp).write_text(text))
        labels[split][f"{stem}.png"] = category
        counts[split] += 1
    if per_shard:
        from pictext.data.shards import write_shards

        for split, items in samples.items():
            write_shards(items, out / split, split, per_shard)
    for split, table in labels.items():
        atomic_write(out / split / "labels.json", lambda tmp, t=table: Path(tmp).write_text(json.dumps(t, indent=1)))
    return counts


def named_images(folder: Path, split: str = "held_out") -> tuple[list[Path], list[str]]:
    """A built split's images and their names (each caption file's first line)."""
    pngs = sorted((Path(folder) / split).glob("*.png"))
    if not pngs:
        raise DatasetError(f"{Path(folder) / split}: no emoji images; build them with `pictext data build emoji`")
    return pngs, [p.with_suffix(".txt").read_text().splitlines()[0] for p in pngs]


def ensure_emoji(home: Path, vendor: str = "google") -> Path:
    """The vendor's emoji pair folders under `home`/data (emoji, emoji-twitter, ...), built once (npm's registry
    is asked only then)."""
    out = home / "data" / ("emoji" if vendor == "google" else f"emoji-{vendor}")
    if not (out / "held_out" / "labels.json").is_file():  # written last: its presence means the build finished
        build_emoji(out, fetch_tarball(home / "downloads", vendor), vendor=vendor)
    return out
