r"""Training monitor: HT-SR metrics per epoch, the early-stopping signal, layer crossings.

WeightWatcher's early-stopping observation: as a model trains, its layer alphas fall; when the
*mean* alpha drops below 2 the model is likely over-fitting (the test loss stops improving)
and training may stop. Layers crossing below 2 are over-trained, above 6 under-trained
(docs/math.md §4). This module records those quantities as training proceeds:

>>> monitor = rmtkit.Monitor("run/alpha.nc")           # doctest: +SKIP
>>> for epoch in range(n_epochs):                      # doctest: +SKIP
...     train_one_epoch(model)
...     row = monitor(model, epoch, val_accuracy=acc)  # analyze, append, save
...     if monitor.should_stop:                        # mean alpha < 2
...         break
>>> monitor.history          # xarray.Dataset (epoch, layer)    # doctest: +SKIP
>>> monitor.flags            # MonitorFlags                      # doctest: +SKIP
>>> monitor.plot(savefig="run/")                                  # doctest: +SKIP

With Keras 3, ``model.fit(..., callbacks=[rmtkit.monitor.KerasMonitor(monitor)])`` does the
same at the end of every epoch (Keras is imported only when ``KerasMonitor`` is first used).
"""

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from rmtkit.core.metrics import ALPHA_OVER_TRAINED, ALPHA_UNDER_TRAINED
from rmtkit.errors import InvalidArgumentError

# KerasMonitor is built on first access (module __getattr__), so it stays out of __all__:
# a star import must not import Keras.
__all__ = ["Monitor", "MonitorFlags", "monitor_flags"]

#: summary means recorded per epoch, prefixed ``mean_`` in the history (docs/math.md §4 ``summary``)
SUMMARY_PREFIX = "mean_"
#: file name of :meth:`Monitor.plot` inside a folder
PLOT_NAME = "monitor.png"


class MonitorFlags(NamedTuple):
    """What :attr:`Monitor.flags` reports.

    early_stop_epoch : the first epoch whose mean alpha is below the threshold (2), or None.
    over_trained : layer -> first epoch it *crossed into* alpha < 2 (from >= 2 at its
        previous recorded epoch).
    under_trained : layer -> first epoch it crossed into alpha > 6.
    events : every crossing, in order, as ``(epoch, layer, label)`` with label
        "over-trained" or "under-trained" (a layer can cross several times).

    The first recorded epoch of a layer is its baseline, not a crossing (a randomly
    initialised layer is usually "under-trained" there); its labels are in the history.
    """

    early_stop_epoch: int | None
    over_trained: dict[str, int]
    under_trained: dict[str, int]
    events: tuple[tuple[int, str, str], ...]


@dataclass
class _Record:
    """One epoch: per-layer values keyed by layer label, the summary and the user metrics."""

    epoch: int
    layers: dict[str, dict[str, float]]  # label -> {metric: value}
    info: dict[str, tuple[str, int, str, int]]  # label -> (name, layer_id, kind, slice_id)
    scalars: dict[str, float] = field(default_factory=dict)


def _analyze(weights: Any, analyze_kwargs: Mapping[str, Any]) -> tuple[xr.Dataset, dict]:
    """``(details, summary)`` of a model with :func:`rmtkit.analyze` / ``summary``."""
    from rmtkit import analyze, summary

    details = analyze(weights, **{"progress": False, **analyze_kwargs})
    return details, _as_dict(summary(details))


def _as_dict(summary: Any) -> dict[str, float]:
    """A summary (dict, Dataset of 0-d variables or pandas Series) as ``{name: float}``."""
    if isinstance(summary, xr.Dataset):
        items = {k: v.values for k, v in summary.data_vars.items() if v.ndim == 0}
    elif hasattr(summary, "to_dict") and not isinstance(summary, Mapping):
        items = summary.to_dict()
    else:
        items = dict(summary)
    return {str(k): _scalar(k, v) for k, v in items.items()}


