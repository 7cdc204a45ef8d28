"""Framework-free helpers shared by the adapters.

The main one is :func:`from_named_tensors`, the *name rule* that turns a flat list of stored
tensors in PyTorch layout (a state dict, a safetensors file or folder) into layer nodes when
there is no module to ask:

- only floating tensors of rank 2, 3 or 4 are layers (biases, norms, buffers, integer ids are
  not); rank-3/4 tensors whose first two axes are both 1 (class tokens) are not either;
- ``...in_proj_weight`` of shape ``(3E, E)`` (``torch.nn.MultiheadAttention``) is split into
  three dense layers ``.../q``, ``.../k``, ``.../v``;
- ``...c_attn.weight``, ``...c_proj.weight``, ``...c_fc.weight`` of rank 2 are Hugging Face
  GPT-2 ``Conv1D`` weights, stored ``(in, out)``: transposed;
- a rank-2 tensor with a path component containing ``emb`` or equal to ``wte``, ``wpe``,
  ``shared`` is an embedding ``(vocab, dim)``; other rank-2 tensors are dense ``(out, in)``;
- rank 3 is conv1d ``(out, in/groups, k)``, rank 4 conv2d ``(out, in/groups, kh, kw)``, as stored
  (a ConvTranspose weight cannot be told from its name and is taken as stored);
- the node path is the tensor name without its ``.weight`` suffix, ``.`` replaced by ``/``;
- packed quantized layers (GPTQ / AWQ ``qweight``, bitsandbytes, ``weight_scale`` int8 / FP8)
  are read as their effective weight or flagged ``unsupported-quantization``, never as codes
  (:mod:`rmtkit.adapters._packed`).
"""

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.adapters import _packed
from rmtkit.collection import LazyArray, build_tree, sanitize_path, weight_node
from rmtkit.collection.finetune import SKIP_ATTR
from rmtkit.errors import RowWarning, UnsupportedModelError

__all__ = ["NamedTensor", "from_named_tensors", "finish", "is_file", "natural_key", "require"]


def require(module: str, *, extra: str, who: str) -> Any:
    """Import ``module`` or raise ModuleNotFoundError with the pip line for ``extra``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"{who} needs the '{module}' package: pip install 'rmtkit[{extra}]'"
        ) from err


def is_file(path) -> bool:
    """``Path(path).is_file()``, False (not an OSError) for a name the OS cannot even look up
    (too long, invalid characters): such a file does not exist."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def natural_key(name: str) -> tuple:
    """Sort key that orders ``layers.2`` before ``layers.10``."""
    return tuple(
        (0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name)
    )


def finish(nodes: list[tuple[str, xr.Dataset]], what: str) -> xr.DataTree:
    """Build the tree, or raise UnsupportedModelError when no layer was found in ``what``."""
    if not nodes:
        raise UnsupportedModelError(
            f"{what}: no analyzable layer found (expected dense, convolution or embedding "
            "weights of rank 2-4)"
        )
    return build_tree(nodes)


@dataclass
class NamedTensor:
    """A stored tensor known by name, shape and dtype; ``load()`` reads it (numpy)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any  # numpy dtype, or a string for types numpy lacks
    load: Callable[[], np.ndarray]
    is_float: bool = True
    source_dtype: str | None = None  # recorded in attrs["dtype"]; default: `dtype`
    raw: Callable[[], np.ndarray] | None = None  # the stored values in their own dtype


_GPT2_CONV1D = re.compile(r"(^|\.)(c_attn|c_proj|c_fc)\.weight$")
_SKIP_SUFFIX = ("bias", "running_mean", "running_var", "num_batches_tracked", "position_ids")


def _is_embedding(name: str) -> bool:
    parts = name.split(".")[:-1] if name.endswith("weight") else name.split(".")
    return any("emb" in p.lower() or p in ("wte", "wpe", "shared") for p in parts)


def _strip_weight(name: str) -> str:
    for suffix in (".weight", "_weight", ".kernel"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _is_int8_weight(t: NamedTensor, shape: tuple[int, ...]) -> bool:
    """An 8-bit-or-narrower integer ``.weight`` matrix: quantized codes, not a layer's values."""
    return (
        not t.is_float
        and len(shape) == 2
        and t.name.endswith(".weight")
        and str(t.source_dtype) in ("int8", "uint8", "int4", "uint4")
    )


