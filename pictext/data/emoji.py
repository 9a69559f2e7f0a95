"""The emoji sets: one vendor's drawings of the emoji with their names, built from npm packages.

`pictext data build emoji [--vendor V]` runs `npm pack` for the vendor's package into the cache (or takes a
tarball you already have) and writes a folder of pairs a person can look through: `train/` and `held_out/`,
each `<code>.png` with `<code>.txt` beside it (captions from the name, the short names and the subcategory;
with `--keywords`, also emojilib's keywords) and `labels.json` (the category of each image). A fifth of the base
emoji are held out, chosen by a hash of the base code, so every skin-tone variant of an emoji, and every
vendor's drawing of it, lands on the same side.

Vendors and licences: Google's Noto drawings (`emoji-datasource-google`, Apache-2.0), Twitter's Twemoji
(`emoji-datasource-twitter`, CC-BY-4.0), OpenMoji (`openmoji`, CC-BY-SA-4.0; SVGs, rasterised here with
libvips) are openly licensed and may be trained on. Facebook's (`emoji-datasource-facebook`) are not: pictext
uses them only to test a model on a drawing style it never saw.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from pictext.errors import DatasetError
from pictext.files import atomic_write

# npm packages, pinned so that a set built on another day is the same set
PACKAGES = {
    "google": "emoji-datasource-google@16.0.0",
    "twitter": "emoji-datasource-twitter@16.0.0",
    "facebook": "emoji-datasource-facebook@16.0.0",
    "openmoji": "openmoji@17.0.0",
    "emojilib": "emojilib@4.0.3",  # keywords for every emoji (not drawings)
}
VENDORS = ("google", "twitter", "openmoji", "facebook")
OPEN_VENDORS = ("google", "twitter", "openmoji")  # openly licensed drawings: the ones a shipped model learns from


def package(vendor: str) -> str:
    if vendor not in PACKAGES:
        raise DatasetError(f"emoji vendor must be one of {VENDORS}, got {vendor!r}")
    return PACKAGES[vendor].split("@")[0]


def fetch_tarball(cache: Path, vendor: str = "google") -> Path:
    """The package's tarball in `cache`, fetched once with `npm pack` (npm's registry; nothing else)."""
    name, spec = package(vendor), PACKAGES[vendor]
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name}-[0-9]*.tgz"))
    if found:
        return found[-1]
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError(
            f"npm is not installed, and pictext needs it once to fetch {name}. Install Node.js, or run "
            f"`npm pack {spec}` elsewhere and pass the .tgz with --tarball"
        )
    result = subprocess.run([npm, "pack", spec, "--silent"], cwd=cache, capture_output=True, text=True)
    found = sorted(cache.glob(f"{name}-[0-9]*.tgz"))
    if result.returncode != 0 or not found:
        raise DatasetError(f"`npm pack {spec}` failed: {result.stderr.strip()[-500:]}")
    return found[-1]


def held_out(base_code: str, fraction: float = 0.2) -> bool:
    return int(hashlib.sha256(base_code.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def _plain(code: str) -> str:
    """A code point sequence without variation selectors: how vendors' codes for one emoji agree."""
    return "-".join(p for p in code.upper().split("-") if p != "FE0F")


def _char(code: str) -> str:
    return "".join(chr(int(p, 16)) for p in code.split("-"))


@cache
def _keyword_table(tarball: Path) -> dict[str, list[str]]:
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            table = json.load(archive.extractfile("package/dist/emoji-en-US.json"))  # type: ignore[arg-type]
    except (OSError, KeyError, TypeError, tarfile.TarError, json.JSONDecodeError) as e:
        raise DatasetError(f"{tarball} has no readable package/dist/emoji-en-US.json; is it emojilib?") from e
    return {_plain("-".join(f"{ord(c):X}" for c in emoji)): words for emoji, words in table.items()}


def keywords(code: str, tarball: Path | None) -> list[str]:
    """emojilib's keywords for an emoji (its code, e.g. "1F600"), words only; none without a tarball."""
    if tarball is None:
        return []
    words = _keyword_table(tarball).get(_plain(code), [])[1:]  # the first is the name as a slug
    return [w.replace("_", " ") for w in words if w.replace("_", "").replace(" ", "").isalpha()]


