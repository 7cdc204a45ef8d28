"""safetensors adapter: single files, folders of them, sharded Hugging Face folders.

The format (an 8-byte little-endian header length, a JSON header, the raw tensor bytes) is read
directly: headers are parsed and checked when loading (offsets inside the file, sizes matching
shapes and dtypes), tensors are memory-mapped only when their ``W`` is read, and each is read
once. No framework is imported (bfloat16 and float8 come from ``ml_dtypes``, a JAX dependency),
so the ``safetensors`` package is not needed.

Tensors are taken to be in PyTorch layout (as Hugging Face stores them); layer kinds come from
names and shapes (see :mod:`rmtkit.adapters._common`). Order: a single file's tensors sort by
name with numbers compared as numbers (``layers.2`` before ``layers.10``), which is the
definition order of the usual transformer naming; a sharded folder uses its index, sorted the
same way.
"""

import functools
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import xarray as xr

from rmtkit.adapters._common import (
    NamedTensor,
    finish,
    from_named_tensors,
    is_file,
    natural_key,
)
from rmtkit.adapters._packed import quant_config
from rmtkit.errors import CorruptModelError, MissingDataError, UnsupportedModelError

__all__ = ["from_safetensors", "load", "read_header"]


def _dtypes() -> dict[str, np.dtype]:
    import ml_dtypes

    return {
        "F64": np.dtype(np.float64),
        "F32": np.dtype(np.float32),
        "F16": np.dtype(np.float16),
        "BF16": np.dtype(ml_dtypes.bfloat16),
        "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
        "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
        "I64": np.dtype(np.int64),
        "I32": np.dtype(np.int32),
        "I16": np.dtype(np.int16),
        "I8": np.dtype(np.int8),
        "U64": np.dtype(np.uint64),
        "U32": np.dtype(np.uint32),
        "U16": np.dtype(np.uint16),
        "U8": np.dtype(np.uint8),
        "BOOL": np.dtype(np.bool_),
    }


_MAX_HEADER = 100_000_000
#: largest dimension / byte offset a header may state (the format's offsets are u64 < 2**63)
_MAX_INT = 2**63 - 1


def _is_int(x) -> bool:
    """A JSON integer (not a bool, not a float)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _entry(where: str, name: str, info) -> tuple[str, tuple[int, ...], int, int]:
    """``(dtype, shape, begin, end)`` of one header entry, its types and ranges checked."""
    bad = f"{where}: corrupt safetensors header entry for tensor {name!r}"
    if not isinstance(info, dict):
        raise CorruptModelError(f"{bad}: expected an object, got {type(info).__name__}")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise CorruptModelError(f"{bad}: missing {', '.join(missing)}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str):
        raise CorruptModelError(f"{bad}: dtype must be a string, got {dtype!r:.60}")
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= _MAX_INT for d in shape):
        raise CorruptModelError(f"{bad}: shape must be a list of integers >= 0, got {shape!r:.80}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and 0 <= o <= _MAX_INT for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise CorruptModelError(
            f"{bad}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets!r:.80}"
        )
    return dtype, tuple(shape), offsets[0], offsets[1]


def _parse_json(where: str, raw: bytes) -> dict:
    """The header object; any parse failure is a CorruptModelError."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CorruptModelError(
            f"{where}: corrupt safetensors header (invalid JSON: {err})"
        ) from err
    if not isinstance(header, dict):
        raise CorruptModelError(f"{where}: corrupt safetensors header (not a JSON object)")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise CorruptModelError(
            f"{where}: corrupt safetensors header (__metadata__ must be an object, got "
            f"{type(meta).__name__})"
        )
    return header


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset where its data begins.

    Every entry is checked before any tensor is touched: types (``dtype`` a string, ``shape``
    a list of integers >= 0, ``data_offsets`` two integers ``begin <= end``), the byte size
    ``prod(shape) * itemsize == end - begin`` in exact integer arithmetic (so a header that
    claims a 1 TB tensor is refused from the header alone, nothing is allocated), every range
    inside the file, and no two tensors overlapping.

    Raises CorruptModelError (naming the file and, where it applies, the tensor) for a short
    file, an implausible header length, invalid JSON, or a bad entry; MissingDataError when
    the file does not exist.
    """
    path = Path(path)
    where = str(path)
    if not is_file(path):
        raise MissingDataError(f"{where}: no such safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptModelError(f"{where}: too short for a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise CorruptModelError(
                f"{where}: corrupt safetensors header (declares {n} header bytes, file has {size})"
            )
        raw = f.read(n)
    header = _parse_json(where, raw)
    start = 8 + n
    dtypes = _dtypes()
    ranges = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, lo, hi = _entry(where, name, info)
        if dtype in dtypes:  # an exotic dtype is not a layer; its range is still checked
            need = math.prod(shape) * dtypes[dtype].itemsize
            if hi - lo != need:
                raise CorruptModelError(
                    f"{where}: tensor {name!r} ({dtype}, shape {list(shape)}) needs {need} "
                    f"bytes, its data_offsets [{lo}, {hi}) hold {hi - lo}"
                )
        if start + hi > size:
            raise CorruptModelError(
                f"{where}: tensor {name!r} has data_offsets [{lo}, {hi}) beyond the end of the "
                f"file ({size - start} data bytes)"
            )
        ranges.append((lo, hi, name))
    _check_overlaps(where, ranges)
    return header, start


def _check_overlaps(where: str, ranges: list[tuple[int, int, str]]) -> None:
    """Raise when two tensors' byte ranges overlap (empty tensors overlap nothing)."""
    end, last = 0, None
    for lo, hi, name in sorted(r for r in ranges if r[1] > r[0]):
        if lo < end:
            raise CorruptModelError(
                f"{where}: tensors {last!r} and {name!r} overlap (data_offsets [{lo}, {hi}) "
                f"start before {end})"
            )
        end, last = hi, name


