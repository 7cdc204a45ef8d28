"""A familiar front for people coming from WeightWatcher: ``rmtkit.WeightWatcher(model)``.

The methods keep WeightWatcher 0.7.7's names and argument names where they make sense and
return pandas objects, but compute with rmtkit (so docs/math.md §9's fixes apply: a failed fit is
NaN, not -1, and is not averaged into the summary; conv N/M are correct; randomization is seeded;
``get_ESD`` returns the spectrum ``analyze`` fits). Differences worth knowing:

* ``min_evals`` defaults to rmtkit's 50 (WeightWatcher: 8); smaller layers still get a row, with
  NaN alpha and ``warning = "too-few-evals"``. Pass ``min_evals=8`` for WeightWatcher's rows.
* For n < 20 eigenvalues the small-n rule of docs/math.md §2 applies (argmin D - 0.868/sqrt(n)).
* ``details`` has rmtkit's columns (``name``, ``kind``, ``layer_id``, ``N``, ``M``, ``Q``,
  ``rf``, metrics, ``warning``) plus ``layer_type`` (= ``kind``) for old scripts.
"""

from typing import Any

import numpy as np

from rmtkit import DEFAULT_MIN_EVALS, analyze, describe, model_distances, spectra, summary
from rmtkit.errors import InvalidArgumentError

__all__ = ["WeightWatcher"]

_FRONT = ["layer_id", "name", "kind", "layer_type", "N", "M", "Q", "rf", "slice_id"]


def _frame(ds):
    """A Dataset with dim ``layer`` as a WeightWatcher-style DataFrame (one row per layer)."""
    df = ds.to_dataframe().reset_index(drop=True)
    if "kind" in df:
        df["layer_type"] = df["kind"]
    front = [c for c in _FRONT if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]


def _layers_arg(layers):
    """WeightWatcher's ``layers=[]`` means all layers."""
    if layers is None or (isinstance(layers, (list, tuple)) and len(layers) == 0):
        return None
    return layers


