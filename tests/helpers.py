"""Helpers shared by several test modules: shape galleries, PNG bytes, a fake emoji tarball, and a CLIP whose
embeddings are known by construction (so semantic tests never depend on what a tiny model happened to learn)."""

from __future__ import annotations

import importlib
import importlib.machinery
import io
import json
import pathlib
import socket
import sys
import tarfile
import threading
import time
import types
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image

from pictext.clip.model import CLIP
from pictext.data.shapes import COLORS, SHAPES, SIZES, Scene, Shape, render


def shape_image(color: str, shape: str, size: str = "large", position: str = "center", background: int = 40):
    return render(Scene((Shape(color, shape, size, position),), background), size=64)


def write_gallery(folder, n_per_combo: int = 1) -> dict[str, tuple[str, str, str]]:
    """One image per (colour, shape, size, position variant); returns path -> (colour, shape, size)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for color in COLORS:
        for shape in SHAPES:
            for size in ("small", "large"):
                for j, position in enumerate(("left", "right", "center")[:n_per_combo]):
                    path = folder / f"{color}-{shape}-{size}-{j}.png"
                    shape_image(color, shape, size, position, background=20 + 30 * j).save(path)
                    truth[str(path)] = (color, shape, size)
    return truth


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class StubCLIP(CLIP):
    """A CLIP whose embeddings are known by construction, for testing what queries *mean*.

    Each word of `WORDS` is one axis. A text embeds as the normalized sum of the axes of its known words; an
    image embeds as the normalized sum of the axes of the words it was registered with (`register`), looked up
    by its exact preprocessed pixels. Everything else (config, weights, tokenizer, preprocessing, fingerprint)
    is the wrapped model's, so an index or the API takes it like any CLIP.
    """

    WORDS = (*COLORS, *SHAPES, *SIZES)

    def __init__(self, base: CLIP) -> None:
        super().__init__(base.config)
        self.load_state_dict(base.state_dict())
        self.tokenizer, self.preprocess = base.tokenizer, base.preprocess
        self.images: dict[bytes, tuple[str, ...]] = {}
        assert len(self.WORDS) <= base.config.embed_dim
        self.eval()

    def embed_words(self, words: Iterable[str]) -> torch.Tensor:  # -> (E,), normalized
        v = torch.zeros(self.config.embed_dim)
        for w in words:
            if w in self.WORDS:
                v[self.WORDS.index(w)] += 1
        if not v.any():
            raise AssertionError(f"StubCLIP knows none of the words {list(words)}")
        return v / v.norm()

    def register(self, image: Image.Image, words: Iterable[str]) -> None:
        self.images[self.preprocess(image).numpy().tobytes()] = tuple(words)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.stack([self.embed_words(self.images[p.cpu().numpy().tobytes()]) for p in pixels])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.stack([self.embed_words(self.tokenizer.decode(row.tolist()).split()) for row in tokens])


def stub_gallery(folder, base: CLIP, n_per_combo: int = 1) -> tuple[StubCLIP, dict[str, tuple[str, str, str]]]:
    """A gallery written to `folder` and a StubCLIP that embeds each of its images as its colour, shape, size."""
    truth = write_gallery(folder, n_per_combo)
    stub = StubCLIP(base)
    for path, words in truth.items():
        stub.register(Image.open(path), words)
    return stub, truth


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_for_hang(proc, marker, timeout: float, what: str) -> None:
    """Wait until a child process that was made to hang at a known point has touched `marker`, and check that
    it is still alive there, so that a kill lands exactly at that point."""
    wait_until(lambda: marker.exists() or proc.poll() is not None, timeout, what)
    assert proc.poll() is None, f"the child exited before reaching {what}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app, port: int):
    """A real uvicorn on 127.0.0.1:`port` in a thread; returns (server, thread) once it accepts connections."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
    if not server.started:
        raise AssertionError(f"uvicorn did not start on port {port}")
    return server, thread


EMOJI_ENTRIES = [
    {"unified": f"1F{i:03X}", "image": f"1f{i:03x}.png", "name": f"THING {i}", "short_names": [f"thing_{i}"],
     "category": "Objects" if i % 2 else "Animals & Nature", "subcategory": "animal-mammal"}
    for i in range(40)
]  # fmt: skip
EMOJI_ENTRIES[0]["skin_variations"] = {
    "1F3FB": {"unified": "1F000-1F3FB", "image": "1f000-1f3fb.png"},
    "1F3FF": {"unified": "1F000-1F3FF", "image": "1f000-1f3ff.png"},
}