def captions(entry: dict, words: list[str] | None = None) -> list[str]:
    """Caption lines of an emoji-datasource entry: name, short names, subcategory; then, given keywords, a line
    of the name with its keywords and each of the first three keywords alone."""
    name = entry.get("name") or entry["short_names"][0]
    lines = [name.lower(), *(s.replace("_", " ").replace("-", " ") for s in entry.get("short_names", []))]
    lines.append(f"a {entry.get('subcategory', '').replace('-', ' ')} emoji: {name.lower()}")
    if words:
        lines += [f"{name.lower()}: {', '.join(words[:6])}", *words[:3]]
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


def emoji_samples(
    tarball: Path, vendor: str = "google", words: Path | None = None, base: Path | None = None
) -> Iterator[tuple[str, str, bytes, list[str], str]]:
    """(split, file stem, PNG bytes, captions, category) for every emoji image in the vendor's package tarball;
    `words`: emojilib's tarball, for keywords; `base`: an emoji-datasource tarball (OpenMoji's split and names
    follow its entries, so every vendor holds out the same emoji)."""
    if vendor == "openmoji":
        if base is None:
            raise DatasetError("OpenMoji's split follows emoji-datasource's entries: pass its tarball as `base`")
        yield from _openmoji_samples(tarball, words, base)
        return
    for split, entry, variant, data in _datasource(tarball, vendor):
        if variant.get(f"has_img_{vendor}", True):
            yield split, Path(variant["image"]).stem, data, captions(entry, keywords(entry["unified"], words)), \
                entry.get("category", "")  # fmt: skip


def _datasource_entries(tarball: Path, name: str) -> tuple[tarfile.TarFile, list[dict]]:
    try:
        archive = tarfile.open(tarball, "r:gz")
        return archive, json.load(archive.extractfile("package/emoji.json"))  # type: ignore[arg-type]
    except (OSError, tarfile.TarError) as e:
        raise DatasetError(f"{tarball} is not the {name} tarball: {e}") from e
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{tarball} has no readable package/emoji.json; is it {name}?") from e


def _datasource(tarball: Path, vendor: str) -> Iterator[tuple[str, dict, dict, bytes]]:
    """(split, entry, variant, PNG bytes) of an emoji-datasource package's 64 px images."""
    archive, entries = _datasource_entries(tarball, package(vendor))
    with archive:
        for entry in entries:
            split = "held_out" if held_out(entry["unified"]) else "train"
            variants = [entry, *({**entry, **v} for v in (entry.get("skin_variations") or {}).values())]
            for variant in variants:
                try:
                    data = archive.extractfile(f"package/img/{vendor}/64/{variant['image']}")
                except KeyError:
                    continue  # no image of this vendor for this one
                if data is not None:
                    yield split, entry, variant, data.read()


def _openmoji_samples(
    tarball: Path, words: Path | None, base: Path
) -> Iterator[tuple[str, str, bytes, list[str], str]]:
    """OpenMoji's colour SVGs rasterised to 64 px PNGs, for the emoji emoji-datasource also has (OpenMoji's own
    extras are left out), captioned like the other vendors from emoji-datasource's entry plus OpenMoji's tags."""
    import pyvips  # only here: the one vendor drawn as SVG

    archive, entries = _datasource_entries(base, "emoji-datasource")
    archive.close()
    known = {}
    for entry in entries:
        for v in [entry, *(entry.get("skin_variations") or {}).values()]:
            known[_plain(v["unified"])] = entry
    try:
        archive = tarfile.open(tarball, "r:gz")
        table = json.load(archive.extractfile("package/data/openmoji.json"))  # type: ignore[arg-type]
    except (OSError, KeyError, TypeError, tarfile.TarError, json.JSONDecodeError) as e:
        raise DatasetError(f"{tarball} is not the openmoji tarball (no readable package/data/openmoji.json)") from e
    with archive:
        for item in table:
            entry = known.get(_plain(item["hexcode"]))
            if entry is None:
                continue
            try:
                svg = archive.extractfile(f"package/color/svg/{item['hexcode']}.svg")
            except KeyError:
                continue
            if svg is None:
                continue
            image = pyvips.Image.new_from_buffer(svg.read(), "", scale=64 / 72)  # drawn on a 72-unit square
            png = image.write_to_buffer(".png")
            tags = [t.strip() for t in f"{item.get('tags', '')},{item.get('openmoji_tags', '')}".split(",")]
            words_of = keywords(entry["unified"], words) + [t for t in tags if t.replace(" ", "").isalpha()]
            split = "held_out" if held_out(entry["unified"]) else "train"
            stem = item["hexcode"].lower()
            yield split, stem, png, captions(entry, list(dict.fromkeys(words_of))), entry.get("category", "")


