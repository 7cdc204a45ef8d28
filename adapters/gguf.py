r"""GGUF adapter (llama.cpp models): ``.gguf`` files -> weight collection.

Read with the ``gguf`` package (the reference reader/writer of the GGML project; ``pip install
'rmtkit[gguf]'``): the file is memory-mapped by :class:`gguf.GGUFReader`, and each layer is
dequantized only when its ``W`` is read, by the package's own :func:`gguf.quants.dequantize`
(every type it implements: F32, F16, BF16, Q4_0 ... Q8_0, the K-quants Q2_K ... Q6_K, the
I-quants, TQ1_0 / TQ2_0, MXFP4 ...): one dequantized matrix in memory at a time (docs/math.md
§10).

Which tensors are layers:

- GGML stores a matrix with ``ne = [ne0, ne1]``, ``ne0`` the contiguous axis; as numpy it is
  ``(ne1, ne0)`` = ``(out, in)`` for llama.cpp's linear weights, the PyTorch layout: dense as is;
- ``token_embd.weight`` (and ``*_embd.weight``, ``*.position_embd.weight``) ``(vocab, dim)``:
  embedding; ``output.weight`` (the LM head, ``(vocab, dim)``): dense, ``op="output"``;
- 3-D expert stacks (``blk.N.ffn_up_exps.weight``, ``(n_expert, out, in)``): one dense layer
  per expert, ``blk/N/ffn_up_exps/E``;
- 4-D tensors: conv2d ``(out, in, kh, kw)`` as stored;
- 1-D tensors (norms, biases) and integer tensors are not layers.

Node paths are the llama.cpp tensor names without ``.weight`` (``blk.3.attn_q.weight`` ->
``blk/3/attn_q``), so two GGUF files of one model (Q8_0 and Q4_K_M, say) match layer by layer
(``base=``, ``rmtkit compare``). ``source`` is the tensor name, ``quant`` the GGML type
(``"Q4_K"``; ``""`` for F32 / F16 / BF16), ``dtype`` its lower-case name. A tensor of a type the
installed ``gguf`` cannot dequantize is a row with the warning ``unsupported-quantization: <type>``
(its blocks are never read as weights).
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.adapters._common import finish, is_file, require
from rmtkit.collection import LazyArray, sanitize_path, weight_node
from rmtkit.collection.finetune import SKIP_ATTR
from rmtkit.errors import CorruptModelError, MissingDataError, RowWarning, UnsupportedModelError

gguf = require("gguf", extra="gguf", who="rmtkit.adapters.gguf")

__all__ = ["from_gguf", "load"]

#: GGML types stored as plain floats: not quantized (``quant`` is "")
_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")
#: tensor names (without ``.weight``) of the output head
_HEADS = ("output", "lm_head")


def _type_name(qtype) -> str:
    return getattr(qtype, "name", str(qtype))


_SUPPORTED: dict[Any, bool] = {}


def _can_dequantize(qtype) -> bool:
    """Whether the installed ``gguf`` dequantizes ``qtype`` (one zero block tried once)."""
    if qtype not in _SUPPORTED:
        try:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            gguf.quants.dequantize(np.zeros((1, size), np.uint8), qtype)
            _SUPPORTED[qtype] = True
        except (NotImplementedError, KeyError, ValueError, TypeError):
            _SUPPORTED[qtype] = False
    return _SUPPORTED[qtype]


def _is_float_type(qtype) -> bool:
    return _type_name(qtype) in _FLOAT_TYPES


#: rows of a tensor handed to ``gguf.quants.dequantize`` as one of its rows (see below)
_MERGE_ROWS = 16


def _merged_rows(data: np.ndarray) -> np.ndarray:
    """``data`` (rows of whole GGML blocks) with up to :data:`_MERGE_ROWS` consecutive rows
    joined into one. ``gguf.quants.dequantize`` works through a tensor 16 rows at a time (a
    speed heuristic); every row is a whole number of blocks, so joining rows changes neither
    the blocks nor their values (bit-identical, tested) and cuts the per-call overhead 2-3x."""
    rows = data.reshape(-1, data.shape[-1])
    g = max(d for d in range(1, _MERGE_ROWS + 1) if rows.shape[0] % d == 0)
    return rows.reshape(rows.shape[0] // g, rows.shape[1] * g)


def _dequantize(data: np.ndarray, qtype, name: str, where: str) -> np.ndarray:
    """One tensor (or one expert of a stack) as float32, by ``gguf.quants.dequantize``
    (flattened: the caller reshapes it)."""
    try:
        if _type_name(qtype) == "F64":
            return np.asarray(data, np.float64)
        data = np.asarray(data)
        if data.ndim >= 2 and data.size:
            data = _merged_rows(data)
        return np.asarray(gguf.quants.dequantize(data, qtype), np.float32)
    except (ValueError, TypeError, IndexError, OSError) as err:
        raise CorruptModelError(
            f"{where}: tensor {name!r} ({_type_name(qtype)}) cannot be dequantized: {err}"
        ) from err


def _kind(stem: str, ndim: int) -> tuple[str, str]:
    """``(kind, op)`` of a tensor from its name (without ``.weight``) and logical rank."""
    last = stem.rsplit(".", 1)[-1]
    if ndim == 4:
        return "conv2d", "conv"
    if ndim == 3:
        return "conv1d", "conv"
    if last in _HEADS:
        return "dense", "output"
    if last.endswith("embd"):
        return "embedding", "embedding"
    return "dense", "linear"


def _open(path: Path):
    where = str(path)
    if not is_file(path):
        raise MissingDataError(f"{where}: no such GGUF file")
    try:
        return gguf.GGUFReader(str(path), "r")
    except Exception as err:  # the reader raises ValueError, KeyError, ... on bad input
        raise CorruptModelError(
            f"{where}: not a readable GGUF file ({type(err).__name__}: {err})"
        ) from err


def from_gguf(path: str | os.PathLike) -> xr.DataTree:
    """Weight collection of a ``.gguf`` file (module docstring); tensors stay memory-mapped
    until their ``W`` is read.

    Raises
    ------
    MissingDataError, CorruptModelError, UnsupportedModelError
        No such file; not a GGUF file (bad magic, truncated); no analyzable tensor.
    """
    path = Path(path)
    where = str(path)
    reader = _open(path)
    nodes: list[tuple[str, xr.Dataset]] = []
    layer_id = 0
    for t in reader.tensors:  # file order: llama.cpp writes the embedding, blocks, head
        shape = tuple(int(s) for s in reversed([int(d) for d in t.shape]))
        qname = _type_name(t.tensor_type)
        integer = qname.startswith("I") and qname[1:].isdigit()
        if len(shape) < 2 or len(shape) > 4 or 0 in shape or integer:
            continue
        stem = t.name.removesuffix(".weight")
        supported = _is_float_type(t.tensor_type) or _can_dequantize(t.tensor_type)
        quant = "" if _is_float_type(t.tensor_type) else qname
        out_dtype = np.float64 if qname == "F64" else np.float32
        common = {"framework": "gguf", "dtype": qname.lower(), "source": t.name}
        attrs: dict[str, Any] = {"quant": quant}
        if not supported:
            attrs[SKIP_ATTR] = RowWarning.UNSUPPORTED_QUANTIZATION.because(f"GGUF {qname}")
        experts = len(shape) == 3 and "_exps" in stem
        pieces = range(shape[0]) if experts else [None]
        for e in pieces:
            piece_shape = shape[1:] if e is not None else shape
            kind, op = _kind(stem, len(piece_shape))

            def load(t=t, e=e, supported=supported, shape=piece_shape):
                if not supported:  # never read GGML blocks as weights
                    raise UnsupportedModelError(
                        f"{where}: tensor {t.name!r}: the installed gguf package cannot "
                        f"dequantize {_type_name(t.tensor_type)}"
                    )
                data = t.data if e is None else t.data[e]
                w = _dequantize(data, t.tensor_type, t.name, where)
                return w.reshape(shape)

            lazy = LazyArray(load, piece_shape, out_dtype, name=t.name)
            extra = dict(attrs)
            node_path = sanitize_path(stem)
            if e is not None:
                extra["source_slice"] = f"{e}:{e + 1}"
                node_path = f"{node_path}/{e}"
            nodes.append(
                (
                    node_path,
                    weight_node(lazy, kind=kind, op=op, layer_id=layer_id, attrs=extra, **common),
                )
            )
            layer_id += 1
    return finish(nodes, where)


load = from_gguf
