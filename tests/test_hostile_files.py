"""Every model loader refuses a hostile file before it costs memory or time: one table of files the test builds.

Each file is small (kilobytes, or a few MiB for the zip bomb) and asks for far more than it holds: a config of
300,000 blocks or a 12.5 M-entry codebook, a tensor of gigabytes that is a stride-0 view of one float, a zip
entry of compressed zeros, JSON nested 100,000 deep. Each load runs in a fork of a child process that has
imported pictext, and measures its peak memory (Linux: /proc/self/clear_refs resets the peak); each must end
in a PictextError naming the file, within a few seconds, having grown by no more than the file's size plus
64 MiB. The growth counted leaves out pages of files mapped in meanwhile (RssFile): the code of libtorch that
a first call faults in, which differs from one CPU to another (tens of MiB) and is no allocation. A refusal
that allocates gigabytes is still counted: the peak less the file pages added is at least the peak allocated
less those pages.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pictext import checkpoint
from pictext.clip.model import CLIP, CLIPConfig
from pictext.config import from_dict
from pictext.vqgan.io import IN_DALLE
from pictext.vqgan.model import VQGAN, VQGANConfig

pytestmark = pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="measures peak memory through Linux's /proc"
)

ALLOWANCE = 64 << 20  # bytes a refusal may cost beyond the file's own size
SECONDS = 5.0


# ---- pickles written by hand: what torch.save writes, with whatever sizes the test chooses ------------------------


class Storage:
    """A storage record: the pickle names its type, key and element count; the zip holds `data` under the key."""

    def __init__(self, key: str, numel: int, dtype: str = "FloatStorage") -> None:
        self.key, self.numel, self.dtype = key, numel, dtype


class Tensor:
    """torch._utils._rebuild_tensor_v2 of a storage with any size and stride."""

    def __init__(self, storage: Storage, size: tuple, stride: tuple) -> None:
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (
            self.storage,
            0,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )


_FOREIGN = types.ModuleType("foreign_module")  # the classes a pickled module names (OpenAI's dall_e, Lightning...)
sys.modules["foreign_module"] = _FOREIGN


class Module:
    """A pickled nn.Module as the inert unpickler sees it: a class the file names, with its state."""

    def __init__(self, parameters: dict | None = None, modules: dict | None = None) -> None:
        self.parameters, self.modules = parameters or {}, modules or {}

    def __reduce__(self):
        state = {"_parameters": self.parameters, "_buffers": {}, "_modules": self.modules, "training": False}
        return _Stand, (), state


class _Stand:
    pass


class _Script:
    pass


_Stand.__module__, _FOREIGN._Stand = "foreign_module", _Stand
sys.modules["__torch__"] = types.ModuleType("__torch__")  # what a TorchScript archive's classes are named under
_Script.__module__, sys.modules["__torch__"]._Script = "__torch__", _Script


class ScriptModule(Module):
    def __reduce__(self):
        return _Script, (), dict(self.parameters)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, obj.dtype), obj.key, "cpu", obj.numel)
        return None


def write_archive(path: Path, obj, data: dict[str, bytes | int], torchscript: bool = False) -> Path:
    """A zip as torch.save lays it out (archive/data.pkl, archive/data/KEY); `data` gives each storage's bytes,
    or an int: that many zero bytes, deflated (a zip bomb)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buffer.getvalue())
        if torchscript:
            z.writestr("archive/code/__torch__/model.py", "")
        for key, content in data.items():
            if isinstance(content, int):
                info = zipfile.ZipInfo(f"archive/data/{key}")
                info.compress_type = zipfile.ZIP_DEFLATED
                with z.open(info, "w", force_zip64=True) as f:
                    chunk = bytes(16 << 20)
                    for _ in range(content // len(chunk)):
                        f.write(chunk)
            else:
                z.writestr(f"archive/data/{key}", content)
    return path


def one_float() -> tuple[Storage, dict[str, bytes]]:
    return Storage("0", 1), {"0": bytes(4)}


# ---- the hostile files ----------------------------------------------------------------------------------------------


def _native(path: Path, kind: str, meta: dict, tensors: dict | None = None) -> Path:
    return checkpoint.save(path, tensors or {"x": torch.zeros(1)}, kind, meta)


def _clip_config(**vision) -> dict:
    return {"embed_dim": 64, "vision": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, **vision},
            "text": {"context_length": 16, "vocab_size": 100, "width": 64, "heads": 1, "layers": 1}}  # fmt: skip


TAMING = """model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 16
    n_embed: {n_embed}
    ddconfig: {{double_z: false, z_channels: 32, resolution: {resolution}, in_channels: 3, out_ch: 3, ch: 32,
                ch_mult: {ch_mult}, num_res_blocks: {blocks}, attn_resolutions: [16], dropout: 0.0}}
"""


