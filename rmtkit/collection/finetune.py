r"""Fine-tuning deltas as weight collections (docs/math.md §8): ``base=`` differences and LoRA
adapters.

* :func:`delta_collection`: :math:`\Delta W = W - W_{\rm base}` per layer, layers matched by
  their exact node path (the model's module path). A layer without a partner in the base, or
  with another shape, stays in the collection with the node attribute ``rmtkit_warning``
  (``"no-base-layer"``, ``"base-shape-mismatch"``): the analysis reports it as a NaN row with that
  warning instead of failing.
* :func:`lora_collection`: a LoRA / PEFT adapter folder (``adapter_config.json`` +
  ``adapter_model.safetensors``, or ``adapter_model.bin``). Each adapted module has
  ``lora_A`` (:math:`r \times` in) and ``lora_B`` (out :math:`\times r`), and

  .. math:: \Delta W = s\, B A, \qquad s = \frac{\texttt{lora\_alpha}}{r}
            \quad (\texttt{use\_rslora}: s = \texttt{lora\_alpha}/\sqrt r),

  with ``r`` read from the shape of ``lora_A`` and ``alpha_pattern`` overrides honoured
  (WeightWatcher ignores :math:`\alpha/r`: docs/math.md §9). Embedding adapters
  (``lora_embedding_A`` :math:`r \times` vocab, ``lora_embedding_B`` dim :math:`\times r`) give
  :math:`\Delta W = s\,(BA)^\top` in ``(vocab, dim)`` layout; convolution adapters
  (``lora_A`` a ``(r, in, kh, kw)`` kernel, ``lora_B`` ``(out, r, 1, 1)``) give the composed
  kernel. ``mode="delta"`` analyses :math:`\Delta W` alone; ``mode="merged"`` needs the base
  model and gives every base layer, :math:`W + \Delta W` where an adapter exists (so the result
  can be written back through the base model's adapter).

All new ``W`` are lazy: nothing is read until a layer is analysed.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from rmtkit.collection.load import load
from rmtkit.collection.tree import (
    LazyArray,
    build_tree,
    iter_layers,
    lazy_map,
    node_like,
    sanitize_path,
    weight_node,
)
from rmtkit.core import validate
from rmtkit.errors import (
    CorruptModelError,
    InvalidArgumentError,
    RowWarning,
    UnsupportedModelError,
)

__all__ = ["delta_collection", "is_lora_adapter", "lora_collection", "LORA_MODES"]

LORA_MODES = ("delta", "merged")
#: node attribute that makes the analysis skip a layer and report this warning
SKIP_ATTR = "rmtkit_warning"


def _same(w: xr.DataArray) -> LazyArray:
    """``w``'s data, still lazy."""
    return lazy_map(w, lambda a: a)


def delta_collection(tree: xr.DataTree, base: xr.DataTree) -> xr.DataTree:
    """Collection of :math:`W - W_{\\rm base}` for every layer of ``tree`` (module docstring)."""
    base_layers = dict(iter_layers(base))
    nodes = []
    for path, w in iter_layers(tree):
        wb = base_layers.get(path)
        if wb is None:
            skip = {SKIP_ATTR: RowWarning.NO_BASE_LAYER.value}
            nodes.append((path, node_like(w, _same(w), **skip)))
        elif wb.shape != w.shape:
            nodes.append(
                (path, node_like(w, _same(w), **{SKIP_ATTR: RowWarning.BASE_SHAPE_MISMATCH.value}))
            )
        else:
            data = LazyArray(
                lambda w=w, wb=wb: (
                    np.asarray(w.values, np.float64) - np.asarray(wb.values, np.float64)
                ),
                w.shape,
                np.float64,
            )  # exact difference of two float32 arrays
            nodes.append((path, node_like(w, data, base_source=str(wb.attrs.get("source", "")))))
    return build_tree(nodes)


# ---------------------------------------------------------------------------------------------
# LoRA / PEFT adapters


def _adapter_dir(obj: Any) -> Path | None:
    """The adapter folder if ``obj`` names one (folder, its config or its weights file)."""
    if not isinstance(obj, (str, os.PathLike)):
        return None
    path = Path(obj)
    if path.is_dir():
        return path if (path / "adapter_config.json").is_file() else None
    if path.name == "adapter_config.json" or path.name.startswith("adapter_model"):
        return path.parent if (path.parent / "adapter_config.json").is_file() else None
    return None


