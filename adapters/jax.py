"""JAX / Flax / Haiku / plain-dict adapter: pytrees of parameter arrays -> weight collection.

Layout rule (by the name of the leaf and its parent; paths join the keys with ``/``, a leading
Flax ``params`` collection is dropped):

- ``kernel`` / ``w``, 2-D: dense, stored ``(in, out)`` (Flax, Haiku, Keras): transposed;
- ``kernel`` / ``w``, 3-D, under ``query``/``key``/``value``: dense, Flax attention
  ``(in, heads, head_dim)`` -> ``(heads*head_dim, in)``;
- ``kernel`` / ``w``, 3-D, under ``out``: dense, ``(heads, head_dim, out)`` ->
  ``(out, heads*head_dim)``;
- ``kernel`` / ``w``, 3-D otherwise: conv1d, ``(k, in/groups, out)`` -> ``(out, in/groups, k)``;
- ``kernel`` / ``w``, 4-D: conv2d, ``(kh, kw, in/groups, out)`` -> ``(out, in/groups, kh, kw)``;
- ``embedding`` / ``embeddings``, 2-D: embedding ``(vocab, dim)`` as is;
- anything else: PyTorch layout, by name and shape, the rule of :mod:`rmtkit.adapters._common`
  (``weight`` 2-D ``(out, in)`` as is; ``bias``, 1-D leaves skipped; ...).

Order (``layer_id``): insertion order of dicts (Flax and Haiku create parameters in call
order), list order for sequences; other registered pytree nodes are flattened by
``jax.tree_util`` in its order.
"""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import xarray as xr

from rmtkit.adapters._common import NamedTensor, finish, from_named_tensors, is_file
from rmtkit.collection import LazyArray, sanitize_path, weight_node
from rmtkit.errors import UnsupportedModelError

__all__ = ["from_pytree", "load"]

_IN_FIRST = ("kernel", "w")
_EMBED = ("embedding", "embeddings")


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flatten(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if _is_array(tree):
        return [(prefix, tree)]
    if isinstance(tree, Mapping):
        return [kv for k, v in tree.items() for kv in _flatten(v, prefix + (str(k),))]
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return [kv for i, v in enumerate(tree) for kv in _flatten(v, prefix + (str(i),))]
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if len(leaves) == 1 and leaves[0][1] is tree:
        return []  # an opaque leaf (a string, a number, None...)
    return [
        (prefix + tuple(_key_name(k) for k in path), leaf)
        for path, leaf in leaves
        if _is_array(leaf)
    ]


def _loader(x: Any):
    def load():
        a = np.asarray(x)
        return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)

    return load


def from_pytree(params: Any, *, framework: str = "jax", name: str = "pytree") -> xr.DataTree:
    """Weight collection of a pytree of parameter arrays (see the module docstring).

    Parameters
    ----------
    params : pytree
        Nested dicts/lists (Flax ``variables``/``params``, Haiku params, ``{name: array}``) of
        arrays (``jax.Array``, numpy, anything with ``shape``/``dtype``).
    framework : str, default: "jax"
        Recorded in the ``framework`` attribute.
    """
    leaves = _flatten(params)
    if leaves and all(p and p[0] == "params" for p, _ in leaves):
        leaves = [(p[1:], x) for p, x in leaves]
    nodes: list = []
    pending: list[NamedTensor] = []

    def flush():
        nonlocal pending
        if pending:
            nodes.extend(from_named_tensors(pending, framework=framework, start_id=len(nodes)))
            pending = []

    for path, x in leaves:
        shape = tuple(int(s) for s in x.shape)
        dtype = np.dtype(x.dtype) if not isinstance(x.dtype, str) else np.dtype(np.float32)
        is_float = np.issubdtype(dtype, np.floating) or dtype.name in ("bfloat16",)
        leaf = path[-1] if path else ""
        parent = path[-2] if len(path) > 1 else ""
        out_dtype = np.dtype(np.float64 if dtype == np.float64 else np.float32)
        lazy = LazyArray(_loader(x), shape, out_dtype)
        common = {"framework": framework, "dtype": dtype.name, "source": "/".join(path)}
        base = sanitize_path("/".join(path[:-1]), default=leaf or "layer")
        if is_float and leaf in _IN_FIRST and 2 <= len(shape) <= 4 and 0 not in shape:
            flush()
            if len(shape) == 3 and parent in ("query", "key", "value"):
                kw = {
                    "kind": "dense",
                    "perm": (1, 2, 0),
                    "shape": (shape[1] * shape[2], shape[0]),
                    "op": "DenseGeneral",
                }
            elif len(shape) == 3 and parent == "out":
                kw = {
                    "kind": "dense",
                    "perm": (2, 0, 1),
                    "shape": (shape[2], shape[0] * shape[1]),
                    "op": "DenseGeneral",
                }
            elif len(shape) == 2:
                kw = {"kind": "dense", "perm": (1, 0), "op": "Dense"}
            elif len(shape) == 3:
                kw = {"kind": "conv1d", "perm": (2, 1, 0), "op": "Conv"}
            else:
                kw = {"kind": "conv2d", "perm": (3, 2, 0, 1), "op": "Conv"}
            nodes.append((base, weight_node(lazy, layer_id=len(nodes), **kw, **common)))
        elif is_float and leaf in _EMBED and len(shape) == 2 and 0 not in shape:
            flush()
            nodes.append(
                (
                    base,
                    weight_node(lazy, kind="embedding", op="Embed", layer_id=len(nodes), **common),
                )
            )
        else:
            pending.append(
                NamedTensor(
                    ".".join(path),
                    shape,
                    out_dtype,
                    _loader(x),
                    is_float=is_float,
                    source_dtype=dtype.name,
                )
            )
    flush()
    if not leaves:
        raise UnsupportedModelError(f"{name}: holds no array leaves ({type(params).__name__})")
    return finish(nodes, name)


def load(path) -> xr.DataTree:
    """Weight collection of a ``.npz`` archive (names with ``/`` or ``.`` give the paths)."""
    from pathlib import Path

    from rmtkit.errors import CorruptModelError, MissingDataError

    path = Path(path)
    if not is_file(path):
        raise MissingDataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {key: _NpzEntry(path, archive, key) for key in archive.files}
    except Exception as err:
        raise CorruptModelError(f"{path}: not a readable .npz archive ({err})") from err
    tree: dict = {}
    for key, entry in entries.items():
        node = tree
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = entry
    return from_pytree(tree, framework="numpy", name=str(path))


class _NpzEntry:
    """A member of an npz archive: shape and dtype from its header, data read (and the file
    closed again) when converted."""

    def __init__(self, path, archive, key):
        self._path, self._key = path, key
        with archive.zip.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
        self.shape, self.dtype = shape, dtype

    def __array__(self, dtype=None, copy=None):
        with np.load(self._path, allow_pickle=False) as archive:
            a = archive[self._key]
        return a if dtype is None else a.astype(dtype)