def _scalar(name: str, value: Any) -> float:
    if value is None:
        return math.nan
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(
            f"metric {name!r} must be a number, got {type(value).__name__}"
        ) from err
    if arr.size != 1:
        raise InvalidArgumentError(f"metric {name!r} must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))


def _label(name: str, slice_id: int | None) -> str:
    return name if slice_id is None or slice_id < 0 else f"{name}[slice {slice_id}]"


def _records_from_details(details: xr.Dataset, layer_metrics: Sequence[str]):
    """``(layers, info)`` of a :func:`rmtkit.analyze` Dataset."""
    extra = [d for d in details.dims if d != "layer"]
    if extra:
        raise InvalidArgumentError(
            f"the analysis of one model must have the dim 'layer' only; got also {extra}"
        )
    n = details.sizes["layer"]

    def coord(name, default):
        if name in details.coords or name in details.data_vars:
            return list(np.asarray(details[name].values).reshape(-1))
        return [default] * n

    names = [str(v) for v in coord("name", "")]
    if names == [""] * n:
        names = [f"layer{i}" for i in range(n)]
    ids = coord("layer_id", -1)
    kinds = coord("kind", "")
    slices = coord("slice_id", -1)
    layers: dict[str, dict[str, float]] = {}
    info: dict[str, tuple[str, int, str, int]] = {}
    columns = {
        m: np.asarray(details[m].values, dtype=np.float64).reshape(-1)
        for m in layer_metrics
        if m in details.data_vars
    }
    for i in range(n):
        sid = slices[i]
        sid = -1 if sid is None or not np.isfinite(float(sid)) else int(sid)
        label = _label(names[i], sid)
        layers[label] = {m: float(col[i]) for m, col in columns.items()}
        lid = ids[i]
        info[label] = (names[i], int(lid) if np.isfinite(float(lid)) else -1, str(kinds[i]), sid)
    return layers, info


def monitor_flags(
    history: xr.Dataset,
    *,
    threshold: float = ALPHA_OVER_TRAINED,
    under: float = ALPHA_UNDER_TRAINED,
) -> MonitorFlags:
    """:class:`MonitorFlags` of a monitor history (e.g. read back with ``xarray.load_dataset``).

    The mean alpha is ``mean_alpha`` (the summary's NaN-ignoring mean) when recorded, else the
    NaN-ignoring mean of the per-layer ``alpha``.
    """
    if "epoch" not in history.dims or history.sizes["epoch"] == 0:
        return MonitorFlags(None, {}, {}, ())
    epochs = [int(e) for e in history["epoch"].values]
    alpha = (
        np.asarray(history["alpha"].transpose("epoch", "layer").values, dtype=np.float64)
        if "alpha" in history.data_vars
        else np.full((len(epochs), 0), np.nan)
    )
    key = f"{SUMMARY_PREFIX}alpha"
    if key in history.data_vars:
        mean = np.asarray(history[key].values, dtype=np.float64)
    else:
        with np.errstate(all="ignore"):
            valid = np.isfinite(alpha).any(axis=1)
            mean = np.where(
                valid,
                np.nansum(alpha, axis=1) / np.maximum(np.isfinite(alpha).sum(axis=1), 1),
                np.nan,
            )
    below = np.flatnonzero(mean < threshold)
    early = epochs[below[0]] if below.size else None

    labels = (
        list(np.asarray(history["label"].values).astype(str))
        if "label" in history.coords
        else [str(i) for i in range(alpha.shape[1])]
    )
    over: dict[str, int] = {}
    under_d: dict[str, int] = {}
    events = []
    for j, label in enumerate(labels):
        previous = None
        for i, epoch in enumerate(epochs):
            a = alpha[i, j]
            if not np.isfinite(a):
                continue  # unknown: keeps the previous state
            state = "over-trained" if a < threshold else "under-trained" if a > under else ""
            if previous is not None and state and state != previous:
                events.append((epoch, label, state))
                (over if state == "over-trained" else under_d).setdefault(label, epoch)
            previous = state
    events.sort(key=lambda e: (e[0], labels.index(e[1])))
    return MonitorFlags(early, over, under_d, tuple(events))


class Monitor:
    """Record HT-SR metrics of a model once per epoch; flag the early-stopping signal.

    Each call analyses the model (:func:`rmtkit.analyze`), appends one row — per-layer
    alphas and the :func:`rmtkit.summary` means, plus any scalars you pass — to
    :attr:`history`, and (with ``path``) rewrites the history to a netCDF file atomically
    (written to a temporary file in the same folder, then renamed), so a crash never leaves a
    truncated file.

    Parameters
    ----------
    path : path, optional
        netCDF file the history is saved to after every call.
    analyze_kwargs : mapping, optional
        Keyword arguments of :func:`rmtkit.analyze` (e.g. ``min_evals``, ``layers``;
        ``progress`` defaults to False here).
    layer_metrics : sequence of str, default ("alpha",)
        Per-layer variables of the analysis recorded with dims ``(epoch, layer)``.
    threshold : float, default 2.0
        Mean alpha below which :attr:`should_stop` is True (WeightWatcher's signal).
    resume : bool, default False
        Start from the history already saved at ``path`` (e.g. a resumed training run)
        instead of overwriting it.

    Attributes
    ----------
    history : xarray.Dataset
        Dims ``(epoch, layer)``: ``alpha`` (and the other ``layer_metrics``), coords
        ``epoch``, ``label`` (layer name, with ``[slice k]`` for unpooled conv slices),
        ``name``, ``layer_id``, ``kind`` along ``layer``; dim ``(epoch,)``: ``mean_<metric>``
        for each summary metric (``mean_alpha``, ``mean_log_norm``, ...) and every scalar
        passed as ``**metrics``. Layers missing at an epoch are NaN.
    flags : MonitorFlags
        The early-stop epoch and the layers crossing into over-/under-trained.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        analyze_kwargs: Mapping[str, Any] | None = None,
        layer_metrics: Sequence[str] = ("alpha",),
        threshold: float = ALPHA_OVER_TRAINED,
        resume: bool = False,
    ):
        self.path = None if path is None else Path(path)
        self.analyze_kwargs = dict(analyze_kwargs or {})
        self.layer_metrics = tuple(layer_metrics)
        if "alpha" not in self.layer_metrics:
            self.layer_metrics = ("alpha", *self.layer_metrics)
        self.threshold = float(threshold)
        self._records: list[_Record] = []
        if resume and self.path is not None and self.path.exists():
            self._records = _records_from_history(xr.load_dataset(self.path))

    # ------------------------------------------------------------------ recording

    def __call__(
        self, model_or_collection: Any, epoch: int | None = None, **metrics: Any
    ) -> xr.Dataset:
        """Analyse the model now, record the row for ``epoch`` and save; return the row.

        Parameters
        ----------
        model_or_collection : model, collection or path
            Anything :func:`rmtkit.analyze` takes: a ``torch.nn.Module``, a Keras
            model, a weight collection, a file path; or an analysis Dataset already computed
            (dim ``layer``), recorded as is.
        epoch : int, optional
            Default: one more than the last recorded epoch (0 first). Recording an epoch
            again replaces its row.
        **metrics
            Extra scalars recorded with dim ``(epoch,)`` (``val_accuracy=0.93``, ``loss=...``).

        Returns
        -------
        xarray.Dataset
            The epoch's row of :attr:`history` (``alpha`` with dim ``layer``, scalars 0-d).
        """
        if isinstance(model_or_collection, xr.Dataset):
            details, summary = model_or_collection, _summary_of(model_or_collection)
        else:
            details, summary = _analyze(model_or_collection, self.analyze_kwargs)
        layers, info = _records_from_details(details, self.layer_metrics)
        scalars = {f"{SUMMARY_PREFIX}{k}": v for k, v in summary.items()}
        for name, value in metrics.items():
            if name in scalars or name in self.layer_metrics or name in ("epoch", "layer"):
                raise InvalidArgumentError(
                    f"metric name {name!r} clashes with a recorded variable; rename it"
                )
            scalars[name] = _scalar(name, value)
        if epoch is None:
            epoch = self._records[-1].epoch + 1 if self._records else 0
        epoch = int(epoch)
        self._records = [r for r in self._records if r.epoch != epoch]
        self._records.append(_Record(epoch, layers, info, scalars))
        self._records.sort(key=lambda r: r.epoch)
        history = self.history
        if self.path is not None:
            _save_atomic(history, self.path)
        return history.sel(epoch=epoch)

    # ------------------------------------------------------------------ results

    @property
    def history(self) -> xr.Dataset:
        """All recorded epochs as one Dataset (see the class docstring)."""
        return _history(self._records, self.layer_metrics, self.threshold)

    @property
    def flags(self) -> MonitorFlags:
        """The early-stop epoch and the layers crossing into over-/under-trained."""
        return monitor_flags(self.history, threshold=self.threshold)

    @property
    def should_stop(self) -> bool:
        """True when the latest recorded epoch's mean alpha is below ``threshold``."""
        if not self._records:
            return False
        last = self.history.isel(epoch=-1)
        mean = (
            float(last[f"{SUMMARY_PREFIX}alpha"])
            if f"{SUMMARY_PREFIX}alpha" in last
            else float(last["alpha"].mean(skipna=True))
        )
        return bool(mean < self.threshold)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"Monitor({len(self)} epochs{where})"

    def plot(
        self, savefig: str | os.PathLike | None = None, *, metrics: Sequence[str] | None = None
    ):
        """Mean and per-layer alpha against epoch, with the threshold and the early-stop epoch.

        Top panel: each layer's alpha (thin lines, colour by ``layer_id``), the mean alpha
        (thick), the over-/under-trained lines at 2 and 6 and a marker at the early-stop
        epoch. Bottom panel (when scalars were recorded): the extra metrics (``metrics``:
        which ones; default all), the way WeightWatcher shows alpha beside the test loss.

        Parameters
        ----------
        savefig : path, optional
            PNG file to write (a folder: ``monitor.png`` inside it).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from rmtkit.plot import ALPHA_HIGH, DPI, save_figure

        try:
            import matplotlib
            from matplotlib.figure import Figure
        except ModuleNotFoundError as err:  # pragma: no cover
            raise ModuleNotFoundError(
                "Monitor.plot needs matplotlib: pip install 'rmtkit[plot]'"
            ) from err
        history = self.history
        flags = self.flags
        summary_keys = {k for k in history.data_vars if k.startswith(SUMMARY_PREFIX)}
        extra = [
            k for k in history.data_vars if history[k].dims == ("epoch",) and k not in summary_keys
        ]
        if metrics is not None:
            extra = [k for k in metrics if k in history.data_vars]
        fig = Figure(figsize=(8.0, 6.4 if extra else 4.8), dpi=DPI, layout="constrained")
        axes = fig.subplots(2 if extra else 1, 1, sharex=True, squeeze=False)[:, 0]
        ax = axes[0]
        epochs = np.asarray(history["epoch"].values) if "epoch" in history.dims else np.zeros(0)
        if "alpha" in history.data_vars and history.sizes.get("layer", 0):
            alpha = history["alpha"].transpose("epoch", "layer").values
            ids = np.asarray(history["layer_id"].values, dtype=np.float64)
            span = max(np.nanmax(ids) - np.nanmin(ids), 1.0) if ids.size else 1.0
            cmap = matplotlib.colormaps["viridis"]
            for j in range(alpha.shape[1]):
                ax.plot(
                    epochs,
                    alpha[:, j],
                    "-",
                    lw=0.8,
                    alpha=0.6,
                    color=cmap((ids[j] - np.nanmin(ids)) / span),
                )
            ax.plot([], [], "-", lw=0.8, color=cmap(0.5), label="layer alpha")
        key = f"{SUMMARY_PREFIX}alpha"
        if key in history.data_vars:
            mean = history[key].values
        elif "alpha" in history.data_vars and history.sizes.get("layer", 0):
            mean = history["alpha"].mean("layer", skipna=True).values
        else:
            mean = np.full(epochs.size, np.nan)
        ax.plot(epochs, mean, "o-", color="k", lw=2.2, ms=4, label="mean alpha")
        ax.axhline(
            self.threshold,
            color="C3",
            ls="--",
            lw=1,
            label=f"α = {self.threshold:g} (over-trained below)",
        )
        ax.axhline(ALPHA_HIGH, color="C1", ls="--", lw=1, label="α = 6 (under-trained above)")
        if flags.early_stop_epoch is not None:
            ax.axvline(
                flags.early_stop_epoch,
                color="C3",
                lw=2,
                alpha=0.5,
                label=f"early stop: epoch {flags.early_stop_epoch}",
            )
        ax.set_ylabel("alpha")
        ax.set_title("Training monitor: layer alphas by epoch")
        ax.legend(loc="best", fontsize="small")
        if extra:
            bx = axes[1]
            for k, name in enumerate(extra):
                bx.plot(epochs, history[name].values, "o-", ms=3, color=f"C{k % 10}", label=name)
            bx.set_ylabel("metric")
            bx.legend(loc="best", fontsize="small")
        axes[-1].set_xlabel("epoch")
        return save_figure(fig, savefig, PLOT_NAME)


def _summary_of(details: xr.Dataset) -> dict[str, float]:
    """The summary of a ready analysis Dataset (``rmtkit.summary``)."""
    from rmtkit import summary

    return _as_dict(summary(details))


def _history(
    records: Sequence[_Record], layer_metrics: Sequence[str], threshold: float
) -> xr.Dataset:
    """Assemble the records into the history Dataset (layers: union, by layer_id then name)."""
    info: dict[str, tuple[str, int, str, int]] = {}
    for r in records:
        for label, meta in r.info.items():
            info.setdefault(label, meta)
    labels = sorted(info, key=lambda lab: (info[lab][1], info[lab][0], info[lab][3]))
    col = {label: j for j, label in enumerate(labels)}
    epochs = np.array([r.epoch for r in records], dtype=np.int64)
    data: dict[str, Any] = {}
    for m in layer_metrics:
        values = np.full((len(records), len(labels)), np.nan)
        for i, r in enumerate(records):
            for label, vals in r.layers.items():
                if m in vals:
                    values[i, col[label]] = vals[m]
        data[m] = (("epoch", "layer"), values)
    scalar_names = list(dict.fromkeys(k for r in records for k in r.scalars))
    for name in scalar_names:
        data[name] = ("epoch", np.array([r.scalars.get(name, np.nan) for r in records]))
    coords = {
        "epoch": ("epoch", epochs),
        "label": ("layer", np.array(labels, dtype=object)),
        "name": ("layer", np.array([info[lab][0] for lab in labels], dtype=object)),
        "layer_id": ("layer", np.array([info[lab][1] for lab in labels], dtype=np.int64)),
        "kind": ("layer", np.array([info[lab][2] for lab in labels], dtype=object)),
    }
    if any(info[lab][3] >= 0 for lab in labels):
        coords["slice_id"] = ("layer", np.array([info[lab][3] for lab in labels]))
    return xr.Dataset(
        data, coords=coords, attrs={"rmtkit": "Monitor history", "alpha_threshold": threshold}
    )


def _records_from_history(history: xr.Dataset) -> list[_Record]:
    """Inverse of :func:`_history` (for ``resume=True``)."""
    n_layers = history.sizes.get("layer", 0)

    def coord(name, default):
        if name in history.coords:
            return list(np.asarray(history[name].values).reshape(-1))
        return [default] * n_layers

    labels = [str(v) for v in coord("label", "")]
    names, ids = coord("name", ""), coord("layer_id", -1)
    kinds, slices = coord("kind", ""), coord("slice_id", -1)
    info = {
        lab: (str(names[j]), int(ids[j]), str(kinds[j]), int(slices[j]))
        for j, lab in enumerate(labels)
    }
    per_layer = [k for k in history.data_vars if history[k].dims == ("epoch", "layer")]
    per_layer_t = {k: history[k].transpose("epoch", "layer").values for k in per_layer}
    scalars = [k for k in history.data_vars if history[k].dims == ("epoch",)]
    records = []
    for i, epoch in enumerate(np.asarray(history["epoch"].values)):
        layers = {}
        for j, lab in enumerate(labels):
            vals = {k: float(per_layer_t[k][i, j]) for k in per_layer}
            if any(np.isfinite(v) for v in vals.values()):
                layers[lab] = vals
        records.append(
            _Record(
                int(epoch),
                layers,
                {lab: info[lab] for lab in layers},
                {k: float(history[k].values[i]) for k in scalars},
            )
        )
    return records


def _save_atomic(history: xr.Dataset, path: Path) -> None:
    """Write ``history`` to ``path`` (netCDF) via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        history.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# Keras 3 callback, created on first use so that importing this module never imports Keras.


def _make_keras_monitor():
    try:
        import keras
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "rmtkit.monitor.KerasMonitor needs Keras 3: pip install 'rmtkit[keras]'"
        ) from err

    class KerasMonitor(keras.callbacks.Callback):
        """Keras 3 callback: ``monitor(model, epoch, **logs)`` at the end of every epoch.

        Parameters
        ----------
        monitor : Monitor, optional
            Where the history goes (default: a new :class:`Monitor` without a file).
        stop_training : bool, default False
            Stop ``model.fit`` when the mean alpha falls below the monitor's threshold
            (WeightWatcher's early-stopping signal).
        every : int, default 1
            Analyse every ``every`` epochs only (analysis of a large model takes time).
        """

        def __init__(
            self, monitor: Monitor | None = None, *, stop_training: bool = False, every: int = 1
        ):
            super().__init__()
            self.monitor = Monitor() if monitor is None else monitor
            self.stop_on_signal = bool(stop_training)
            self.every = max(int(every), 1)

        def on_epoch_end(self, epoch, logs=None):
            if epoch % self.every:
                return
            scalars = {}
            for name, value in (logs or {}).items():
                try:
                    scalars[str(name)] = float(np.asarray(value).reshape(()))
                except (TypeError, ValueError):
                    continue  # non-scalar logs are not recorded
            self.monitor(self.model, epoch=epoch, **scalars)
            if self.stop_on_signal and self.monitor.should_stop:
                self.model.stop_training = True

    KerasMonitor.__module__ = __name__
    return KerasMonitor


def __getattr__(name: str):
    """Build :class:`KerasMonitor` (importing Keras) on first access (PEP 562)."""
    if name == "KerasMonitor":
        cls = _make_keras_monitor()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
