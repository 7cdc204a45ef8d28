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

import json
import os
import struct
from pathlib import Path

import numpy as np
import xarray as xr
from rmtkit.adapters._common import NamedTensor, finish, from_named_tensors, natural_key

from rmtkit.errors import CorruptModelError, MissingDataError, UnsupportedModelError

__all__ = ["from_safetensors", "load", "read_header"]


def _dtypes() -> dict[str, np.dtype]:
    import ml_dtypes

    return {
        "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
        "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
        "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
        "I64": np.dtype(np.int64), "I32": np.dtype(np.int32), "I16": np.dtype(np.int16),
        "I8": np.dtype(np.int8), "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32),
        "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
    }


_MAX_HEADER = 100_000_000


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset where its data begins.

    Raises CorruptModelError (naming the file and, where it applies, the tensor) for a short
    file, an implausible header length, invalid JSON, or tensors outside the file.
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptModelError(
            f"{where}: corrupt safetensors header (invalid JSON: {err})"
        ) from err
    if not isinstance(header, dict):
        raise CorruptModelError(f"{where}: corrupt safetensors header (not a JSON object)")
    start = 8 + n
    dtypes = _dtypes()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = info["dtype"]
            shape = [int(s) for s in info["shape"]]
            lo, hi = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptModelError(
                f"{where}: corrupt safetensors header entry for tensor {name!r}"
            ) from err
        if dtype not in dtypes:
            continue  # an exotic dtype: not a layer
        need = int(np.prod(shape, dtype=np.int64)) * dtypes[dtype].itemsize
        if hi - lo != need or lo < 0 or start + hi > size:
            raise CorruptModelError(
                f"{where}: tensor {name!r} ({dtype}, shape {shape}) has offsets [{lo}, {hi}) "
                f"inconsistent with its size or beyond the end of the file "
                f"({size - start} data bytes)"
            )
    return header, start


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

        def load(path=path, dtype=dtype, shape=shape, offset=offset):
            if 0 in shape:
                return np.zeros(shape, dtype)
            mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            out = np.array(mm, dtype=np.float64 if dtype == np.float64 else np.float32)
            del mm
            return out

        out.append(
            NamedTensor(
                name, shape, np.dtype(np.float64 if dtype == np.float64 else np.float32), load,
                is_float=dtype.kind == "f" or info["dtype"] in ("BF16", "F8_E4M3", "F8_E5M2"),
                source_dtype=dtype.name,
            )
        )
    return out


def _index_files(index: Path) -> list[tuple[str, Path]]:
    where = str(index)
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptModelError(f"{where}: not a safetensors index (no weight_map)") from err
    pairs = []
    for name in sorted(weight_map, key=natural_key):
        shard = index.parent / weight_map[name]
        if not shard.is_file():
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
            return finish(from_named_tensors(tensors, framework="safetensors"), where)
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
        return finish(from_named_tensors(tensors, framework="safetensors"), str(path))
    return finish(from_named_tensors(_tensors(path), framework="safetensors"), where)


load = from_safetensors