class WeightWatcher:
    """``WeightWatcher(model).analyze()`` and friends, on rmtkit (see the module docstring).

    Parameters
    ----------
    model : optional
        A collection, a torch / keras / ONNX model, a state dict, a path... (anything
        :func:`rmtkit.load` reads). Each method also takes ``model=`` to override it.
    log_level : ignored
        Accepted for compatibility.
    """

    def __init__(self, model: Any = None, log_level: Any = None):
        self.model = model
        self.details = None
        self.results = None

    def _model(self, model):
        model = self.model if model is None else model
        if model is None:
            raise InvalidArgumentError(
                "no model: pass one to WeightWatcher(model) or to the method (model=...)."
            )
        return model

    def analyze(
        self,
        model: Any = None,
        layers=None,
        min_evals: int = DEFAULT_MIN_EVALS,
        max_evals: int | None = None,
        plot: bool = False,
        randomize: bool = False,
        mp_fit: bool = False,
        pool: bool = True,
        savefig: Any = None,
        fix_fingers: str | None = None,
        xmin_max: float | None = None,
        fit: str = "PL",
        detX: bool = False,
        base_model: Any = None,
        peft: str | bool = False,
        key: Any = None,
        **unused,
    ):
        """Per-layer metrics as a pandas DataFrame (kept as ``self.details``).

        ``fix_fingers`` is ``None``, ``"clip_xmax"`` or ``"xmin_peak"`` (= ``xmin_method="peak"``);
        ``base_model`` gives ``base=``; ``peft`` True/"delta" or "merged" analyses a LoRA adapter
        folder passed as the model. ``plot=True`` / ``savefig`` draw with ``rmtkit.plot`` when it
        exists. Other WeightWatcher options are accepted and ignored.
        """
        xmin_method = "search"
        if fix_fingers == "xmin_peak":
            fix_fingers, xmin_method = None, "peak"
        lora = "merged" if peft == "merged" else "delta"
        ds = analyze(
            self._model(model),
            layers=_layers_arg(layers),
            min_evals=min_evals,
            max_evals=max_evals,
            pool=pool,
            fit=fit,
            xmin_method=xmin_method,
            xmin_max=xmin_max,
            fix_fingers=fix_fingers,
            randomize=randomize,
            mp_fit=mp_fit,
            detx=detX,
            base=base_model,
            lora=lora,
            key=key,
            progress=False,
        )
        self.results = ds
        self.details = _frame(ds)
        if plot or savefig:
            try:
                from rmtkit import plot as rplot
            except ImportError as err:
                raise InvalidArgumentError(
                    "plot=True needs rmtkit.plot (and matplotlib): pip install 'rmtkit[plot]'"
                ) from err
            rplot.plot_model(ds, savefig=savefig if isinstance(savefig, str) else None)
        return self.details

    def describe(
        self,
        model: Any = None,
        layers=None,
        min_evals: int = DEFAULT_MIN_EVALS,
        max_evals: int | None = None,
        pool: bool = True,
        **unused,
    ):
        """The rows :meth:`analyze` would give (sizes, no computation) as a DataFrame."""
        return _frame(
            describe(
                self._model(model),
                layers=_layers_arg(layers),
                min_evals=min_evals,
                max_evals=max_evals,
                pool=pool,
            )
        )

    def get_details(self):
        """The DataFrame of the last :meth:`analyze` (``None`` before)."""
        return self.details

    def get_summary(self, details=None):
        """Means of log_norm, alpha, alpha_weighted, log_alpha_norm, log_spectral_norm,
        stable_rank (+ mp_softrank), ignoring NaN, as a pandas Series."""
        import pandas as pd

        if details is None:
            if self.results is None:
                raise InvalidArgumentError("no details yet: call analyze() first or pass them.")
            ds = self.results
        elif isinstance(details, pd.DataFrame):
            ds = details.reset_index(drop=True).rename_axis("layer").to_xarray()
        else:
            ds = details
        out = summary(ds)
        return pd.Series({k: float(v) for k, v in out.data_vars.items()}, dtype=float)

    def get_ESD(self, model: Any = None, layer: Any = None, pool: bool = True):
        """The eigenvalues ``analyze`` fits for one layer (numpy, ascending).

        ``layer`` is a ``layer_id`` (int) or a name (node path / pattern); default: the first
        layer. Conv layers are pooled times ½ as in :meth:`analyze` (WeightWatcher's
        ``get_ESD`` omits the ½: docs/math.md §9).
        """
        layers = None if layer is None else [layer]
        da = spectra(self._model(model), layers=layers, pool=pool)
        row = da.isel(layer=0).values
        return row[~np.isnan(row)]

    def distances(self, model_1: Any, model_2: Any, layers=None, method: str = "euclidean"):
        """``(average distance, per-layer DataFrame)`` between two models' weights.

        ``method``: "euclidean" (= Frobenius norm of the difference), "cosine" or "cka".
        """
        names = {
            "euclidean": "frobenius",
            "frobenius": "frobenius",
            "cosine": "cosine",
            "cka": "cka",
            "CKA": "cka",
        }
        if method not in names:
            raise InvalidArgumentError(
                f"`method` must be 'euclidean', 'cosine' or 'cka'; got {method!r}."
            )
        ds = model_distances(model_1, model_2, method=names[method], layers=_layers_arg(layers))
        df = _frame(ds).rename(columns={names[method]: "delta_W"})
        return float(np.nanmean(df["delta_W"])) if df["delta_W"].notna().any() else float("nan"), df

    def _write_back(self, model, collection):
        """The transformed model in the input's own type where an adapter can write it."""
        from rmtkit.adapters import write_back

        out = write_back(model, collection)
        return collection if out is None else out

    def SVDSharpness(
        self, model: Any = None, layers=None, key: Any = None, mode: str = "zero", **unused
    ):
        """Remove correlation traps (``rmtkit.sharpen``); returns a new model of the same type
        for torch modules and ONNX models (the input is not modified), else a collection."""
        from rmtkit import sharpen

        model = self._model(model)
        return self._write_back(model, sharpen(model, key, mode=mode, layers=_layers_arg(layers)))

    def SVDSmoothing(
        self, model: Any = None, percent: float = 0.2, layers=None, method: str = "svd", **unused
    ):
        """Keep the top singular components (``rmtkit.smooth``): ``method="svd"`` keeps
        ``round(percent * M)`` per slice; "detX", "alpha_min", "rmt" choose by the spectrum."""
        from rmtkit import smooth

        model = self._model(model)
        how = "percent" if method == "svd" else method
        return self._write_back(
            model, smooth(model, how, percent=percent, layers=_layers_arg(layers))
        )
