"""``rmtkit.WeightWatcher(model)``: WeightWatcher 0.7.7's interface, computed by rmtkit, that
never lies about an option.

Every argument of WeightWatcher 0.7.7's constructor, ``analyze``, ``describe``,
``get_details``, ``get_summary``, ``get_ESD``, ``get_Weights``, ``distances``,
``SVDSharpness`` and ``SVDSmoothing`` is here, with WeightWatcher's default, and is either
**honoured** with WeightWatcher's meaning or **refused** with
:class:`rmtkit.errors.InvalidArgumentError` naming the rmtkit way to get it; nothing is accepted
and ignored, and an unknown keyword is a ``TypeError`` (as in WeightWatcher).
``tests/apps/test_facade_signature.py`` walks WeightWatcher's whole signature, read from
``tests/reference/ww077_signature.json``, to prove it. The option sets WeightWatcher itself
refuses (``xmax=0``, ``svd_method="bogus"``, ``max_N`` below ``max_evals``, ...) are refused
too, with a typed error instead of WeightWatcher's bare ``Exception``.

The results are WeightWatcher's types and column names (``details`` a DataFrame with
``layer_id, name, longname, layer_type, N, M, rf, Q, has_esd, num_evals, sv_max, sv_min, ...,
status, warning``, ``get_summary`` a dict, ``distances`` ``(avg_dW, avg_db, details)``), with
rmtkit's columns (``kind``, ``slice_id``, ...) kept beside them. The numbers are rmtkit's:
equal to WeightWatcher's where WeightWatcher is right, and different, by design, where the
README's table "WeightWatcher facade: documented differences" says so (a failed fit is NaN, not
-1; the small-n rule; N and M of even convolution kernels; ...). The main ones:

* ``min_evals=8`` (WeightWatcher's default; :func:`rmtkit.analyze` uses 50). Layers outside
  ``[min_evals, max_evals]`` or with ``N > max_N`` keep a row (``warning`` says why, metrics
  NaN) where WeightWatcher drops them; :meth:`WeightWatcher.get_summary` averages over the rows
  WeightWatcher would have analysed, so it gives WeightWatcher's summary.
* ``layer_id``: for a ``torch.nn.Module``, WeightWatcher's id (the module's position in
  ``named_modules()``, the root being 0), plus ``start_ids``; otherwise rmtkit's ids.
* ``name`` is rmtkit's node path (unique); WeightWatcher's ``name`` is only its last part and
  ``longname`` the dotted path (given too).
"""

import inspect
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import rmtkit
from rmtkit.collection import iter_layers
from rmtkit.collection.finetune import is_lora_adapter
from rmtkit.errors import InvalidArgumentError, RowWarning

__all__ = ["WW_DEFAULTS", "WeightWatcher"]

#: WeightWatcher 0.7.7's defaults of the options the facade shares
WW_DEFAULTS = {
    "min_evals": 8,
    "max_evals": 15000,
    "max_N": 50000,
    "savefig": "ww-img",
    "max_fingers": 10,
    "finger_thresh": 1.0,
    "tolerance": 1e-6,
    "svd_method": "fast",
    "pl_package": "ww",
    "percent": 0.8,
}
#: WeightWatcher's names of the frameworks it reads -> the ``framework`` attribute of rmtkit's
#: collections they correspond to
_FRAMEWORKS = {
    "pytorch": ("torch",),
    "pystatedict": ("torch", "safetensors"),
    "pystatedict_dir": ("torch", "safetensors"),
    "keras": ("keras",),
    "keras_h5_file": ("keras",),
    "onnx": ("onnx",),
    "ww_flatfiles": (),
}
_SVD_METHODS = ("fast", "accurate")
#: WeightWatcher's ``fit`` names -> rmtkit's
_FITS = {"PL": "PL", "power_law": "PL", "TPL": "TPL", "truncated_power_law": "TPL"}
_FITS["E_TPL"] = "E_TPL"
#: WeightWatcher's layer types its ``layers=`` filter accepts as strings
_WW_TYPES = ("conv2d", "conv1d", "dense", "embedding", "norm")
#: columns first in every table, in this order (rmtkit's front, then WeightWatcher's)
_FRONT = ["layer_id", "name", "kind", "layer_type", "N", "M", "Q", "rf", "slice_id"]
_WW_ORDER = [
    "longname",
    "has_esd",
    "num_evals",
    "sv_max",
    "sv_min",
    "rank_loss",
    "weak_rank_loss",
    "lambda_max",
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "status",
    "warning",
    "norm",
    "log_norm",
    "spectral_norm",
    "log_spectral_norm",
    "alpha_weighted",
    "log_alpha_norm",
    "stable_rank",
    "matrix_rank",
    "entropy",
]
#: rows WeightWatcher drops instead of analysing (outside min_evals / max_evals / max_N)
_NOT_ANALYSED = (RowWarning.TOO_FEW_EVALS, RowWarning.TOO_MANY_EVALS)
#: the metrics of WeightWatcher's ``get_summary``
_SUMMARY = (
    "log_norm",
    "alpha",
    "alpha_weighted",
    "log_alpha_norm",
    "log_spectral_norm",
    "stable_rank",
    "mp_softrank",
)


def _refuse(method: str, arg: str, value: Any, why: str) -> InvalidArgumentError:
    """The error of a WeightWatcher argument the facade does not honour: what, why, instead."""
    return InvalidArgumentError(f"WeightWatcher.{method}({arg}={value!r:.60}): {why}")


def _check_int(method: str, arg: str, value, *, low: int | None = None) -> None:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        low is not None and value < low
    ):
        bound = "" if low is None else f" >= {low}"
        raise _refuse(method, arg, value, f"must be an int{bound}.")


