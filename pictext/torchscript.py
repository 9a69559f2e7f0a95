"""Read tensors out of TorchScript archives (OpenAI's `.pt` CLIP files) and `torch.save` pickles as data.

`torch.jit.load` runs the archive's code and `pickle` can call any global, so a
hostile file could execute anything. These readers unpickle `data.pkl` with an
allow-list: tensors are rebuilt from the zip's raw storages, script modules
become plain attribute bags, and (for `read_pickle_data`) every other class a
pickle names becomes an inert placeholder that keeps its state. No code runs.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for a `__torch__.*` class: keeps the pickled state, has no behaviour."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: Any) -> torch.Tensor:
    """A view of `storage`, which must hold it: never more elements than the storage has (stride 0 would make a
    4 GiB tensor of one float, and cloning or casting it would allocate that)."""
    view = torch.as_strided(storage, size, stride, offset)
    if view.numel() > storage.numel():
        raise pickle.UnpicklingError(f"a tensor of shape {tuple(size)} over a storage of {storage.numel()} elements")
    return view


# What reading a hostile archive can raise; each becomes one CheckpointError naming the file
MALFORMED = (pickle.UnpicklingError, KeyError, ValueError, TypeError, AttributeError, IndexError, EOFError,
             RuntimeError, RecursionError, zipfile.BadZipFile, NotImplementedError)  # fmt: skip


class _SafeUnpickler(pickle.Unpickler):
    """Tensors rebuilt from the zip's storages, each checked against the element count the pickle records, and
    all of them together against the archive's size: a few-MiB zip of compressed zeros cannot make pictext
    decompress gigabytes (torch.save stores storages uncompressed, so a real archive is never refused)."""

    def __init__(self, archive: zipfile.ZipFile, pkl: str, size: int) -> None:
        self.archive, self.prefix, self.budget = archive, pkl[: -len("data.pkl")], size + (1 << 20)
        self.storages: dict[str, torch.Tensor] = {}  # by key: tensors that share a storage (tied weights) share it
        super().__init__(io.BytesIO(self._read(pkl)))

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _ScriptObject
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only tensors and module state are read")

    def _read(self, name: str, expected: int | None = None) -> bytes:
        info = self.archive.getinfo(name)
        if expected is not None and info.file_size != expected:
            raise pickle.UnpicklingError(f"{name} holds {info.file_size} bytes, its record says {expected}")
        self.budget -= info.file_size
        if self.budget < 0:
            raise pickle.UnpicklingError(f"{name} would unpack to more than the archive's own size")
        return self.archive.read(info)

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not isinstance(pid, tuple) or len(pid) != 5:
            raise pickle.UnpicklingError(f"unsupported storage record {pid!r:.80}")
        kind, dtype_name, key, _location, numel = pid
        if kind != "storage" or dtype_name not in _STORAGE_DTYPES or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"unsupported storage record {pid!r:.80}")
        dtype = _STORAGE_DTYPES[dtype_name]
        if key not in self.storages:
            raw = bytearray(self._read(f"{self.prefix}data/{key}", numel * dtype.itemsize))
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if self.storages[key].dtype != dtype or self.storages[key].numel() != numel:
            raise pickle.UnpicklingError(f"storage {key!r:.40} is recorded with two types or sizes")
        return self.storages[key]


def is_torchscript(path: str | Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/__torch__/" in n for n in z.namelist()[:2000])


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All parameters and buffers of a TorchScript module archive, by dotted name."""
    root = _unpickle(path, _SafeUnpickler, "TorchScript archive")
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, prefix: str) -> None:
        state = getattr(obj, "state", None)
        if not isinstance(state, dict):
            return
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[prefix + name] = value.clone()
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{name}.")

    try:
        walk(root, "")
    except RecursionError as e:
        raise _error(path, "TorchScript archive", e) from e
    return tensors


class _Inert:
    """Stands in for any class or function the pickle names: keeps what it was given, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _OrderedDict(dict):
    """`collections.OrderedDict` as a plain dict; the `_metadata` a state dict pickles with it is dropped."""

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


class _DataUnpickler(_SafeUnpickler):
    """TorchScript's allow-list unpickler, with parameters and ordered dicts read too, and every other class or
    function the pickle names turned into an inert placeholder instead of an error."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_v2")):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return _OrderedDict
        try:
            return super().find_class(module, name)
        except pickle.UnpicklingError:
            return type(f"{module}.{name}", (_Inert,), {})  # a named placeholder, never the real thing


def read_pickle_data(path: str | os.PathLike) -> Any:
    """The object a `torch.save` zip archive holds (a checkpoint dict, or a whole pickled module), with tensors
    real and every other class an inert placeholder: nothing the file names is imported or run."""
    return _unpickle(path, _DataUnpickler, "PyTorch checkpoint")


def _unpickle(path: str | os.PathLike, unpickler: type[_SafeUnpickler], what: str) -> Any:
    from pictext.checkpoint import CheckpointError

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch zip archive (what torch.save writes), so not a {what}")
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise CheckpointError(f"{path}: no data.pkl inside, so it is not a {what}")
            return unpickler(z, pkl, path.stat().st_size).load()
    except MALFORMED as e:
        raise _error(path, what, e) from e


def _error(path: str | os.PathLike, what: str, e: BaseException) -> Exception:
    from pictext.checkpoint import CheckpointError

    return CheckpointError(f"{path}: unreadable {what} ({type(e).__name__}: {str(e)[:200]})")
