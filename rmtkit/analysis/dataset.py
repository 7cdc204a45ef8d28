"""Rows in, ``xarray.Dataset`` out: the table every per-layer function returns.

Dim ``layer``; coordinates ``name`` (node path), ``kind``, ``layer_id``, ``N``, ``M``, ``Q`` (=
N/M), ``rf`` (kernel slices), ``source`` (the stored tensor the row was read from, as the file
names it), ``quant`` (how it was stored: ``""`` for float weights, e.g. ``"int8 per-channel"``,
``"int4 block 32"``, ``"Q4_K"``; docs/math.md §10) and, for unpooled rows, ``slice_id``; one
float variable per metric
(NaN when unavailable) and the string variable ``warning`` (:class:`rmtkit.errors.RowWarning`).
"""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from rmtkit._engine.rows import Row

__all__ = ["TABLE_COLUMNS", "netcdf_attrs", "rows_dataset", "table_columns"]

#: the columns a per-layer table shows (the CLI's, the HTML report's), in this order
TABLE_COLUMNS = (
    "layer_id",
    "name",
    "kind",
    "quant",
    "slice_id",
    "N",
    "M",
    "num_evals",
    "alpha",
    "D",
    "num_pl_spikes",
    "alpha_weighted",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "Lambda",
    "num_fingers",
    "sigma_mp",
    "num_spikes",
    "rand_distance",
    "num_traps",
    "detX_num",
    "pl_pvalue",
    "warning",
)


def table_columns(ds: xr.Dataset) -> list[str]:
    """The :data:`TABLE_COLUMNS` that ``ds`` holds per layer, in order; ``quant`` only when
    some layer was stored quantized (a float model has nothing to show there)."""
    have = {c for c in (*ds.data_vars, *ds.coords) if ds[c].dims == ("layer",)}
    columns = [c for c in TABLE_COLUMNS if c in have]
    if "quant" in columns and not (np.asarray(ds["quant"].values) != "").any():
        columns.remove("quant")
    return columns


def rows_dataset(
    rows: list[Row], variables: Sequence[str], *, pool: bool, attrs: dict
) -> xr.Dataset:
    """The Dataset of ``rows``: their coordinates, the ``variables`` (a row without a value is
    NaN; ``num_evals`` defaults to the size of the row's spectrum) and ``warning``."""
    n = len(rows)
    coords = {
        "name": ("layer", np.array([r.name for r in rows], dtype=object).astype(str)),
        "kind": ("layer", np.array([r.kind for r in rows], dtype=object).astype(str)),
        "layer_id": ("layer", np.array([r.layer_id for r in rows], dtype=np.int64)),
        "N": ("layer", np.array([r.N for r in rows], dtype=np.int64)),
        "M": ("layer", np.array([r.M for r in rows], dtype=np.int64)),
        "Q": ("layer", np.array([r.N / r.M for r in rows], dtype=np.float64)),
        "rf": ("layer", np.array([r.rf for r in rows], dtype=np.int64)),
        "source": ("layer", _strings([r.source for r in rows])),
        "quant": ("layer", _strings([r.quant for r in rows])),
    }
    if not pool:
        coords["slice_id"] = ("layer", np.array([r.slice_id for r in rows], dtype=np.int64))
    data = {}
    for name in variables:
        col = np.full(n, np.nan)
        for i, r in enumerate(rows):
            if name in r.values:
                col[i] = r.values[name]
            elif name == "num_evals":
                col[i] = r.evals.size if r.evals is not None else r.n_expected
        data[name] = ("layer", col)
    data["warning"] = ("layer", np.array([str(r.warning) for r in rows], dtype=object).astype(str))
    if n == 0:
        data["warning"] = ("layer", np.zeros(0, dtype="<U1"))
    return xr.Dataset(data, coords=coords, attrs=netcdf_attrs(attrs))


def _strings(values: list[str]) -> np.ndarray:
    """A fixed-width string column (``<U1`` when empty: netCDF stores it as text)."""
    return np.array(values, dtype=object).astype(str) if values else np.zeros(0, dtype="<U1")


def _attr(value) -> str | int | float:
    """A netCDF-safe attribute value."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return str(value)


def netcdf_attrs(attrs: dict) -> dict:
    """``attrs`` with every value netCDF can store (None and bools as strings)."""
    return {k: _attr(v) for k, v in attrs.items()}
