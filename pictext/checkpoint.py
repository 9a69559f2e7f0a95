"""The native checkpoint: one `.safetensors` file whose metadata says how to use it.

Metadata keys (all strings, as safetensors requires):
  pictext.format   "pictext"          pictext.version  format version, "1"
  pictext.kind     model family: "clip", ...
  pictext.config   JSON of the family's config dataclass
  plus family keys, e.g. pictext.preprocess and pictext.tokenizer for CLIP.
Writes are atomic: a temporary file in the same folder, fsync, then rename.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT, VERSION = "pictext", "1"


class CheckpointError(ValueError):
    pass


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """Call write(tmp_path), fsync, then rename onto `path`: a reader never sees a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e} (a read-only or missing folder?)") from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved file gets the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(
                f"cannot write {path}: {e.strerror or e} (disk full? read-only?); nothing was replaced"
            ) from e
        raise
    return path


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], kind: str, meta: dict[str, Any]) -> Path:
    """Write tensors and JSON-able `meta` (config, preprocessing, ...) as one self-describing file."""
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
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not a safetensors file: header is not JSON ({e})") from e
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if ends and 8 + n + max(ends) > size:
        raise CheckpointError(f"{path} is truncated: {size} bytes, the header promises {8 + n + max(ends)}")
    return header.get("__metadata__") or {}


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
    meta = {
        k.removeprefix("pictext."): json.loads(v)
        for k, v in raw.items()
        if k.startswith("pictext.") and k not in ("pictext.format", "pictext.version", "pictext.kind")
    }
    try:
        tensors = load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path} could not be read: {e}") from e
    return tensors, meta


def build_checked(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor], path: object) -> Any:
    """`build()`, once the module it makes matches `tensors` name for name and shape for shape.

    It is first built on the meta device, which allocates nothing, so a hostile or corrupt config (a width of
    32768, a negative depth) is refused by name instead of allocating gigabytes or crashing.
    """
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except Exception as e:  # any failure to build the recorded config is the file's fault
        raise CheckpointError(f"{path}: its recorded config does not describe a model that can be built ({e})") from e
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found))[:3] or [k for k in expected if expected[k] != found[k]][:3]
        detail = ", ".join(f"{k}: config {expected.get(k)}, file {found.get(k)}" for k in wrong)
        raise CheckpointError(f"{path}: its tensors do not match its recorded config ({detail})")
    return build()


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
    model = build_checked(lambda: build(config), tensors, path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model, meta


def is_native(path: str | os.PathLike) -> bool:
    try:
        return read_metadata(path).get("pictext.format") == FORMAT
    except CheckpointError:
        return False