def is_lora_adapter(obj: Any) -> bool:
    """Whether ``obj`` is a path to a PEFT/LoRA adapter folder (with ``adapter_config.json``)."""
    return _adapter_dir(obj) is not None


_LORA_PART = re.compile(r"^lora_(A|B|embedding_A|embedding_B)$")


def _split_key(name: str) -> tuple[str, str] | None:
    """``"base_model.model.x.q.lora_A.weight"`` -> ``("x.q", "A")``; None if not a LoRA key."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        m = _LORA_PART.match(part)
        if m:
            module = ".".join(parts[:i])
            for prefix in ("base_model.model.", "base_model."):
                if module.startswith(prefix):
                    module = module[len(prefix) :]
                    break
            return module, m.group(1)
    return None


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's ``rank_pattern`` / ``alpha_pattern`` lookup: key matches a module-name suffix."""
    for key, value in (patterns or {}).items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def _delta_fn(a: xr.DataArray, b: xr.DataArray, which: str, scale: float, where: str):
    """Loader of one module's :math:`\\Delta W` and its canonical shape and kind."""
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    if which == "embedding":  # A (r, vocab), B (dim, r) -> (vocab, dim)
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise CorruptModelError(
                f"{where}: lora_embedding_A {a_shape} and lora_embedding_B {b_shape} do not compose"
            )
        shape, kind = (a_shape[1], b_shape[0]), "embedding"

        def delta():
            return scale * (np.asarray(b.values, np.float64) @ np.asarray(a.values, np.float64)).T
    elif len(a_shape) == 2:  # A (r, in), B (out, r) -> (out, in)
        if len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise CorruptModelError(
                f"{where}: lora_A {a_shape} and lora_B {b_shape} do not compose"
            )
        shape, kind = (b_shape[0], a_shape[1]), "dense"

        def delta():
            return scale * (np.asarray(b.values, np.float64) @ np.asarray(a.values, np.float64))
    else:  # conv: A (r, in, *k), B (out, r, 1...) -> (out, in, *k)
        if (
            len(b_shape) != len(a_shape)
            or b_shape[1] != a_shape[0]
            or any(s != 1 for s in b_shape[2:])
        ):
            raise CorruptModelError(
                f"{where}: lora_A {a_shape} and lora_B {b_shape} do not compose"
            )
        shape = (b_shape[0],) + a_shape[1:]
        kind = "conv1d" if len(a_shape) == 3 else "conv2d"

        def delta():
            bm = np.asarray(b.values, np.float64).reshape(b_shape[:2])
            am = np.asarray(a.values, np.float64)
            return scale * np.tensordot(bm, am, axes=(1, 0))

    return delta, shape, kind


