"""Read tensors from checkpoint files into NumPy without running pickled code and without torch.

- safetensors: the `safetensors` API (NumPy), real number dtypes only.
- PyTorch zip checkpoints (`torch.save` since 1.6: `.pth`, `pytorch_model.bin`, mmseg `.pth`): a
  restricted unpickler that rebuilds tensors from the archive's raw storages. Only tensor
  rebuilding and plain containers are honoured; any other global in the pickle becomes an inert
  placeholder (mmseg metadata, optimizer extras), so no pickled code ever runs. A tensor stored
  in a form not rebuilt here (quantized, sparse, ...) is an error rather than a placeholder: a
  weight dropped without a word would train from its initial value.

The file is untrusted: the pickle's tensor views, nesting and names are checked before anything is
read or allocated by them, so that a forged file is a one-line error naming it (and the tensor),
not a crash, an out-of-bounds read or an allocation that its few bytes describe.
"""

import collections
import dataclasses
import math
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator

import ml_dtypes
import numpy as np

from mofgseg_jax.errors import InputError


HF_FILES = ("model.safetensors", "pytorch_model.bin")  # looked up when a folder is given


class CheckpointError(InputError):
    """A checkpoint file that cannot be read or converted (message names the file)."""


def shown(name: str, limit: int = 80) -> str:
    """A tensor name as a message shows it: the file chooses names, of any length."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# The same real number types in safetensors (complex ones would lose a part in float32; NumPy has no
# float8 or float4).
_SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}


_MAX_DIMS = 64  # NumPy's limit
_MAX_ENTRIES = 1_000_000  # dict entries walked in a checkpoint: a B5 state dict has about 1,000
_MAX_NAME = 256  # characters in a tensor's dotted name: SegFormer's have under 80
# Tensors viewing the same storage elements (tied weights saved under two names): at most this many
# times the elements stored.
_MAX_REPEAT = 2


class _Storage:
    """One storage of the archive, its elements as a flat array. Only `persistent_load` makes these:
    a tensor whose storage is anything else (another tensor, a forged object) is refused."""

    def __init__(self, data: np.ndarray):
        self.data = data


@dataclasses.dataclass(eq=False)
class _TensorRecord:
    """A pickled tensor as torch records it; made an array (`_arrays`) only once its name is known,
    so that a bad record is refused by name."""
    storage: Any
    offset: Any
    size: Any
    stride: Any


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES.get(name)  # None: not read here (complex, quantized, ...)


class _Opaque:
    """Stands in for any non-tensor object in the pickle; accepts and ignores everything."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()


def _rebuild_tensor(storage, offset, size, stride, *unused) -> _TensorRecord:
    return _TensorRecord(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type(func, new_type, args, state):
    """A tensor saved with Python attributes (torch's `_rebuild_from_type_v2`): the tensor alone."""
    return func(*args)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self._path = path
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return _rebuild_from_type
        if module in ("torch._utils", "torch._tensor") and name.startswith("_rebuild"):
            raise CheckpointError(f"{self._path}: holds a tensor stored as {module}.{name}, which this "
                                  "reader does not rebuild; re-save plain tensors or convert to safetensors")
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        return _Opaque  # never import: anything else is inert

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage record {kind!r}")
        if storage_type.dtype is None:
            raise CheckpointError(f"{self._path}: holds tensors of type torch.{storage_type.name}, which this "
                                  "reader does not read (real floating-point, integer and bool tensors only)")
        if key not in self._storages:
            entry = f"{self._prefix}data/{key}"
            try:
                info = self._archive.getinfo(entry)
            except KeyError:  # zipfile's word for a missing entry
                raise CheckpointError(f"{self._path}: the archive lacks {entry}, the data of a tensor; "
                                      "the file is incomplete") from None
            # torch.save stores its records uncompressed; a compressed one would be inflated whole
            # before its size is known (a few bytes can inflate to any size).
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"{self._path}: {entry} is compressed, which torch.save never does; "
                                      "not a PyTorch checkpoint as saved")
            raw = self._archive.read(info)
            self._storages[key] = _Storage(np.frombuffer(raw, dtype=storage_type.dtype, count=numel))
        return self._storages[key]


def _read_torch_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl")), None)
        if pkl is None:  # torch.save puts every record in one folder
            found = ("data.pkl at its top level, not in a folder as torch.save writes it" if "data.pkl" in names
                     else "no data.pkl")
            raise CheckpointError(f"{path}: zip archive with {found}; not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian PyTorch checkpoints are not supported")
        with archive.open(pkl) as f:
            return _RestrictedUnpickler(f, archive, prefix, path).load()