def _packed_node(pk, framework: str, layer_id: int, dtype: str) -> tuple[str, xr.Dataset]:
    """The node of a packed layer (:mod:`rmtkit.adapters._packed`); flagged ones never load."""
    attrs: dict[str, Any] = {"quant": pk.quant}
    if pk.skip:
        attrs[SKIP_ATTR] = pk.skip

    def load(pk=pk):
        if pk.load is None:  # never read packed codes as weights
            raise UnsupportedModelError(f"layer {pk.prefix!r}: {pk.skip}")
        return pk.load()

    node = weight_node(
        LazyArray(load, pk.shape, np.float32, name=pk.anchor),
        kind="dense",
        source=pk.anchor,
        framework=framework,
        op=pk.op,
        layer_id=layer_id,
        dtype=dtype,
        attrs=attrs,
    )
    return sanitize_path(pk.prefix), node


def from_named_tensors(
    tensors: Iterable[NamedTensor],
    *,
    framework: str,
    start_id: int = 0,
    config: dict | None = None,
    where: str = "",
) -> list[tuple[str, xr.Dataset]]:
    """Apply the name rule (module docstring) to stored tensors in PyTorch layout; packed
    quantized layers (GPTQ, AWQ, bitsandbytes, scaled int8 / FP8: :mod:`rmtkit.adapters._packed`)
    become one dequantized (or flagged) dense layer each, in the place of their first tensor."""
    tensors = list(tensors)
    packed = _packed.packed_layers([t for t in tensors if t.raw is not None], config or {}, where)
    consumed = set().union(*(pk.consumed for pk in packed.values())) if packed else set()
    nodes: list[tuple[str, xr.Dataset]] = []
    layer_id = start_id
    for t in tensors:
        if t.name in packed:
            nodes.append(_packed_node(packed[t.name], framework, layer_id, str(t.source_dtype)))
            layer_id += 1
            continue
        if t.name in consumed:
            continue
        shape = tuple(int(s) for s in t.shape)
        if _is_int8_weight(t, shape):  # integer codes with no scale rmtkit knows of
            skip = RowWarning.UNSUPPORTED_QUANTIZATION.because(
                f"{t.source_dtype} weight without scales"
            )
            pk = _packed.Packed(_strip_weight(t.name), t.name, set(), shape, "", None, skip)
            nodes.append(_packed_node(pk, framework, layer_id, str(t.source_dtype)))
            layer_id += 1
            continue
        if not t.is_float or not 2 <= len(shape) <= 4 or 0 in shape:
            continue
        if t.name.rsplit(".", 1)[-1] in _SKIP_SUFFIX:
            continue
        if len(shape) > 2 and shape[0] == 1 and shape[1] == 1:
            continue
        lazy = LazyArray(t.load, shape, t.dtype if isinstance(t.dtype, np.dtype) else np.float32)
        base = sanitize_path(_strip_weight(t.name))
        common = {"framework": framework, "dtype": t.source_dtype or t.dtype}
        if t.name.endswith("in_proj_weight") and len(shape) == 2 and shape[0] == 3 * shape[1]:
            e = shape[1]
            for i, part in enumerate("qkv"):
                rows = slice(i * e, (i + 1) * e)
                piece = LazyArray(lambda ld=t.load, r=rows: np.asarray(ld())[r], (e, e), lazy.dtype)
                nodes.append(
                    (
                        f"{base.removesuffix('/in_proj')}/{part}",
                        weight_node(
                            piece,
                            kind="dense",
                            source=t.name,
                            op="MultiheadAttention",
                            layer_id=layer_id,
                            attrs={"source_slice": f"{rows.start}:{rows.stop}"},
                            **common,
                        ),
                    )
                )
                layer_id += 1
            continue
        if len(shape) == 2 and _GPT2_CONV1D.search(t.name):
            node = weight_node(
                lazy,
                kind="dense",
                source=t.name,
                op="Conv1D",
                layer_id=layer_id,
                perm=(1, 0),
                **common,
            )
        elif len(shape) == 2:
            kind = "embedding" if _is_embedding(t.name) else "dense"
            op = "Embedding" if kind == "embedding" else "Linear"
            node = weight_node(lazy, kind=kind, source=t.name, op=op, layer_id=layer_id, **common)
        else:
            kind = "conv1d" if len(shape) == 3 else "conv2d"
            op = "Conv1d" if kind == "conv1d" else "Conv2d"
            node = weight_node(lazy, kind=kind, source=t.name, op=op, layer_id=layer_id, **common)
        nodes.append((base, node))
        layer_id += 1
    return nodes