def build_emoji(
    out: Path,
    tarball: Path,
    per_shard: int | None = None,
    vendor: str = "google",
    words: Path | None = None,
    base: Path | None = None,
) -> dict[str, int]:
    """Write train/ and held_out/ from the vendor's package tarball, as pair folders or, with `per_shard`, as
    WebDataset shards of that many samples; returns counts. The split depends on the emoji alone, so every
    vendor's held-out emoji are the same ones. `words`, `base`: as in `emoji_samples`."""
    counts = {"train": 0, "held_out": 0}
    labels: dict[str, dict[str, str]] = {"train": {}, "held_out": {}}
    samples: dict[str, list[tuple[str, bytes, str, str]]] = {"train": [], "held_out": []}
    for split, stem, png, lines, category in emoji_samples(tarball, vendor, words, base):
        text = "\n".join(lines) + "\n"
        if per_shard:
            samples[split].append((stem, png, "png", text))
        else:
            atomic_write(out / split / f"{stem}.png", lambda tmp, png=png: Path(tmp).write_bytes(png))
            atomic_write(
                out / split / f"{stem}.txt", lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8")
            )
        labels[split][f"{stem}.png"] = category
        counts[split] += 1
    if per_shard:
        from pictext.data.shards import write_shards

        for split, items in samples.items():
            write_shards(items, out / split, split, per_shard)
    for split, table in labels.items():
        atomic_write(
            out / split / "labels.json",
            lambda tmp, t=table: Path(tmp).write_text(json.dumps(t, indent=1), encoding="utf-8"),
        )
    return counts


def named_images(folder: Path, split: str = "held_out") -> tuple[list[Path], list[str]]:
    """A built split's images and their names (each caption file's first line)."""
    pngs = sorted((Path(folder) / split).glob("*.png"))
    if not pngs:
        raise DatasetError(f"{Path(folder) / split}: no emoji images; build them with `pictext data build emoji`")
    return pngs, [p.with_suffix(".txt").read_text(encoding="utf-8").splitlines()[0] for p in pngs]


def folder_name(vendor: str = "google", keywords: bool = False) -> str:
    """Where a vendor's set lives under $PICTEXT_HOME/data: emoji, emoji-twitter, ...; emoji-google-keywords, ..."""
    return "emoji" if vendor == "google" and not keywords else f"emoji-{vendor}" + ("-keywords" if keywords else "")


def ensure_emoji(home: Path, vendor: str = "google", keywords: bool = False) -> Path:
    """The vendor's emoji pair folders under `home`/data (`folder_name`), built once (npm's registry is asked
    only then)."""
    out = home / "data" / folder_name(vendor, keywords)
    if not (out / "held_out" / "labels.json").is_file():  # written last: its presence means the build finished
        downloads = home / "downloads"
        words = fetch_tarball(downloads, "emojilib") if keywords else None
        base = fetch_tarball(downloads, "google") if vendor == "openmoji" else None
        build_emoji(out, fetch_tarball(downloads, vendor), vendor=vendor, words=words, base=base)
    return out


def beside_emoji(data: object, repeats: int, seed: int, home: Path | None = None) -> object:
    """`data` (pairs) followed by Google's training emoji, each counted `repeats` times (built under `home`, the
    pictext cache, on first use); `data` alone when `repeats` is 0. The generators' recipes train on this mix."""
    from pictext.data.pairs import FolderPairs, MixedPairs
    from pictext.files import home as pictext_home

    if not repeats:
        return data
    return MixedPairs([(data, 1), (FolderPairs(ensure_emoji(home or pictext_home()) / "train", seed=seed), repeats)])
