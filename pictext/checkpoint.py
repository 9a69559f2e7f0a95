"""The native checkpoint: one `.safetensors` file whose metadata says how to use it.

Metadata keys (all strings, as safetensors requires):
  pictext.format   "pictext"          pictext.version  format version, "1"
  pictext.kind     model family: "clip", ...
  pictext.config   JSON of the family's config dataclass
  plus family keys, e.g. pictext.preprocess and pictext.tokenizer for CLIP.
Writes are atomic: a temporary file in the same folder, fsync, then rename.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from pictext.errors import PictextError
from pictext.files import atomic_write

FORMAT, VERSION = "pictext", "1"


class CheckpointError(PictextError, ValueError):
    pass


class _SkipInit(TorchFunctionMode):
    """torch.nn.init's in-place initializers (and Tensor.normal_/uniform_) do nothing: on the meta device there
    are no values to fill, yet torch routes meta normal_ through its Python references, which import torch._dynamo
    (about a second and 100+ MiB the first time). A function mode, so only this thread's builds skip their init."""

    SKIP = frozenset(
        {getattr(torch.nn.init, n) for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")}
        | {torch.Tensor.normal_, torch.Tensor.uniform_}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Modules built inside take no memory and no time: on the meta device, their initialization skipped."""
    with torch.device("meta"), _SkipInit():
        yield


def save(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], kind: str, meta: dict[str, Any], half: bool = False
) -> Path:
    """Write tensors and JSON-able `meta` (config, preprocessing, ...) as one self-describing file; `half` stores
    floating-point tensors in float16 (every loader reads them back as float32)."""
    if half:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    metadata = {"pictext.format": FORMAT, "pictext.version": VERSION, "pictext.kind": kind}
    metadata.update({f"pictext.{k}": json.dumps(v) for k, v in meta.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw safetensors metadata, or CheckpointError if `path` is not a readable safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(8)
        size = path.stat().st_size
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise CheckpointError(f"{path} is not a safetensors file (or is truncated): its header is unreadable")
        try:
            header = json.loads(f.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
            metadata = header.get("__metadata__") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"{path} is not a safetensors file: header is not JSON ({type(e).__name__})") from e
        except (AttributeError, KeyError, TypeError, IndexError, ValueError) as e:
            raise CheckpointError(f"{path} is not a safetensors file: its header does not list tensors") from e
    if ends and 8 + n + max(ends) > size:
        raise CheckpointError(f"{path} is truncated: {size} bytes, the header promises {8 + n + max(ends)}")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: its metadata is not a map of strings, as safetensors writes it")
    return metadata


def load(path: str | os.PathLike, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of a native checkpoint of family `kind`; clear errors for anything else."""
    raw = read_metadata(path)
    if raw.get("pictext.format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file without pictext metadata; import foreign checkpoints with "
            "`pictext convert` or pictext.load(path, activation=...)"
        )
    if raw.get("pictext.version") != VERSION:
        raise CheckpointError(f"{path} has format version {raw.get('pictext.version')}; this pictext reads {VERSION}")
    if raw.get("pictext.kind") != kind:
        raise CheckpointError(f"{path} is a pictext {raw.get('pictext.kind')!r} checkpoint, not a {kind!r} model")
    meta = {}
    for key, value in raw.items():
        if key.startswith("pictext.") and key not in ("pictext.format", "pictext.version", "pictext.kind"):
            try:
                meta[key.removeprefix("pictext.")] = json.loads(value)
            except (json.JSONDecodeError, RecursionError) as e:
                raise CheckpointError(f"{path}: its metadata {key} is not JSON ({type(e).__name__})") from e
    try:
        tensors = load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path} could not be read: {e}") from e
    return tensors, meta


def read_json_config(path: str | os.PathLike, what: str = "a JSON config") -> dict[str, Any]:
    """A JSON object from a config file a model folder holds, bounded: over 1 MiB, nested past Python's recursion
    limit, not UTF-8 or not an object, it is a CheckpointError naming the file and saying it is not `what`."""
    path = Path(path)
    try:
        if path.stat().st_size > 1 << 20:
            raise ValueError("over 1 MiB")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not {what} ({type(e).__name__}: {e})") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} is not {what} (not a JSON object)")
    return value