def _read_adapter(folder: Path):
    """``(config, {module: (A, B, which)})`` of a PEFT adapter folder (tensors still lazy)."""
    where = str(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        raise CorruptModelError(f"{where}/adapter_config.json: not readable JSON ({err})") from err
    if not isinstance(config, dict):
        raise CorruptModelError(f"{where}/adapter_config.json: expected a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UnsupportedModelError(f"{where}: PEFT type {peft_type!r}; rmtkit reads LoRA only")
    if config.get("use_dora"):
        raise UnsupportedModelError(f"{where}: DoRA adapters (use_dora) are not supported")
    weights = None
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (folder / name).is_file():
            weights = folder / name
            break
    if weights is None:
        raise CorruptModelError(
            f"{where}: adapter folder without adapter_model.safetensors or adapter_model.bin"
        )
    tensors: dict[str, dict[str, xr.DataArray]] = {}
    for _, w in iter_layers(load(weights)):
        key = _split_key(str(w.attrs.get("source", "")))
        if key is None:
            continue
        module, which = key
        tensors.setdefault(module, {})[which] = w
    modules = {}
    for module, parts in tensors.items():
        if "A" in parts and "B" in parts:
            modules[module] = (parts["A"], parts["B"], "linear")
        elif "embedding_A" in parts and "embedding_B" in parts:
            modules[module] = (parts["embedding_A"], parts["embedding_B"], "embedding")
        else:
            raise CorruptModelError(f"{weights}: module {module!r} lacks its lora_A or lora_B")
    if not modules:
        raise UnsupportedModelError(f"{weights}: no lora_A / lora_B tensors found")
    return config, modules, str(weights)


def _scale(config: dict, module: str, r: int) -> float:
    alpha = float(_pattern_value(config.get("alpha_pattern"), module, config.get("lora_alpha", r)))
    return alpha / (np.sqrt(r) if config.get("use_rslora") else r)


def lora_collection(
    adapter: str | os.PathLike, *, base: Any = None, mode: str = "delta"
) -> xr.DataTree:
    """Weight collection of a LoRA / PEFT adapter folder (module docstring).

    Parameters
    ----------
    adapter : path
        The adapter folder (or its ``adapter_config.json`` / ``adapter_model.*``).
    base : model, path or collection, optional
        The base model (anything :func:`rmtkit.load` reads). Gives the layers their base names,
        ids and the kind of the adapted weight; required for ``mode="merged"``.
    mode : {"delta", "merged"}
        ``"delta"``: one layer per adapted module, :math:`\\Delta W = s B A`. ``"merged"``: every
        base layer, :math:`W + \\Delta W` where adapted.
    """
    validate.choice(mode, "lora", LORA_MODES)
    folder = _adapter_dir(adapter)
    if folder is None:
        raise UnsupportedModelError(
            f"{adapter}: not a LoRA adapter folder (no adapter_config.json)"
        )
    if mode == "merged" and base is None:
        raise InvalidArgumentError("`lora='merged'` needs the base model: pass `base=`.")
    config, modules, where = _read_adapter(folder)
    deltas = {}
    for module, (a, b, which) in modules.items():
        r = int(a.shape[0])
        delta, shape, kind = _delta_fn(a, b, which, _scale(config, module, r), f"{where}:{module}")
        deltas[module] = (delta, shape, kind, r)

    base_tree = None
    if base is not None:
        base_tree = base if isinstance(base, xr.DataTree) else load(base)
    base_by_module: dict[str, tuple[str, xr.DataArray]] = {}
    if base_tree is not None:
        for path, w in iter_layers(base_tree):
            src = str(w.attrs.get("source", ""))
            for suffix in (".weight", ".kernel"):
                if src.endswith(suffix):
                    src = src[: -len(suffix)]
            base_by_module[src] = (path, w)
            base_by_module.setdefault(path.replace("/", "."), (path, w))

    nodes = []
    if mode == "delta":
        for i, (module, (delta, shape, kind, r)) in enumerate(sorted(deltas.items())):
            matched = base_by_module.get(module)
            path, layer_id = sanitize_path(module), i
            if matched is not None:
                path, wb = matched
                layer_id = int(wb.attrs["layer_id"])
                if tuple(wb.shape) != shape:
                    raise CorruptModelError(
                        f"{where}: LoRA delta of {module!r} has shape {shape}, the base layer "
                        f"{path!r} has {tuple(wb.shape)}"
                    )
            node = weight_node(
                LazyArray(delta, shape, np.float64),
                kind=kind,
                source=f"{module}.weight",
                framework="peft",
                op="LoRA",
                layer_id=layer_id,
                dtype="float64",
                attrs={"lora_rank": r, "lora_scale": _scale(config, module, r), "adapter": where},
            )
            nodes.append((path, node))
        return build_tree(nodes)

    matched_modules = set()
    for path, wb in iter_layers(base_tree):
        src = str(wb.attrs.get("source", ""))
        module = next(
            (
                m
                for m in (
                    src.removesuffix(".weight").removesuffix(".kernel"),
                    path.replace("/", "."),
                )
                if m in deltas
            ),
            None,
        )
        if module is None:
            nodes.append((path, node_like(wb, _same(wb))))
            continue
        delta, shape, _, r = deltas[module]
        if tuple(wb.shape) != shape:
            raise CorruptModelError(
                f"{where}: LoRA delta of {module!r} has shape {shape}, the base layer {path!r} "
                f"has {tuple(wb.shape)}"
            )
        matched_modules.add(module)
        data = LazyArray(
            lambda wb=wb, delta=delta: (np.asarray(wb.values, np.float64) + delta()).astype(
                wb.dtype
            ),
            shape,
            wb.dtype,
        )
        nodes.append(
            (
                path,
                node_like(
                    wb, data, lora_rank=r, lora_scale=_scale(config, module, r), adapter=where
                ),
            )
        )
    missing = sorted(set(deltas) - matched_modules)
    if missing:
        raise CorruptModelError(
            f"{where}: adapted modules {missing[:5]} have no layer in the base model"
        )
    return build_tree(nodes)
