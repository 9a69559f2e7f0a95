"""Published weights: the registry (`published.json`, reviewed like code) and the one command that fetches them.

Each entry names its files: a URL (OpenAI's CLIPs carry their SHA-256 in it) or a file of a Hugging Face Hub
repo at a revision. Plain URLs go through `download` below: resumed with HTTP Range from a `.part` file,
timeouts, retries with backoff, a size limit from the registry, the SHA-256 checked, the file renamed into
place only when whole and right. Hub files go through huggingface_hub (its cache, HF_HOME, HF_HUB_OFFLINE,
HF_ENDPOINT and tokens work as its users expect), checked against the SHA-256 the hub lists for them.

Nothing here runs at import or by itself: a name of the registry that is not on this machine is an error
saying which command fetches it and how large it is (`hub.resolve`); `fetch` is called by the user.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pictext.errors import PictextError
from pictext.files import atomic_write, home

log = logging.getLogger(__name__)

REGISTRY = Path(__file__).parent / "published.json"
MARKER = "fetched.json"  # written last into an entry's folder: what was fetched, with its hashes


class FetchError(PictextError):
    pass


@dataclass(frozen=True)
class FileSpec:
    name: str  # the file's name in the entry's folder
    max_bytes: int  # a download is stopped past this
    url: str | None = None
    sha256: str | None = None  # None: not published by its authors; the hash fetched is recorded and reported
    hub: str | None = None  # a Hugging Face Hub repo id, for files hosted there
    revision: str | None = None  # the hub commit it is pinned to (None: the repo's main branch)


@dataclass(frozen=True)
class Published:
    name: str
    family: str  # "clip", "vqgan", "dvae", "unclip", "dalle"
    # "openai", "open_clip", "huggingface", "taming", "openai-dvae", "diffusers-unclip", "rudalle", "ruclip"
    format: str
    about: str
    licence: str
    approx_mb: int  # the download's size, approximately (the SHA-256 and max_bytes are what is checked)
    files: tuple[FileSpec, ...]
    activation: str | None = None  # CLIPs: the activation their file does not record
    config: dict[str, Any] | None = None  # pictext's config for it, where the loader infers one from the tensors
    reference: dict[str, Any] = field(default_factory=dict)  # how the reference code builds it (tests)

    @property
    def folder(self) -> Path:
        return published_dir() / self.name.replace("/", "--")

    def paths(self) -> dict[str, Path] | None:
        """Where each fetched file is (hub files stay in the hub's cache), or None if any is missing."""
        paths = recorded_paths(self.folder)
        return (
            paths if set(paths) == {f.name for f in self.files} and all(p.is_file() for p in paths.values()) else None
        )

    def fetched(self) -> bool:
        return self.paths() is not None

    def located(self) -> Path | None:
        """What pictext loads, None if it is not fetched: the folder holding the files (Hugging Face, dVAE) or
        the entry's first file."""
        paths = self.paths()
        if paths is None:
            return None
        first = paths[self.files[0].name]
        if self.format == "rudalle":  # files of two hub repos: the folder whose record says where each is
            return self.folder
        return first.parent if self.format in ("huggingface", "openai-dvae", "diffusers-unclip", "ruclip") else first

    @property
    def path(self) -> Path:
        located = self.located()
        if located is None:
            raise FetchError(missing_message(self))
        return located


def recorded_paths(folder: Path) -> dict[str, Path]:
    """File name -> path, as the fetch record in `folder` gives them (empty without a readable record)."""
    try:
        return {k: Path(v) for k, v in json.loads((folder / MARKER).read_text(encoding="utf-8"))["paths"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def is_format(spec: object, format: str, is_folder: Callable[[Any], bool]) -> bool:
    """True when `spec` names a model of `format`: a registry name of that format, or a path `is_folder` accepts
    (a model of that format downloaded by hand)."""
    if not isinstance(spec, str | os.PathLike):
        return False
    item = entry(str(spec))
    return item.format == format if item is not None else is_folder(spec)


def published_dir() -> Path:
    return home() / "published"


def registry(path: Path | None = None) -> dict[str, Published]:
    """Every published model pictext knows, by name (read once per registry file: every name lookup asks)."""
    return dict(_read(path or REGISTRY))


@functools.lru_cache(maxsize=4)
def _read(path: Path) -> dict[str, Published]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: Published(name=name, files=tuple(FileSpec(**f) for f in e.pop("files")), **e)
        for name, e in entries.items()
    }


def entry(name: str) -> Published | None:
    return registry().get(str(name))


def missing_message(item: Published) -> str:
    return (
        f"{item.name} is a published model ({item.about}; about {item.approx_mb:,} MB, {item.licence} licence) that "
        f"is not on this machine yet. pictext downloads nothing by itself: fetch it with `pictext models fetch "
        f"{item.name}` (Python: pictext.fetch({item.name!r})), or let one command do it: `pictext --fetch ...`, "
        "load(..., fetch=True)"
    )


# ---- fetching ------------------------------------------------------------------------------------------------------


def fetch(name: str, progress: bool = True) -> Path:
    """Download every file of published model `name` (resuming where an earlier try stopped), verify each, and
    return what pictext loads. Already fetched: returns at once. FetchError says what went wrong."""
    item = entry(name)
    if item is None:
        known = ", ".join(sorted(registry()))
        raise FetchError(f"{name!r} is not a published model pictext knows; the registry has: {known}")
    if item.fetched():
        return item.path
    item.folder.mkdir(parents=True, exist_ok=True)
    hashes, paths = {}, {}
    for spec in item.files:
        if spec.hub is not None:
            paths[spec.name], hashes[spec.name] = _from_hub(spec)
        else:
            assert spec.url is not None, f"{name}: {spec.name} has neither url nor hub"
            paths[spec.name] = item.folder / spec.name
            hashes[spec.name] = download(spec.url, paths[spec.name], spec.sha256, spec.max_bytes, progress=progress)
    unverified = [f.name for f in item.files if f.hub is None and f.sha256 is None]
    record = {"name": name, "sha256": hashes, "paths": {k: str(v) for k, v in paths.items()},
              "unverified": unverified, "fetched": time.strftime("%Y-%m-%d")}  # fmt: skip
    atomic_write(
        item.folder / MARKER, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    )
    if unverified:
        log.warning("%s: %s have no published SHA-256 to check; fetched as %s", name, ", ".join(unverified),
                    ", ".join(f"{n} {hashes[n][:16]}..." for n in unverified))  # fmt: skip
    return item.path


def download(
    url: str,
    target: Path,
    sha256: str | None,
    max_bytes: int,
    *,
    timeout: float = 30.0,
    retries: int = 4,
    progress: bool = True,
) -> str:
    """`url` into `target`, returning its SHA-256. A partial download stays in TARGET.part and the next call
    resumes it (HTTP Range); a stalled or cut connection is retried with backoff; more than `max_bytes` stops
    it; a hash other than `sha256` removes the file. `target` appears only whole and verified.

    Written here on the standard library (urllib): huggingface_hub's downloader is internal to it and serves
    the hub's URLs only, and requests or httpx would be a dependency for one function."""
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, max_bytes, timeout, progress)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # a finished .part: nothing left to send
                break
            if e.code < 500 or attempt == retries:
                raise FetchError(f"{url}: the server answered {e.code} {e.reason}") from e
        except (TimeoutError, ConnectionError, urllib.error.URLError) as e:
            if attempt == retries:
                reason = getattr(e, "reason", e)
                raise FetchError(
                    f"{url}: no answer after {retries + 1} tries ({reason}); check the network (offline?) and run the "
                    f"same command again: it resumes from the {part.stat().st_size if part.exists() else 0:,} "
                    "bytes already here"
                ) from e
        except OSError as e:  # a full disk, a folder that cannot be written: retrying will not help
            raise FetchError(f"{target}: cannot write the download ({e.strerror or e})") from e
        time.sleep(min(2**attempt, 30) * 0.5)
    digest = file_sha256(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise FetchError(f"{url}: the file's SHA-256 is {digest}, the registry's {sha256}; removed, never loaded")
    os.replace(part, target)
    return digest


def _transfer(url: str, part: Path, max_bytes: int, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (a Range request from its size)."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored the Range: start again
            have = 0
        total = have + int(response.headers.get("Content-Length") or 0) or None
        if total is not None and total > max_bytes:
            raise FetchError(f"{url}: {total:,} bytes, more than the {max_bytes:,} the registry allows")
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress)
        with open(part, "ab" if have else "wb") as f, bar:
            while chunk := response.read(1 << 20):
                have += len(chunk)
                if have > max_bytes:
                    f.close()
                    part.unlink()
                    raise FetchError(f"{url}: more than the {max_bytes:,} bytes the registry allows; stopped")
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and have < total:
            raise ConnectionError(f"the connection closed at {have:,} of {total:,} bytes")


def _from_hub(spec: FileSpec) -> tuple[Path, str]:
    """(where it is, its SHA-256) of a hub file fetched through huggingface_hub, into its cache (files of one
    revision share a folder there), checked against the SHA-256 the hub lists for it."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        cached = Path(hf_hub_download(spec.hub, spec.name, revision=spec.revision))  # type: ignore[arg-type]
    except LocalEntryNotFoundError as e:
        raise FetchError(f"{spec.hub}/{spec.name}: not in the hub cache and the hub cannot be reached ({e})") from e
    except HfHubHTTPError as e:
        raise FetchError(f"{spec.hub}/{spec.name}: the hub answered {e}") from e
    if cached.stat().st_size > spec.max_bytes:
        raise FetchError(f"{spec.hub}/{spec.name}: {cached.stat().st_size:,} bytes, more than {spec.max_bytes:,}")
    digest = file_sha256(cached)
    if not constants.HF_HUB_OFFLINE:  # as huggingface_hub reads HF_HUB_OFFLINE ("0" is online)
        listed = get_hf_file_metadata(hf_hub_url(spec.hub, spec.name, revision=spec.revision)).etag  # type: ignore[arg-type]
        if len(listed or "") == 64 and listed != digest:  # large files' etag is their SHA-256 (git LFS)
            raise FetchError(f"{spec.hub}/{spec.name}: SHA-256 {digest}, the hub lists {listed}; not used")
    return cached, digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