def _flatten_tensors(obj: Any, path: Path) -> dict[str, _TensorRecord]:
    """{dotted name: tensor} of the dicts nested in obj.

    A pickle can put one dict under many keys (its memo): a few bytes can describe a dict inside
    itself, exponentially many paths to one dict, or one long key repeated along a path. So the walk
    is iterative, refuses a cycle, and stops past _MAX_ENTRIES entries or at a name (of a tensor or
    dict) past _MAX_NAME characters; a tensor or dict under a key other than a name is refused.
    """
    out: dict[str, _TensorRecord] = {}
    walking: list[tuple[int, str, Iterator]] = []  # (id, dotted name + '.', items left) of each dict entered
    open_ids: set[int] = set()  # ids of the dicts in `walking`: one met again is a cycle
    entries = 0

    def enter(node: dict, prefix: str) -> None:
        nonlocal entries
        if id(node) in open_ids:
            raise CheckpointError(f"{path}: the dict {prefix[:-1]} contains itself (a cycle); not a state dict")
        entries += len(node)
        if entries > _MAX_ENTRIES:
            raise CheckpointError(f"{path}: more than {_MAX_ENTRIES} entries in its nested dicts (one dict "
                                  "shared under many keys?); not a state dict")
        open_ids.add(id(node))
        walking.append((id(node), prefix, iter(node.items())))

    if isinstance(obj, dict):
        enter(obj, "")
    while walking:
        node_id, prefix, items = walking[-1]
        entry = next(items, None)
        if entry is None:  # this dict is done
            open_ids.discard(node_id)
            walking.pop()
            continue
        key, value = entry
        if not isinstance(value, (dict, _TensorRecord)):
            continue  # metadata
        if not (isinstance(key, str) or isinstance(key, int) and key.bit_length() <= 64):
            raise CheckpointError(f"{path}: a {type(key).__name__} key in {prefix[:-1] or 'the top-level dict'} "
                                  "holds tensors or dicts; a state dict names them with strings")
        key = str(key)
        if len(prefix) + len(key) > _MAX_NAME:
            raise CheckpointError(f"{path}: a key path longer than {_MAX_NAME} characters "
                                  f"({shown(prefix + key)}); not a state dict")
        if isinstance(value, dict):
            enter(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def _array(name: str, record: _TensorRecord, path: Path) -> np.ndarray:
    """A copy of the tensor's view of its storage, refused (naming the tensor) unless the view lies
    inside a storage of the archive and reads each of its elements at most once: as_strided trusts
    its arguments and would read any memory, and a view that repeats elements (stride 0) turns a
    few stored bytes into any number of them. Weights need neither."""
    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: tensor {name} {what}")

    if not isinstance(record.storage, _Storage):
        raise refuse("is not stored in a storage of the archive (a tensor built on another tensor or object)")
    data, offset, size, stride = record.storage.data, record.offset, record.size, record.stride
    if not (isinstance(offset, int) and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) == len(stride) <= _MAX_DIMS and all(isinstance(n, int) for n in (*size, *stride))
            and min(size, default=0) >= 0):
        raise refuse("has a malformed view record (offset, size or stride)")
    size, stride = tuple(size), tuple(stride)
    if 0 in size:  # nothing to read
        try:
            return np.zeros(size, data.dtype)
        except ValueError:
            raise refuse(f"has an impossible size {size}") from None
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or min(stride, default=0) < 0 or last >= data.size:
        raise refuse(f"of size {size} runs past its storage")
    if math.prod(size) > last - offset + 1:
        raise refuse(f"of size {size} reads elements of its storage more than once (stride {stride})")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=tuple(s * data.itemsize for s in stride))
    return np.array(view)  # contiguous copy


def _arrays(records: dict[str, _TensorRecord], path: Path) -> dict[str, np.ndarray]:
    """{name: array} of the named tensor records. Many names may view the same stored elements, each
    view copied: they may hold at most _MAX_REPEAT times the elements of the storages they view,
    else a small file would fill memory with copies."""
    stored = sum({id(r.storage): r.storage.data.size for r in records.values()
                  if isinstance(r.storage, _Storage)}.values())
    out: dict[str, np.ndarray] = {}
    held = 0
    for name, record in records.items():
        out[name] = _array(name, record, path)
        held += out[name].size
        if held > _MAX_REPEAT * stored:
            raise CheckpointError(f"{path}: its tensors hold more than {_MAX_REPEAT} times the {stored} elements "
                                  "of the storages they view (many tensors repeating the same data)")
    return out


def _state_dict_of(obj: Any) -> Any:
    """The state dict inside common wrappers ({'state_dict': ...}, {'model': ...}) or obj itself."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "module"):
            if isinstance(obj.get(key), dict):
                return obj[key]
    return obj


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, refused (naming one) if a dtype is not in _SAFETENSORS_DTYPES."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        for name in f.keys():
            dtype = f.get_slice(name).get_dtype()
            if dtype not in _SAFETENSORS_DTYPES:
                raise CheckpointError(f"{path}: tensor {shown(name)} has dtype {dtype}, which this reader does "
                                      "not read (real floating-point, integer and bool tensors only)")
        return {name: f.get_tensor(name) for name in f.keys()}


def _looks_like_safetensors(head: bytes, file_size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= file_size and head[8:9] == b"{"


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Flat {name: array} from a safetensors or PyTorch zip checkpoint; CheckpointError otherwise."""
    path = Path(path)
    if path.is_dir():  # a Hugging Face `save_pretrained` folder
        found = [path / n for n in HF_FILES if (path / n).is_file()]
        if not found:
            raise CheckpointError(f"{path}: folder without {' or '.join(HF_FILES)}")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        if head[:4] == b"PK\x03\x04":
            records = _flatten_tensors(_state_dict_of(_read_torch_zip(path)), path)
            tensors = _arrays(records, path)
        elif _looks_like_safetensors(head, size):
            tensors = _read_safetensors(path)
        elif head[:2] == b"\x80\x02":
            raise CheckpointError(f"{path}: legacy (pre-1.6) PyTorch format; re-save it with torch.save in a "
                                  "current PyTorch, or convert it to safetensors")
        else:
            raise CheckpointError(f"{path}: not a safetensors file or a PyTorch zip checkpoint")
    except CheckpointError:
        raise
    except MemoryError:  # pickle asked for an object larger than RAM; its message is empty
        raise CheckpointError(f"{path}: needs more memory than this machine has to read (a damaged or forged "
                              "file, or a checkpoint larger than RAM)") from None
    except Exception as e:  # zipfile, pickle, safetensors and OS errors alike: one line naming the file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(e).__name__}: {first})") from None
    if not tensors:
        raise CheckpointError(f"{path}: contains no tensors")
    return tensors