def _check_flag(method: str, arg: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise _refuse(method, arg, value, "must be True or False.")


def _no_op(method: str, arg: str, value, default, why: str) -> None:
    """An argument that has no effect in WeightWatcher 0.7.7 either: only its default passes."""
    if not (value is default or (value == default and type(value) is type(default))):
        raise _refuse(method, arg, value, why)


class _Layer:
    """What the facade knows of one layer of a collection before analysing it."""

    def __init__(self, path: str, w, ww_id: int):
        self.path = path
        self.rmtkit_id = int(w.attrs.get("layer_id", -1))
        self.ww_id = ww_id
        self.kind = str(w.attrs.get("kind", ""))
        self.longname = path.replace("/", ".")
        self.short = self.longname.rsplit(".", 1)[-1]
        self.n_rows = max(int(w.shape[0]), int(w.shape[1]))
        self.framework = str(w.attrs.get("framework", ""))


def _layers_of(tree: xr.DataTree, start_ids: int) -> list[_Layer]:
    """The layers of a collection with WeightWatcher's ids: a torch module's position in
    ``named_modules()`` (``module_index``) where every layer has one, else rmtkit's ids; plus
    ``start_ids``."""
    items = list(iter_layers(tree))
    ww = all("module_index" in w.attrs for _, w in items)
    return [
        _Layer(
            path,
            w,
            (int(w.attrs["module_index"]) if ww else int(w.attrs.get("layer_id", -1))) + start_ids,
        )
        for path, w in items
    ]


def _ww_filter(method: str, layers) -> tuple[list[int], list[str], list[str]]:
    """WeightWatcher's ``layers=`` filter as (ids, types, names); its own validity rule (ids all
    >= 0 or all < 0) is enforced."""
    if layers is None:
        return [], [], []
    if isinstance(layers, np.ndarray):
        layers = layers.tolist()
    if not isinstance(layers, list):
        layers = [layers]
    ids, types, names = [], [], []
    for f in layers:
        if isinstance(f, str) and f in _WW_TYPES:
            types.append(f)
        elif isinstance(f, numbers.Integral) and not isinstance(f, bool):
            ids.append(int(f))
        elif isinstance(f, str):
            names.append(f)
        else:
            raise _refuse(
                method,
                "layers",
                f,
                "entries must be layer ids (int), layer types "
                f"({', '.join(_WW_TYPES)}) or layer names (str).",
            )
    if ids and max(ids) > 0 and min(ids) < 0:
        raise _refuse(method, "layers", layers, "layer ids must be all >= 0 or all < 0.")
    dashed = ["-" in n for n in names]
    if names and any(dashed) and not all(dashed):
        raise _refuse(
            method, "layers", layers, "names are either all to keep or all '-name' to skip."
        )
    return ids, types, names


def _ww_keeps(layer: _Layer, ids, types, names) -> bool:
    """WeightWatcher's ``apply_filters`` for one layer (types, then ids, then names: the last
    filter given decides). Names match WeightWatcher's short name or the dotted path."""
    keep = True
    if types:
        keep = layer.kind in types
    if ids:
        keep = layer.ww_id in ids if min(ids) >= 0 else -layer.ww_id not in ids
    if names:
        mine = (layer.short, layer.longname, layer.path)
        if not any("-" in n for n in names):
            keep = any(n in mine for n in names)
        else:
            keep = not any(n[1:] in mine for n in names)
    return keep


def _frame(ds: xr.Dataset, layers: list[_Layer] | None = None, keep=None):
    """A Dataset with dim ``layer`` as WeightWatcher's DataFrame: WeightWatcher's columns
    (derived from rmtkit's, module docstring) added, rmtkit's kept, ``layer_id`` WeightWatcher's."""
    import pandas as pd

    df = ds.to_dataframe().reset_index(drop=True)
    if df.empty:
        return pd.DataFrame(columns=["layer_id", "name"])
    df["longname"] = [str(n).replace("/", ".") for n in df["name"]]
    if layers is not None:
        ids = {layer.path: layer.ww_id for layer in layers}
        intra = str(ds.attrs.get("intra", "False")) == "True"
        kept = [x for x in layers if keep is None or x.rmtkit_id in keep]
        before = {b.rmtkit_id: a.ww_id for a, b in zip(kept, kept[1:], strict=False)}
        by_id = {x.rmtkit_id: x.ww_id for x in layers}
        new_ids, longnames = [], []
        for name, lid, longname in zip(df["name"], df["layer_id"], df["longname"], strict=True):
            if intra:  # the pair's second layer's id and WeightWatcher's "<id0> X <id1>"
                new_ids.append(by_id.get(int(lid), int(lid)))
                longnames.append(f"{before.get(int(lid), -1)} X {new_ids[-1]}")
            else:
                new_ids.append(ids.get(name, lid))
                longnames.append(longname)
        df["layer_id"], df["longname"] = new_ids, longnames
    df["layer_type"] = df["kind"]
    if "lambda_max" in df:
        df["has_esd"] = df["lambda_max"].notna()
    if "alpha" in df:
        df["status"] = np.where(np.isfinite(df["alpha"].to_numpy(float)), "success", "failed")
    if "detX_num" in df:
        df["num_ERG_spikes"] = df["detX_num"]
        df["ERG_gap"] = df["detX_num"] - df["num_pl_spikes"]
        df["detX_val_unrescaled"] = df["detX_val"] * df["num_evals"] / df["norm"]
    if "num_traps" in df:
        df["rand_num_spikes"] = df["num_traps"]
        df["rand_W_scale"] = np.sqrt(df["num_evals"] / df["norm"])
        root_q = np.sqrt(df["Q"].to_numpy(float))
        ratio = ((1.0 - 1.0 / root_q) / (1.0 + 1.0 / root_q)) ** 2
        df["rand_bulk_min"] = df["rand_bulk_max"] * ratio
    front = [c for c in _FRONT if c in df.columns]
    ww = [c for c in _WW_ORDER if c in df.columns and c not in front]
    return df[front + ww + [c for c in df.columns if c not in front and c not in ww]]


def _ds_of(details) -> xr.Dataset:
    """A details DataFrame (or the Dataset itself) as a Dataset with dim ``layer``."""
    import pandas as pd

    if isinstance(details, xr.Dataset):
        return details
    if isinstance(details, pd.DataFrame):
        return details.reset_index(drop=True).rename_axis("layer").to_xarray()
    raise InvalidArgumentError(
        f"`details` must be the DataFrame of WeightWatcher.analyze; got {type(details).__name__}."
    )


class WeightWatcher:
    """WeightWatcher 0.7.7's ``WeightWatcher`` on rmtkit (module docstring).

    Parameters
    ----------
    model : optional
        Anything :func:`rmtkit.load` reads (a torch / Keras / ONNX model, a state dict, a path,
        a collection) or a LoRA adapter folder. Each method also takes ``model=``.
    framework : {None, "pytorch", "pystatedict", "pystatedict_dir", "keras", "keras_h5_file",
        "onnx"}, optional
        WeightWatcher's framework name. rmtkit reads the framework from the model itself; a
        name given is checked against it (:class:`InvalidArgumentError` when they differ).
    base_model : optional
        The base of every analysis (``W - W_base``), as ``analyze(base_model=...)``.
    log_level : int or str, optional
        Level of the ``"rmtkit"`` logger (``logging.INFO``, ``"WARNING"``, ...).
    """

    def __init__(self, model=None, framework=None, base_model=None, log_level=None):
        if framework is not None and framework not in _FRAMEWORKS:
            raise _refuse(
                "__init__",
                "framework",
                framework,
                f"WeightWatcher's frameworks are {', '.join(_FRAMEWORKS)} (or None).",
            )
        if model is None and base_model is not None:
            raise _refuse("__init__", "base_model", "...", "a base model needs a model.")
        if log_level is not None:
            if not isinstance(log_level, (int, str)) or isinstance(log_level, bool):
                raise _refuse("__init__", "log_level", log_level, "must be a logging level.")
            try:
                logging.getLogger("rmtkit").setLevel(log_level)
            except (ValueError, TypeError) as err:
                raise _refuse("__init__", "log_level", log_level, str(err)) from err
        self.model = model
        self.base_model = base_model
        self.framework = framework
        self.details = None
        self.results = None
        #: the figures of the last ``analyze(plot=True)`` (paths when saved)
        self.figures: dict[str, Any] = {}
        if model is not None and framework is not None and not is_lora_adapter(model):
            self._check_framework(rmtkit.load(model))

    # ------------------------------------------------------------------------------ helpers
    def _model(self, model):
        model = self.model if model is None else model
        if model is None:
            raise InvalidArgumentError(
                "no model: pass one to WeightWatcher(model) or to the method (model=...)."
            )
        return model

    def _check_framework(self, tree: xr.DataTree) -> None:
        if self.framework is None:
            return
        found = {str(w.attrs.get("framework", "")) for _, w in iter_layers(tree)}
        if not found <= set(_FRAMEWORKS[self.framework]):
            raise _refuse(
                "__init__",
                "framework",
                self.framework,
                f"the model's layers come from {sorted(found)}; rmtkit reads the framework "
                "from the model itself (leave framework=None).",
            )

    def _select(
        self,
        method: str,
        model,
        *,
        layers,
        start_ids,
        max_N=None,
        base=None,
    ) -> tuple[Any, list[_Layer] | None, list[int] | None]:
        """The collection to analyse, its layers (WeightWatcher ids) and the rmtkit ids that
        WeightWatcher's ``layers`` and ``max_N`` keep (None: a LoRA folder, every layer)."""
        _check_int(method, "start_ids", start_ids, low=0)
        ids, types, names = _ww_filter(method, layers)
        if is_lora_adapter(model):
            if ids or types or names:
                raise _refuse(
                    method,
                    "layers",
                    layers,
                    "a LoRA adapter folder is analysed whole; select its layers with "
                    "rmtkit.analyze(adapter, base=..., layers=...).",
                )
            return model, None, None
        tree = rmtkit.load(model)
        self._check_framework(tree)
        found = _layers_of(tree, start_ids)
        keep = [
            layer.rmtkit_id
            for layer in found
            if _ww_keeps(layer, ids, types, names) and (max_N is None or layer.n_rows <= max_N)
        ]
        return tree, found, keep

    def _base(self, base_model):
        return self.base_model if base_model is None else base_model

    # ------------------------------------------------------------------------------ analyze
    def analyze(
        self,
        model=None,
        layers=[],  # noqa: B006 -- WeightWatcher's signature
        min_evals=8,
        max_evals=15000,
        min_size=None,
        max_size=None,
        max_N=50000,
        glorot_fix=False,
        plot=False,
        randomize=False,
        savefig="ww-img",
        mp_fit=False,
        conv2d_norm=True,
        ww2x=False,
        pool=True,
        conv2d_fft=False,
        fft=False,
        deltas=False,
        intra=False,
        vectors=False,
        channels=None,
        stacked=False,
        fix_fingers=False,
        xmin_max=None,
        max_fingers=10,
        finger_thresh=1.0,
        fit="PL",
        sparsify=True,
        detX=False,
        ERG=False,
        svd_method="fast",
        tolerance=1e-06,
        start_ids=0,
        pl_package="ww",
        xmax=None,
        base_model=None,
        peft=False,
        inverse=False,
        *,
        key=None,
    ):
        """Per-layer metrics as WeightWatcher's DataFrame (kept as ``self.details``; the
        rmtkit Dataset as ``self.results``).

        Every argument has WeightWatcher 0.7.7's meaning and default; ``key`` (rmtkit's) seeds
        the randomization (WeightWatcher's is unseeded). Refused, with the rmtkit way:
        ``min_size``/``max_size`` (WeightWatcher ignores them: ``min_evals``/``max_evals``),
        ``glorot_fix=True`` (a no-op in WeightWatcher 0.7.7), ``fft=True`` (raises in
        WeightWatcher 0.7.7), ``channels`` other than None (rmtkit's adapters know each
        framework's layout), ``pl_package="powerlaw"`` (fails every fit in WeightWatcher 0.7.7
        with powerlaw 2.0; rmtkit has one fit). ``plot=True`` draws WeightWatcher's per-layer
        figures (:func:`rmtkit.plot_layers`) into the folder ``savefig`` (kept in
        ``self.figures``), never on screen.
        """
        model = self._model(model)
        opts = self._analyze_options(
            min_evals=min_evals,
            max_evals=max_evals,
            min_size=min_size,
            max_size=max_size,
            max_N=max_N,
            glorot_fix=glorot_fix,
            plot=plot,
            randomize=randomize,
            savefig=savefig,
            mp_fit=mp_fit,
            conv2d_norm=conv2d_norm,
            ww2x=ww2x,
            pool=pool,
            conv2d_fft=conv2d_fft,
            fft=fft,
            deltas=deltas,
            intra=intra,
            vectors=vectors,
            channels=channels,
            stacked=stacked,
            fix_fingers=fix_fingers,
            xmin_max=xmin_max,
            max_fingers=max_fingers,
            finger_thresh=finger_thresh,
            fit=fit,
            sparsify=sparsify,
            detX=detX,
            ERG=ERG,
            svd_method=svd_method,
            tolerance=tolerance,
            pl_package=pl_package,
            xmax=xmax,
            peft=peft,
            inverse=inverse,
        )
        base = self._base(base_model)
        tree, found, keep = self._select(
            "analyze", model, layers=layers, start_ids=start_ids, max_N=max_N
        )
        if keep is not None and not keep:
            return self._empty()
        if "lora" in opts and not is_lora_adapter(model):
            raise _refuse(
                "analyze",
                "peft",
                peft,
                "rmtkit reads a PEFT / LoRA adapter as its folder (adapter_config.json + "
                "adapter_model.*): pass the folder as the model and the base model as "
                "base_model ('with_base' needs it).",
            )
        ds = rmtkit.analyze(
            tree,
            layers=keep,
            base=base,
            key=key,
            progress=False,
            **opts,
        )
        self.results = ds
        self.details = _frame(ds, found, keep)
        self.figures = {}
        if plot:
            self.figures = self._plot(
                tree, ds, savefig=savefig, key=key, base=base, lora=opts.get("lora")
            )
        return self.details

    def _empty(self):
        import pandas as pd

        self.results = None
        self.details = pd.DataFrame(columns=["layer_id", "name"])
        return self.details

    def _analyze_options(self, **kw) -> dict:
        """WeightWatcher's analyze arguments checked (its own rules, typed errors) and mapped
        to :func:`rmtkit.analyze`'s."""
        m = "analyze"
        for arg in ("min_size", "max_size"):
            if kw[arg] is not None:
                raise _refuse(
                    m,
                    arg,
                    kw[arg],
                    "WeightWatcher 0.7.7 ignores it; the size bounds are `min_evals` and "
                    "`max_evals` (numbers of eigenvalues).",
                )
        for arg in (
            "glorot_fix",
            "plot",
            "randomize",
            "mp_fit",
            "conv2d_norm",
            "ww2x",
            "pool",
            "conv2d_fft",
            "fft",
            "deltas",
            "intra",
            "vectors",
            "stacked",
            "sparsify",
            "detX",
            "ERG",
            "inverse",
        ):
            _check_flag(m, arg, kw[arg])
        if kw["glorot_fix"]:
            raise _refuse(
                m,
                "glorot_fix",
                True,
                "WeightWatcher 0.7.7 computes the Glorot factor and then leaves W unchanged "
                "(a no-op); rmtkit has no Glorot rescaling. It would only rescale the "
                "eigenvalues (the norm metrics, not alpha): scale the weights before analysis.",
            )
        if kw["fft"]:
            raise _refuse(
                m,
                "fft",
                True,
                "WeightWatcher 0.7.7's fft=True raises AttributeError (`ww_layer.skippe`); the "
                "spectrum of a convolution operator by the 2-D FFT is conv2d_fft=True.",
            )
        if kw["channels"] is not None:
            raise _refuse(
                m,
                "channels",
                kw["channels"],
                "rmtkit's adapters put every kernel in the canonical (fan_out, fan_in, kh, kw) "
                "layout from its framework's own convention, so there is no layout to "
                "override: leave channels=None (to analyse a tensor stored another way, "
                "build the collection with rmtkit.from_layers).",
            )
        min_evals, max_evals, max_n = kw["min_evals"], kw["max_evals"], kw["max_N"]
        for arg, value in (("min_evals", min_evals), ("max_evals", max_evals)):
            if value is not None:
                _check_int(m, arg, value, low=0)
        _check_int(m, "max_N", max_n, low=1)
        if min_evals and max_evals and min_evals >= max_evals:
            raise _refuse(m, "min_evals", min_evals, f"must be < max_evals ({max_evals}).")
        if max_evals and max_n < max_evals:
            raise _refuse(m, "max_N", max_n, f"must be >= max_evals ({max_evals}).")
        if min_evals and max_n < min_evals:
            raise _refuse(m, "max_N", max_n, f"must be >= min_evals ({min_evals}).")
        savefig = kw["savefig"]
        if not isinstance(savefig, (str, bool)):
            raise _refuse(m, "savefig", savefig, "must be a folder name (str) or a bool.")
        if kw["svd_method"] not in _SVD_METHODS:
            raise _refuse(
                m,
                "svd_method",
                kw["svd_method"],
                "must be 'fast' or 'accurate' (rmtkit computes both in float64 LAPACK on a "
                "CPU, float32 first on a GPU: docs/math.md §1).",
            )
        if kw["pl_package"] == "powerlaw":
            raise _refuse(
                m,
                "pl_package",
                "powerlaw",
                "with powerlaw 2.0, WeightWatcher 0.7.7 fails every fit this way (alpha -1); "
                "rmtkit fits with WeightWatcher's own algorithm ('ww', docs/math.md §2), and "
                "fit='TPL'/'E_TPL' and xmax='force' work with it.",
            )
        if kw["pl_package"] != "ww":
            raise _refuse(m, "pl_package", kw["pl_package"], "must be 'ww' (or 'powerlaw').")
        fit = kw["fit"]
        if fit not in _FITS:
            raise _refuse(m, "fit", fit, f"must be one of {', '.join(map(repr, _FITS))}.")
        fix_fingers = kw["fix_fingers"]
        if fix_fingers in (False, None):
            fix_fingers = None
        elif fix_fingers not in ("xmin_peak", "clip_xmax"):
            raise _refuse(m, "fix_fingers", fix_fingers, "must be 'xmin_peak' or 'clip_xmax'.")
        xmax = kw["xmax"]
        if xmax is False:
            xmax = None
        if isinstance(xmax, bool) or not (
            xmax is None or xmax == "force" or isinstance(xmax, numbers.Integral)
        ):
            raise _refuse(m, "xmax", xmax, "must be None, 'force' or an int -k.")
        if isinstance(xmax, numbers.Integral):
            if xmax >= 0:
                raise _refuse(
                    m,
                    "xmax",
                    xmax,
                    "must be a negative int -k (fit without the top k eigenvalues); "
                    "WeightWatcher refuses 0.",
                )
            if fix_fingers is not None:
                raise _refuse(m, "xmax", xmax, "an int xmax cannot be combined with fix_fingers.")
        _check_int(m, "max_fingers", kw["max_fingers"], low=1)
        if fix_fingers != "clip_xmax":
            for arg in ("max_fingers", "finger_thresh"):
                _no_op(
                    m,
                    arg,
                    kw[arg],
                    WW_DEFAULTS[arg],
                    "only used by fix_fingers='clip_xmax'.",
                )
        if fit == "E_TPL" and fix_fingers == "clip_xmax":
            raise _refuse(m, "fit", fit, "E_TPL and fix_fingers='clip_xmax' cannot be combined.")
        if fit != "PL" and (fix_fingers == "clip_xmax" or xmax is not None):
            raise _refuse(m, "fit", fit, "fix_fingers='clip_xmax' and xmax need fit='PL'.")
        xmin_method = "search"
        if fix_fingers == "xmin_peak":
            fix_fingers, xmin_method = None, "peak"
        if kw["xmin_max"] is not None and xmin_method != "peak" and fit != "E_TPL":
            raise _refuse(
                m,
                "xmin_max",
                kw["xmin_max"],
                "bounds the xmin window of fix_fingers='xmin_peak' (or fit='E_TPL'); it does "
                "nothing without it.",
            )
        tolerance = kw["tolerance"]
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, numbers.Real)
            or not tolerance > 0
        ):
            raise _refuse(m, "tolerance", tolerance, "must be a number > 0.")
        if kw["intra"] and (kw["randomize"] or kw["vectors"]):
            raise _refuse(m, "intra", True, "cannot be combined with randomize or vectors.")
        if kw["inverse"] and kw["vectors"]:
            raise _refuse(m, "inverse", True, "cannot be combined with vectors.")
        pool = kw["pool"] and not kw["ww2x"]
        if kw["conv2d_fft"] and not pool:
            raise _refuse(m, "conv2d_fft", True, "needs pool=True (and ww2x=False).")
        if kw["conv2d_fft"] and kw["intra"]:
            raise _refuse(m, "conv2d_fft", True, "cannot be combined with intra.")
        peft = kw["peft"]
        if peft not in (False, True, "with_base"):
            raise _refuse(m, "peft", peft, "must be False, True or 'with_base'.")
        opts = dict(
            min_evals=min_evals or 0,
            max_evals=max_evals or None,
            pool=pool,
            fit=_FITS[fit],
            xmin_method=xmin_method,
            xmin_max=kw["xmin_max"],
            xmax=xmax,
            fix_fingers=fix_fingers,
            randomize=kw["randomize"],
            mp_fit=kw["mp_fit"],
            detx=kw["detX"] or kw["ERG"],
            tolerance=float(tolerance),
            conv2d_norm=kw["conv2d_norm"],
            singular_values=True,
        )
        if fix_fingers == "clip_xmax":
            opts.update(max_fingers=int(kw["max_fingers"]), finger_thresh=kw["finger_thresh"])
        if peft:
            opts["lora"] = "with_base" if peft == "with_base" else "delta"
        for arg, flag in (
            ("vectors", "vectors"),
            ("deltas", "spacing"),
            ("inverse", "inverse"),
            ("conv2d_fft", "conv2d_fft"),
            ("stacked", "stacked"),
        ):
            if kw[arg]:
                opts[flag] = True
        if kw["intra"]:
            opts.update(intra=True, sparsify=kw["sparsify"])
        elif not kw["sparsify"]:
            raise _refuse(m, "sparsify", False, "only used by intra=True.")
        return opts

    def _plot(self, tree, ds: xr.Dataset, *, savefig, key, base, lora=None) -> dict:
        """WeightWatcher's per-layer figures (:func:`rmtkit.plot_layers`), one file per layer
        and figure in the folder ``savefig`` (``True``: ``"ww-img"``), never on screen."""
        folder = None
        if savefig:
            folder = Path(WW_DEFAULTS["savefig"] if savefig is True else savefig)
        if is_lora_adapter(tree):
            weights = rmtkit.lora_collection(tree, base=base, mode=lora or "delta")
        elif base is not None:
            weights = rmtkit.delta_collection(tree, rmtkit.load(base))
        else:
            weights = tree
        return rmtkit.plot_layers(weights, ds, savefig=folder, key=key)

    # ------------------------------------------------------------------------------ describe
    def describe(
        self,
        model=None,
        layers=[],  # noqa: B006 -- WeightWatcher's signature
        min_evals=8,
        max_evals=15000,
        min_size=None,
        max_size=None,
        max_N=50000,
        glorot_fix=False,
        savefig="ww-img",
        ww2x=False,
        pool=True,
        conv2d_fft=False,
        fft=False,
        conv2d_norm=True,
        intra=False,
        channels=None,
        stacked=False,
        start_ids=0,
        base_model=None,
        peft=False,
    ):
        """The rows :meth:`analyze` would give (sizes, no computation) as a DataFrame.

        Arguments as :meth:`analyze`; ``savefig`` and ``conv2d_norm`` change nothing in
        WeightWatcher's describe either, so only their defaults pass.
        """
        model = self._model(model)
        m = "describe"
        _no_op(m, "savefig", savefig, "ww-img", "describe draws nothing.")
        _no_op(m, "conv2d_norm", conv2d_norm, True, "describe computes no eigenvalue.")
        # describe passes its own arguments; the others keep analyze's (WeightWatcher's) defaults
        given = dict(
            min_evals=min_evals,
            max_evals=max_evals,
            min_size=min_size,
            max_size=max_size,
            max_N=max_N,
            glorot_fix=glorot_fix,
            savefig=savefig,
            ww2x=ww2x,
            pool=pool,
            conv2d_fft=conv2d_fft,
            fft=fft,
            intra=intra,
            channels=channels,
            stacked=stacked,
            peft=peft,
        )
        opts = self._analyze_options(**(_analyze_defaults() | given))
        tree, found, keep = self._select(m, model, layers=layers, start_ids=start_ids, max_N=max_N)
        if keep is not None and not keep:
            import pandas as pd

            return pd.DataFrame(columns=["layer_id", "name"])
        kw = {
            k: opts[k]
            for k in ("min_evals", "max_evals", "pool", "lora", "intra", "stacked", "conv2d_fft")
            if k in opts
        }
        ds = rmtkit.describe(tree, layers=keep, base=self._base(base_model), **kw)
        return _frame(ds, found)

    # ------------------------------------------------------------------------------ results
    def get_details(self):
        """The DataFrame of the last :meth:`analyze` (None before)."""
        return self.details

    def get_summary(self, details=None) -> dict:
        """Means of ``log_norm, alpha, alpha_weighted, log_alpha_norm, log_spectral_norm,
        stable_rank`` (and ``mp_softrank`` when present) over the rows WeightWatcher would
        have analysed (not those outside ``min_evals``/``max_evals``), ignoring NaN (a failed
        fit is not averaged in, where WeightWatcher averages its -1), as a dict like
        WeightWatcher's. ``details``: a DataFrame of :meth:`analyze` (default: the last)."""
        if details is None:
            if self.results is None and self.details is None:
                raise InvalidArgumentError("no details yet: call analyze() first or pass them.")
            ds = self.results if self.results is not None else _ds_of(self.details)
        else:
            ds = _ds_of(details)
        if "warning" in ds:
            labels = [RowWarning.of(w) for w in np.asarray(ds["warning"].values).astype(str)]
            kept = np.array([label not in _NOT_ANALYSED for label in labels], bool)
        else:
            kept = np.ones(ds.sizes.get("layer", 0), bool)
        out = {}
        for name in _SUMMARY:
            if name not in ds:
                continue
            values = np.asarray(ds[name].values, float)[kept]
            values = values[np.isfinite(values)]
            out[name] = float(values.mean()) if values.size else math.nan
        return out

    # ------------------------------------------------------------------------------ one layer
    def _one_layer(self, method: str, model, layer, params):
        """The collection and the one layer ``layer`` (a WeightWatcher id or a name; None:
        the first) of ``model``."""
        if params is not None:
            raise _refuse(
                method,
                "params",
                "...",
                "WeightWatcher's internal option dict; rmtkit takes no such dict: call "
                "rmtkit.spectra / rmtkit.analyze with the options by name.",
            )
        if layer is not None and (
            isinstance(layer, bool) or not isinstance(layer, (numbers.Integral, str))
        ):
            raise _refuse(method, "layer", layer, "must be a layer id (int) or name (str).")
        tree = rmtkit.load(self._model(model))
        found = _layers_of(tree, 0)
        if layer is None:
            chosen = found[:1]
        elif isinstance(layer, str):
            chosen = [x for x in found if layer in (x.path, x.longname, x.short)][:1]
        else:
            chosen = [x for x in found if x.ww_id == int(layer)]
        if not chosen:
            shown = ", ".join(f"{x.ww_id}: {x.path}" for x in found[:12])
            raise _refuse(method, "layer", layer, f"no such layer; the layers are {shown}.")
        return tree, chosen[0]

    def get_ESD(self, model=None, layer=None, random=False, params=None, *, key=None):
        """The eigenvalues ``analyze`` fits for one layer (numpy, ascending): ``layer`` is a
        layer id or name (default: the first layer). Conv layers are pooled times ½ as in
        :meth:`analyze` (WeightWatcher's ``get_ESD`` omits the ½: docs/math.md §9).

        ``random=True``: the ESD of the layer's randomized weights (entries permuted per
        slice), the draw ``analyze(randomize=True, key=key)`` measures (one draw; WeightWatcher
        concatenates 5 for layers with fewer than 100 eigenvalues).
        """
        _check_flag("get_ESD", "random", random)
        tree, chosen = self._one_layer("get_ESD", model, layer, params)
        da = rmtkit.spectra(tree, layers=[chosen.rmtkit_id], randomize=random, key=key)
        row = (da["rand_evals"] if random else da).isel(layer=0).values
        return row[~np.isnan(row)]

    def get_Weights(self, model=None, layer=None, params=None):
        """The weight matrices of one layer as WeightWatcher gives them: a list of numpy
        arrays, ``[W]`` for a dense layer (stored ``(fan_out, fan_in)``), the ``rf`` kernel
        slices ``W[:, :, i, j]`` oriented ``N >= M`` for a convolution (no normalisation)."""
        tree, chosen = self._one_layer("get_Weights", model, layer, params)
        w = dict(iter_layers(tree))[chosen.path]
        a = np.asarray(w.values)
        if a.ndim == 2:
            return [a]
        return [np.asarray(s) for s in np.asarray(rmtkit.slices(a))]

    # ------------------------------------------------------------------------------ distances
    def distances(
        self,
        model_1,
        model_2,
        method="raw",
        layers=[],  # noqa: B006 -- WeightWatcher's signature
        start_ids=0,
        pool=True,
        channels=None,
    ):
        """``(avg_dW, avg_db, details)``: per-layer distances between two models' weights, as
        WeightWatcher 0.7.7.

        ``method``: ``"raw"`` (default) :math:`\\|W_1 - W_2\\|_F` of the whole weight tensor
        and :math:`\\|b_1 - b_2\\|` of the biases (0 and ``b_shape="unknown"`` for a layer
        without one; NaN when rmtkit cannot read the biases of that kind of model);
        ``"euclidean"``: the mean over the kernel slices of :math:`\\|W_1 - W_2\\|_F` (a dense
        layer is one slice); ``"cka"``: the mean over slices of WeightWatcher's uncentred
        linear CKA :math:`\\|W_1^\\top W_2\\|_F / \\sqrt{\\|W_1^\\top W_1\\|_F\\|W_2^\\top
        W_2\\|_F}` (dense layers as stored, ``(fan_out, fan_in)``; convolution slices oriented
        :math:`N \\ge M`: ``rmtkit.distances(..., orient=...)``). ``pool=False``: one row per
        kernel slice. ``details`` is indexed by ``layer_id`` with WeightWatcher's columns
        ``method, name, delta_W, delta_b, M, N, b_shape, longname`` (and ``slice_id``);
        ``avg_dW``, ``avg_db`` are their means. As in WeightWatcher, only layers (slices, with
        ``pool=False``) of 8 to 15000 eigenvalues are compared.
        """
        import pandas as pd

        m = "distances"
        if method is None:
            method = "raw"
        if not isinstance(method, str) or method.lower() not in ("raw", "euclidean", "cka"):
            raise _refuse(m, "method", method, "must be 'raw', 'euclidean' or 'cka'.")
        method = method.lower()
        _check_flag(m, "pool", pool)
        if channels is not None:
            raise _refuse(m, "channels", channels, "see analyze(channels=...): leave it None.")
        tree_1, found, keep = self._select(m, model_1, layers=layers, start_ids=start_ids)
        tree_2 = rmtkit.load(model_2)
        other = dict(iter_layers(tree_2))
        weights = dict(iter_layers(tree_1))
        bias_1 = rmtkit.adapters.biases(model_1)
        bias_2 = rmtkit.adapters.biases(model_2)
        records = []
        for layer in found:
            if layer.rmtkit_id not in keep:
                continue
            w1 = weights[layer.path]
            w2 = other.get(layer.path)
            if w2 is None or w2.shape != w1.shape:
                raise _refuse(
                    m,
                    "model_2",
                    "...",
                    f"has no layer {layer.path!r} of shape {tuple(w1.shape)}: WeightWatcher "
                    "compares models of the same architecture (rmtkit.model_distances reports "
                    "unmatched layers as NaN rows instead).",
                )
            a1, a2 = np.asarray(w1.values, np.float64), np.asarray(w2.values, np.float64)
            s1, s2 = np.asarray(rmtkit.slices(a1)), np.asarray(rmtkit.slices(a2))
            n_rows, n_cols = s1.shape[1], s1.shape[2]
            n_evals = n_cols * s1.shape[0] if pool else n_cols
            if not WW_DEFAULTS["min_evals"] <= n_evals <= WW_DEFAULTS["max_evals"]:
                continue  # WeightWatcher compares only the layers (slices) it would analyse
            rows = (
                [(None, s1, s2)]
                if pool or a1.ndim == 2
                else [(i, s1[i : i + 1], s2[i : i + 1]) for i in range(s1.shape[0])]
            )
            delta_b, b_shape = self._bias_distance(layer.path, bias_1, bias_2)
            for slice_id, p1, p2 in rows:
                if method == "raw":
                    delta_w = float(rmtkit.distances(a1, a2))
                elif method == "euclidean":
                    pairs = zip(p1, p2, strict=True)
                    delta_w = float(np.mean([float(rmtkit.distances(x, y)) for x, y in pairs]))
                else:
                    dense = a1.ndim == 2
                    pairs = [(a1, a2)] if dense else list(zip(p1, p2, strict=True))
                    delta_w = float(
                        np.mean(
                            [
                                float(rmtkit.distances(x, y, method="cka", orient=not dense))
                                for x, y in pairs
                            ]
                        )
                    )
                rec = {
                    "method": method,
                    "layer_id": layer.ww_id,
                    "name": layer.path,
                    "delta_W": delta_w,
                    "delta_b": delta_b if method == "raw" else 0.0,
                    "M": n_cols,
                    "N": n_rows,
                    "b_shape": b_shape if method == "raw" else "unknown",
                    "longname": layer.longname,
                }
                if slice_id is not None or not pool:
                    rec["slice_id"] = 0 if slice_id is None else slice_id
                records.append(rec)
        lead = ["method", "layer_id", "name", "delta_W", "delta_b", "M", "N", "b_shape"]
        details = pd.DataFrame.from_records(
            records,
            columns=lead
            + ["longname"]
            + (["slice_id"] if records and "slice_id" in records[0] else []),
        )
        details = details.set_index("layer_id")
        avg_dw = float(np.mean(details["delta_W"].to_numpy(float))) if len(details) else math.nan
        avg_db = float(np.mean(details["delta_b"].to_numpy(float))) if len(details) else math.nan
        return avg_dw, avg_db, details

    @staticmethod
    def _bias_distance(path: str, bias_1, bias_2) -> tuple[float, Any]:
        """WeightWatcher's ``delta_b``: :math:`\\|b_1 - b_2\\|`, 0 (``"unknown"``) without
        biases, NaN when rmtkit cannot read the biases of a model of that kind."""
        if bias_1 is None or bias_2 is None:
            return math.nan, "unknown"
        b1, b2 = bias_1.get(path), bias_2.get(path)
        if b1 is None or b2 is None or b1.shape != b2.shape:
            return 0.0, "unknown"
        return float(np.linalg.norm(b1.astype(np.float64) - b2.astype(np.float64))), b1.shape

    # ------------------------------------------------------------------------------ transforms
    def _write_back(self, model, collection):
        """The transformed model in the input's own type where an adapter writes it (a new
        torch module or state dict, an ONNX model), else the collection."""
        out = rmtkit.adapters.write_back(model, collection)
        return collection if out is None else out

    def _transform_checks(self, m: str, pool, plot, start_ids) -> None:
        _check_flag(m, "pool", pool)
        if not pool:
            raise _refuse(
                m,
                "pool",
                False,
                "WeightWatcher 0.7.7 supports only pool=True here; rmtkit.sharpen / "
                "rmtkit.smooth work per kernel slice with an array `k` or per layer.",
            )
        _check_flag(m, "plot", plot)
        _check_int(m, "start_ids", start_ids, low=0)

    def SVDSharpness(
        self,
        model=None,
        pool=True,
        layers=[],  # noqa: B006 -- WeightWatcher's signature
        plot=False,
        start_ids=0,
        *,
        key=None,
    ):
        """Remove correlation traps (``rmtkit.sharpen``): per layer, the top singular
        components counted by the MP spikes of the randomized ESD are removed. Returns a new
        model of the input's type (a torch module or state dict, an ONNX model; the input is
        not modified, WeightWatcher modifies it in place), else a collection. ``plot=True``
        draws each layer's randomized ESD with its MP fit (:func:`rmtkit.plot_layers`) into
        ``self.figures``."""
        m = "SVDSharpness"
        self._transform_checks(m, pool, plot, start_ids)
        model = self._model(model)
        tree, found, keep = self._select(m, model, layers=layers, start_ids=start_ids)
        if not keep:
            return model
        out = self._write_back(model, rmtkit.sharpen(tree, key, layers=keep))
        if plot:
            ds = rmtkit.analyze(
                tree,
                layers=keep,
                randomize=True,
                mp_fit=True,
                key=key,
                min_evals=WW_DEFAULTS["min_evals"],
                progress=False,
            )
            self.figures = rmtkit.plot_layers(tree, ds, randomize=True, mp_fit=True, key=key)
        return out

    def SVDSmoothing(
        self,
        model=None,
        percent=0.8,
        pool=True,
        layers=[],  # noqa: B006 -- WeightWatcher's signature
        method="detX",
        fit="PL",
        plot=False,
        start_ids=0,
        svd_method="fast",
    ):
        """Keep (or drop) the top singular components of every layer, as WeightWatcher 0.7.7.

        The number ``n`` per layer: ``method="detX"`` (default) the detX tail size, ``"svd"``
        ``int(percent * M * rf)`` (``percent < 0`` drops the top ``|n|`` and keeps the
        smallest), ``"alpha_min"`` the power-law tail size (``fit``), ``"rmt"`` the MP spikes
        (rmtkit's MP fit), ``"auto"`` the MP spikes when alpha > 6, else detX; each from the
        layer's pooled spectrum as :meth:`analyze` gives it. A convolution keeps
        ``ceil(n / rf)`` components per slice. Returns a new model of the input's type (a
        torch module or state dict, an ONNX model; WeightWatcher modifies it in place), else
        a collection. ``plot`` is ignored by WeightWatcher 0.7.7 itself: only False passes.
        """
        m = "SVDSmoothing"
        self._transform_checks(m, pool, plot, start_ids)
        if plot:
            raise _refuse(m, "plot", True, "WeightWatcher 0.7.7 ignores it (draws nothing).")
        if method not in ("svd", "rmt", "detX", "alpha_min", "auto"):
            raise _refuse(
                m, "method", method, "must be 'detX', 'svd', 'alpha_min', 'rmt' or 'auto'."
            )
        if fit not in _FITS:
            raise _refuse(m, "fit", fit, f"must be one of {', '.join(map(repr, _FITS))}.")
        if method != "alpha_min":
            _no_op(m, "fit", fit, "PL", "only used by method='alpha_min'.")
        if svd_method not in _SVD_METHODS:
            raise _refuse(m, "svd_method", svd_method, "must be 'fast' or 'accurate'.")
        if isinstance(percent, bool) or not isinstance(percent, numbers.Real):
            raise _refuse(m, "percent", percent, "must be a number.")
        if method != "svd":
            _no_op(m, "percent", percent, 0.8, "only used by method='svd'.")
        model = self._model(model)
        tree, found, keep = self._select(m, model, layers=layers, start_ids=start_ids)
        if not keep:
            return model
        ds = rmtkit.analyze(
            tree,
            layers=keep,
            min_evals=0,
            fit=_FITS[fit],
            detx=method in ("detX", "auto"),
            mp_fit=method in ("rmt", "auto"),
            progress=False,
        )
        k = {}
        for i in range(ds.sizes["layer"]):
            row = ds.isel(layer=i)
            n_cols, rf = int(row["M"]), int(row["rf"])
            if method == "svd":
                n = int(percent * n_cols * rf)
            elif method == "detX":
                n = _count(row["detX_num"])
            elif method == "alpha_min":
                n = _count(row["num_pl_spikes"])
            elif method == "rmt":
                n = _count(row["num_spikes"])
            else:
                alpha = float(row["alpha"])
                n = _count(row["num_spikes"] if alpha > 6 else row["detX_num"])
            if rf > 1:
                n = int(math.ceil(n / rf))
            k[str(row["name"].values)] = n
        return self._write_back(model, rmtkit.smooth(tree, k=k, layers=keep))


def _count(value) -> int:
    """A count column of the details (NaN when unavailable: 0, the layer is left unchanged)."""
    value = float(value)
    return int(value) if math.isfinite(value) else 0


def _is_sequence(value) -> bool:  # pragma: no cover - kept for symmetry with _ww_filter
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, Mapping))


def _analyze_defaults() -> dict:
    """The options of :meth:`WeightWatcher.analyze` with their (WeightWatcher 0.7.7) defaults:
    its keyword arguments but the model, the layer selection and rmtkit's ``key``."""
    not_options = {"self", "model", "layers", "start_ids", "base_model", "key"}
    return {
        name: p.default
        for name, p in inspect.signature(WeightWatcher.analyze).parameters.items()
        if name not in not_options
    }