def _tar(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_emojilib(path):
    """emojilib's layout: emoji -> [name slug, keywords...] (thing 1 has keywords; ':D' is not a word)."""
    table = {chr(0x1F001): ["thing_1", "gadget", "shiny_tool", ":D", "widget"]}
    return _tar(path, {"package/dist/emoji-en-US.json": json.dumps(table).encode()})


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72">'
       b'<circle cx="36" cy="36" r="30" fill="#ff0000"/></svg>')  # fmt: skip


def fake_openmoji(path):
    """openmoji's layout: data/openmoji.json and color/svg/<hexcode>.svg (with one extra that emoji-datasource
    lacks, and one skin tone of thing 0)."""
    items = [{"hexcode": code, "tags": "round, red", "openmoji_tags": ""} for code in ("1F001", "1F000-1F3FB", "E000")]
    files = {"package/data/openmoji.json": json.dumps(items).encode()}
    return _tar(path, files | {f"package/color/svg/{item['hexcode']}.svg": SVG for item in items})


def fake_tarball(path):
    """A small tarball laid out like npm's emoji-datasource-google (no network in tests)."""
    with tarfile.open(path, "w:gz") as tar:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("package/emoji.json", json.dumps(EMOJI_ENTRIES).encode())
        names = [e["image"] for e in EMOJI_ENTRIES] + ["1f000-1f3fb.png", "1f000-1f3ff.png"]
        for n, name in enumerate(names):
            buffer = io.BytesIO()
            Image.new("RGBA", (64, 64), (n * 5, 100, 200, 255)).save(buffer, "PNG")
            add(f"package/img/google/64/{name}", buffer.getvalue())
    return path


def reference_module(name: str) -> types.ModuleType:
    """Import module `name` of a reference package without running its packages' __init__: ruDALL-E's and
    ruCLIP's import huggingface_hub's `cached_download` (gone from it since 0.26), while their model modules
    need only torch and einops."""
    parts = name.split(".")
    path = None
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        if package not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(parts[i - 1], path)
            assert spec is not None and spec.submodule_search_locations, f"{package} is not installed"
            module = types.ModuleType(package)
            module.__path__ = list(spec.submodule_search_locations)
            module.__spec__ = spec
            sys.modules[package] = module
        path = sys.modules[package].__path__
    return importlib.import_module(name)


class Attrs(dict):
    """What OmegaConf gives ruDALL-E's VQGAN: keys read and written as attributes (its DWT decoder sets
    out_ch = 12), and ** for taming's Decoder."""

    __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__


def omegaconf_like(d: dict) -> Attrs:
    return Attrs({k: omegaconf_like(v) if isinstance(v, dict) else v for k, v in d.items()})


def write_synthetic(emb: pathlib.Path, n: int, per_shard: int, dim: int = 128, seed: int = 0, model: str = "default",
                    fingerprint: str = "synthetic") -> np.ndarray:  # fmt: skip
    """Shards of n clustered unit vectors, as `pictext embed` writes them; returns the vectors, float32."""
    from pictext.search import shards as sh

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(n // 100, 8), dim))
    names = [f"{i:05d}" for i in range((n + per_shard - 1) // per_shard)]
    plan = sh.Plan("synthetic", [sh.InputShard(name, "files", "") for name in names], model, fingerprint, dim,
                   "fp32", None)  # fmt: skip
    emb.mkdir(parents=True, exist_ok=True)
    (emb / "plan.json").write_text(plan.to_json(), encoding="utf-8")
    out = []
    for i, name in enumerate(names):
        m = min(per_shard, n - i * per_shard)
        v = centers[rng.integers(0, len(centers), m)] + rng.normal(size=(m, dim)) * 0.7
        v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
        items = [sh.Item(j, f"{name}-{j}", f"https://example.org/{name}/{j}.jpg", f"caption {name} {j}", "")
                 for j in range(m)]  # fmt: skip
        sh.write_shard(emb, name, items, v, [""] * m, [None] * m, fingerprint)
        out.append(v.astype(np.float32))
    return np.concatenate(out)