def _taming(folder: Path, **changes) -> tuple[Path, Path]:
    values = {"n_embed": 64, "resolution": 32, "ch_mult": "[1, 2]", "blocks": 1} | changes
    (folder / "model.yaml").write_text(TAMING.format(**values))
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}}, folder / "model.ckpt")
    return folder / "model.ckpt", folder / "model.yaml"


def _dvae(folder: Path, width: int) -> tuple[Path, Path]:
    """OpenAI dVAE pickles whose convolutions claim `width` channels: stride-0 views of one float."""
    storage, data = one_float()
    conv = Module({"w": Tensor(storage, (width, 3, 7, 7), (0, 0, 0, 0)), "b": Tensor(storage, (width,), (0,))})
    out = Module({"w": Tensor(storage, (8192, width, 1, 1), (0, 0, 0, 0)), "b": Tensor(storage, (8192,), (0,))})
    encoder = Module(modules={"blocks": Module(modules={"input": conv, "output": Module(modules={"conv": out})})})
    decoder = Module(modules={"blocks": Module(modules={"input": conv})})
    write_archive(folder / "encoder.pkl", encoder, data)
    write_archive(folder / "decoder.pkl", decoder, data)
    return folder / "encoder.pkl", folder / "decoder.pkl"


def build_cases(folder: Path) -> list[tuple[str, str, list[str]]]:
    """(case, loader, arguments): the loader names a function of LOADERS in the child process."""
    cases = []

    def case(name: str, loader: str, *paths: Path) -> None:
        cases.append((name, loader, [str(p) for p in paths]))

    def sub(name: str) -> Path:
        (folder / name).mkdir()
        return folder / name

    meta = {"preprocess": {"image_size": 32}, "tokenizer": {"kind": "clip-bpe", "context_length": 16}}
    clip = CLIP(from_dict(CLIPConfig, _clip_config())).state_dict()  # a real one where the rest is what is wrong
    case(
        "native CLIP, 300,000 layers",
        "clip",
        _native(folder / "deep.safetensors", "clip", {**meta, "config": _clip_config(layers=300_000)}),
    )
    case(
        "native CLIP, 206 GB of layers",
        "clip",
        _native(folder / "wide.safetensors", "clip", {**meta, "config": _clip_config(layers=64, width=8192)}),
    )
    nested = {"pictext.format": "pictext", "pictext.version": "1", "pictext.kind": "clip",
              "pictext.config": "[" * 100_000 + "]" * 100_000}  # fmt: skip
    save_file({"x": torch.zeros(1)}, folder / "nested.safetensors", metadata=nested)
    case("native CLIP, JSON nested 100,000 deep", "clip", folder / "nested.safetensors")
    case(
        "native CLIP, a NaN width",
        "clip",
        _native(folder / "nan.safetensors", "clip", {**meta, "config": _clip_config(width=float("nan"))}),
    )
    long = {**meta, "config": _clip_config(), "tokenizer": {"kind": "clip-bpe", "context_length": 10**9}}
    case("native CLIP, context of 10^9 tokens", "clip", _native(folder / "ctx.safetensors", "clip", long, clip))
    vq = {"resolution": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16],
          "z_channels": 32, "embed_dim": 16, "n_embed": 12_500_000}  # fmt: skip
    case("native VQGAN, 12.5 M codes", "vqgan", _native(folder / "codes.safetensors", "vqgan", {"config": vq}))
    dalle = {"text_vocab": 100, "image_vocab": 64, "text_len": 1024, "image_grid": 64, "width": 8, "layers": 100,
             "heads": 1, "attention": ["row", "column"]}  # fmt: skip
    image = {"kind": "vqgan", "config": vq | {"n_embed": 64}}
    tokenizer = VQGAN(from_dict(VQGANConfig, image["config"])).state_dict()  # a real one: the masks are what is wrong
    case("native DALL-E, 2.6 GB of attention masks", "dalle", _native(folder / "masks.safetensors", "dalle",
         {"config": dalle, "image_tokenizer": image, "tokenizer": {"kind": "clip-bpe"}},
         {IN_DALLE + k: v for k, v in tokenizer.items()} | {"x": torch.zeros(1)}))  # fmt: skip
    prior = {"embed_dim": 64, "text_len": 16, "width": 64, "heads": 1, "layers": 300_000}
    case(
        "native unCLIP, 300,000 prior layers",
        "unclip",
        _native(folder / "prior.safetensors", "unclip", {"prior": prior, "clip": {"name": "default"}}),
    )
    case("taming, 12.5 M codes", "taming", *_taming(sub("t1"), n_embed=12_500_000))
    case("taming, 200,000 blocks a level", "taming", *_taming(sub("t2"), blocks=200_000))
    case("taming, resolution 0", "taming", *_taming(sub("t3"), resolution=0))
    case("taming, no levels", "taming", *_taming(sub("t4"), ch_mult="[]"))
    storage, data = one_float()
    bomb = {"state_dict": {"encoder.conv_in.weight": Tensor(Storage("1", 1 << 28), (1 << 28,), (1,))}}
    (sub("t5") / "model.yaml").write_text(TAMING.format(n_embed=64, resolution=32, ch_mult="[1, 2]", blocks=1))
    case("taming .ckpt, a zip bomb of 1 GiB", "taming", write_archive(folder / "t5" / "model.ckpt", bomb,
         {"1": 1 << 30}), folder / "t5" / "model.yaml")  # fmt: skip
    lying = {"state_dict": {"encoder.conv_in.weight": Tensor(Storage("1", 4), (4,), (1,))}}
    case(
        "taming .ckpt, a storage larger than its record",
        "taming",
        write_archive(folder / "t5" / "lying.ckpt", lying, {"1": bytes(64 << 20)}),
        folder / "t5" / "model.yaml",
    )
    case("OpenAI dVAE .pkl, 4096 channels of one float", "dvae", *_dvae(sub("dvae"), 4096))
    expanded = {"visual.proj": Tensor(storage, (1 << 16, 1 << 14), (0, 0))}
    case("OpenCLIP .pt, 4 GiB view of one float", "clip", write_archive(folder / "expanded.pt", expanded, data))
    many = {f"t{i}": Tensor(Storage("big", 1 << 20), (1 << 20,), (1,)) for i in range(2000)}
    case(
        "OpenCLIP .pt, one storage viewed 2,000 times",
        "clip",
        write_archive(folder / "views.pt", many, {"big": bytes(4 << 20)}),
    )
    script = ScriptModule({"proj": Tensor(storage, (1 << 16, 1 << 14), (0, 0))})
    case(
        "TorchScript .pt, 4 GiB view of one float",
        "clip",
        write_archive(folder / "script.pt", script, data, torchscript=True),
    )
    hf = sub("hf")
    (hf / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    save_file({"x": torch.zeros(1)}, hf / "model.safetensors")
    case("Hugging Face folder, config.json nested 100,000 deep", "clip", hf)
    return cases


# ---- the child process: load each, measure -------------------------------------------------------------------------

CHILD = """
import json, os, sys, time
import pictext
from pictext.clip.io import load_clip
from pictext.dalle.dvae import load_openai_dvae
from pictext.dalle.io import load_dalle
from pictext.errors import PictextError
from pictext.unclip.io import load_unclip
from pictext.vqgan.convert import load_taming
from pictext.vqgan.io import load_vqgan

LOADERS = {"clip": lambda p: load_clip(p, activation="gelu"), "vqgan": load_vqgan, "dalle": load_dalle,
           "unclip": load_unclip, "taming": load_taming, "dvae": load_openai_dvae}

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def measure(name, loader, paths):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from what is resident now
    before, files, start = status("VmRSS"), status("RssFile"), time.perf_counter()
    try:
        LOADERS[loader](*paths)
        outcome = "loaded"
    except PictextError as e:
        outcome = "refused: " + str(e)[:300]
    except BaseException as e:
        outcome = f"{type(e).__name__}: {str(e)[:300]}"
    print(json.dumps({"case": name, "outcome": outcome, "seconds": time.perf_counter() - start,
                      "grew": status("VmHWM") - before - (status("RssFile") - files)}), flush=True)

for case in json.loads(sys.argv[1]):  # each in a fork of this process: what one case leaves cannot hide the next
    pid = os.fork()
    if pid == 0:
        try:
            measure(*case)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
"""


def test_every_loader_refuses_a_hostile_file_before_it_costs_memory_or_time(tmp_path):
    cases = build_cases(tmp_path)
    sizes = {name: sum(_size(Path(p)) for p in paths) for name, _, paths in cases}
    env = {**os.environ, "PICTEXT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))\n"  # a failure stays small
    result = subprocess.run([sys.executable, "-c", limit + CHILD, json.dumps(cases)], capture_output=True, text=True,
                            env=env, timeout=600)  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == len(cases), result.stderr[-3000:]
    failures = []
    for row in rows:
        budget = sizes[row["case"]] + ALLOWANCE
        if not row["outcome"].startswith("refused: "):
            failures.append(f"{row['case']}: {row['outcome']}")
        elif row["seconds"] > SECONDS or row["grew"] > budget:
            failures.append(f"{row['case']}: {row['seconds']:.1f} s, grew {row['grew'] >> 20} MiB "
                            f"(file {sizes[row['case']] >> 20} MiB)")  # fmt: skip
    assert not failures, "\n".join(failures)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