def build_checked(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor], path: object) -> Any:
    """`build()`, once the module it makes matches `tensors` name for name and shape for shape.

    It is first built on the meta device, which allocates nothing, so a hostile or corrupt config (a width of
    32768, a negative depth) is refused by name instead of allocating gigabytes or crashing; and a model whose
    buffers (attention masks, tables) would take more than its weights allow (`buffer_budget`) is refused too.
    The config's counts are bounded before this (pictext.config), so building on meta takes little time.
    """
    try:
        with on_meta():
            meta_model = build()
            expected = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    except Exception as e:  # any failure to build the recorded config is the file's fault
        raise CheckpointError(f"{path}: its recorded config does not describe a model that can be built ({e})") from e
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    held = sum(v.numel() * v.element_size() for v in tensors.values())
    needs = sum(v.numel() * 4 for v in meta_model.parameters()) + sum(
        v.numel() * v.element_size() for v in meta_model.buffers()
    )
    if needs > buffer_budget(held):
        raise CheckpointError(
            f"{path}: its recorded config builds a model of {needs / 2**20:.0f} MiB from {held / 2**20:.1f} MiB of "
            "weights; refused (a config that asks for far more memory than its file holds is not a model)"
        )
    if expected != found:
        wrong = sorted(set(expected) ^ set(found))[:3] or [k for k in expected if expected[k] != found[k]][:3]
        detail = ", ".join(f"{k}: config {expected.get(k)}, file {found.get(k)}" for k in wrong)
        raise CheckpointError(f"{path}: its tensors do not match the architecture its config describes ({detail})")
    return build()


def check_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`tensors` read from a pickle, refused if they could cost more memory than the file holds: a tensor may
    not be a view larger than its storage (stride 0 makes a 4 GiB tensor of one float), and all of them together
    may not take more than twice the file's size (views that share one storage)."""
    total = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if size > tensor.untyped_storage().nbytes():
            raise CheckpointError(f"{path}: tensor {name} {tuple(tensor.shape)} is larger than the data behind it")
        total += size
    if total > 2 * os.path.getsize(path) + (1 << 20):
        raise CheckpointError(f"{path}: its tensors take {total / 2**20:.0f} MiB, far more than the file holds")
    return tensors


def buffer_budget(held: int) -> int:
    """The most memory a model built from `held` bytes of weights may take: float16 weights double as float32,
    and buffers (attention masks, position tables, schedules) get 64 MiB on top."""
    return 2 * held + (64 << 20)


def build_loaded(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor], path: object) -> Any:
    """`build()` checked against `tensors` (build_checked), then loaded with them as float32, in eval mode."""
    model = build_checked(build, tensors, path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.eval()


def load_model(
    path: str | os.PathLike,
    kind: str,
    config_cls: type,
    build: Callable[[Any], torch.nn.Module],
    complete: Callable[[dict, dict, Any, Path], dict] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(model, metadata) of a native checkpoint of family `kind`: its config read into `config_cls`, the model
    `build(config)` checked against the tensors before it is allocated (build_checked), weights loaded as
    float32 (files may store float16). `complete(tensors, meta, config, path)` may add weights kept elsewhere."""
    from pictext.config import from_dict

    tensors, meta = load(path, kind)
    try:
        config = from_dict(config_cls, meta.get("config"))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its recorded config is not a {kind.upper()} config ({e})") from e
    if complete is not None:
        tensors = complete(tensors, meta, config, Path(path))
    return build_loaded(lambda: build(config), tensors, path), meta


def is_native(path: str | os.PathLike) -> bool:
    try:
        return read_metadata(path).get("pictext.format") == FORMAT
    except CheckpointError:
        return False