def _read_tensor(
    path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...], offset: int
) -> np.ndarray:
    """One tensor, memory-mapped and copied out (float32, or float64 for F64).

    The file was checked when loading; if it changed or vanished since, the error is typed.
    """
    out_dtype = np.float64 if dtype == np.float64 else np.float32
    if 0 in shape:
        return np.zeros(shape, out_dtype)
    try:
        mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        out = np.array(mm, dtype=out_dtype)
    except FileNotFoundError as err:
        raise MissingDataError(f"{path}: file vanished before tensor {name!r} was read") from err
    except (OSError, ValueError) as err:
        raise CorruptModelError(
            f"{path}: tensor {name!r} ({dtype}, shape {list(shape)}) cannot be read at byte "
            f"{offset}: {err}"
        ) from err
    del mm
    return out


def _read_raw(path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...], offset: int):
    """One tensor in its stored dtype (packed quantized layers read codes, scales, indices)."""
    if 0 in shape:
        return np.zeros(shape, dtype)
    try:
        mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        out = np.array(mm)
    except FileNotFoundError as err:
        raise MissingDataError(f"{path}: file vanished before tensor {name!r} was read") from err
    except (OSError, ValueError) as err:
        raise CorruptModelError(f"{path}: tensor {name!r} cannot be read: {err}") from err
    del mm
    return out


def _tensors(path: Path) -> list[NamedTensor]:
    header, start = read_header(path)
    dtypes = _dtypes()
    out = []
    for name in sorted((k for k in header if k != "__metadata__"), key=natural_key):
        info = header[name]
        if info["dtype"] not in dtypes:
            continue
        dtype = dtypes[info["dtype"]]
        shape = tuple(int(s) for s in info["shape"])
        offset = start + int(info["data_offsets"][0])

        def load(path=path, name=name, dtype=dtype, shape=shape, offset=offset):
            return _read_tensor(path, name, dtype, shape, offset)

        out.append(
            NamedTensor(
                name,
                shape,
                np.dtype(np.float64 if dtype == np.float64 else np.float32),
                load,
                is_float=dtype.kind == "f" or info["dtype"] in ("BF16", "F8_E4M3", "F8_E5M2"),
                source_dtype=dtype.name,
                raw=functools.partial(_read_raw, path, name, dtype, shape, offset),
            )
        )
    return out


def _index_files(index: Path) -> list[tuple[str, Path]]:
    where = str(index)
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise CorruptModelError(f"{where}: not a safetensors index (no weight_map)") from err
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) and v for v in weight_map.values()
    ):
        raise CorruptModelError(f"{where}: weight_map must map tensor names to shard file names")
    pairs = []
    for name in sorted(weight_map, key=natural_key):
        shard = index.parent / weight_map[name]
        if Path(weight_map[name]).is_absolute() or ".." in Path(weight_map[name]).parts:
            raise CorruptModelError(
                f"{where}: shard {weight_map[name]!r} of tensor {name!r} is outside the folder"
            )
        if not is_file(shard):
            raise MissingDataError(
                f"{where}: shard {str(shard)!r} of tensor {name!r} does not exist"
            )
        pairs.append((name, shard))
    return pairs


def from_safetensors(path: str | os.PathLike) -> xr.DataTree:
    """Weight collection of a ``.safetensors`` file, an index ``.json``, or a folder of them.

    A folder with a ``*.safetensors.index.json`` is read through the index; otherwise all its
    ``*.safetensors`` files are read, in name order. Every header is checked before the
    collection is returned; tensors are read lazily.
    """
    path = Path(path)
    where = str(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        if indexes:
            path = indexes[0]
        else:
            files = sorted(path.glob("*.safetensors"), key=lambda p: natural_key(p.name))
            if not files:
                raise UnsupportedModelError(f"{where}: folder holds no *.safetensors file")
            tensors = [t for f in files for t in _tensors(f)]
            return finish(_nodes(tensors, path, where), where)
    if not path.exists():
        raise MissingDataError(f"{where}: no such file or folder")
    if path.name.endswith(".json"):
        pairs = _index_files(path)
        by_shard: dict[Path, dict[str, NamedTensor]] = {}
        for shard in dict.fromkeys(s for _, s in pairs):
            by_shard[shard] = {t.name: t for t in _tensors(shard)}
        tensors = []
        for name, shard in pairs:
            t = by_shard[shard].get(name)
            if t is None:
                if name in read_header(shard)[0]:
                    continue  # an exotic dtype
                raise CorruptModelError(
                    f"{path}: tensor {name!r} is mapped to {str(shard)!r}, which lacks it"
                )
            tensors.append(t)
        return finish(_nodes(tensors, path.parent, str(path)), str(path))
    return finish(_nodes(_tensors(path), path.parent, where), where)


def _nodes(tensors: list[NamedTensor], folder: Path, where: str):
    """The name rule over ``tensors``, with the folder's quantization config (packed layers)."""
    return from_named_tensors(
        tensors, framework="safetensors", config=quant_config(folder), where=where
    )


load = from_safetensors
