"""One row's goodness of fit as :func:`rmtkit.analyze` ``(gof=True)`` computed it (docs/math.md
§12), with what the table leaves out: the synthetic KS distances of the bootstrap and the fitted
alternatives, for the per-layer figures (:func:`rmtkit.plot_layers`)."""

from typing import Any

import jax
import numpy as np

from rmtkit._engine.fitter import gof_key
from rmtkit._engine.kernels import FIT_BUCKET_MIN, gof_length
from rmtkit.analysis.options import DEFAULT_N_BOOT
from rmtkit.core import validate
from rmtkit.core.esd import bucket_length, pad_spectra
from rmtkit.core.gof import PowerLawComparison, PowerLawPValue, pl_compare, pl_pvalue
from rmtkit.errors import InvalidArgumentError

__all__ = ["layer_gof"]


def layer_gof(
    evals: Any,
    *,
    layer_id: int,
    slice_id: int = 0,
    key: Any = None,
    n_boot: int = DEFAULT_N_BOOT,
    xmin_method: str = "search",
    xmin_max: float | None = None,
) -> tuple[PowerLawPValue, PowerLawComparison]:
    r"""The goodness of fit of one row of :func:`rmtkit.analyze` ``(gof=True)``, replicate
    for replicate: :func:`rmtkit.pl_pvalue` (with its ``D_boot``) and :func:`rmtkit.pl_compare`
    of the row's spectrum, in float64, padded as the analysis' kernels pad it (the bootstrap to
    :func:`rmtkit._engine.kernels.gof_length`, the comparison to the row's fit bucket) and
    keyed as the analysis keys row ``(layer_id, slice_id)``, so ``p_value`` and ``se`` are the row's
    ``pl_pvalue`` and ``pl_pvalue_se`` and the ``R_*`` / ``p_*`` fields its likelihood ratios
    (docs/math.md §12).

    Parameters
    ----------
    evals : array, shape (n,)
        The row's spectrum (:func:`rmtkit.spectra`; NaN padding dropped).
    layer_id, slice_id : int
        The row's ``layer_id`` and ``slice_id`` (0 for a pooled or dense row).
    key : jax.random key or int, optional
        The ``key`` of the analysis (default ``jax.random.key(0)``, as there).
    n_boot, xmin_method, xmin_max
        The options of the analysis (``details.attrs``).

    Returns
    -------
    (PowerLawPValue, PowerLawComparison)

    Raises
    ------
    InvalidArgumentError
        A bad ``n_boot``, key or fit option.
    """
    validate.positive(n_boot, "n_boot", integer=True)
    for name, value in (("layer_id", layer_id), ("slice_id", slice_id)):
        if not validate.is_int(value):
            raise InvalidArgumentError(f"`{name}` must be an int; got {value!r}.")
    row_key = gof_key(validate.as_key(key), int(layer_id), int(slice_id))
    x = np.asarray(evals, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    fit_kw = dict(xmin_method=xmin_method, xmin_max=xmin_max)

    def padded(length):  # the row as the kernels get it: a batch of one, padded at the end
        values, mask = pad_spectra([x], length=length)
        return np.asarray(values, dtype=np.float64), np.asarray(mask)

    def pvalue(values, valid):
        return pl_pvalue(values, valid, key=row_key, n_boot=int(n_boot), **fit_kw)

    with jax.enable_x64(True):
        out = (
            jax.vmap(pvalue)(*padded(gof_length(x.size))),
            jax.vmap(lambda v, m: pl_compare(v, m, **fit_kw))(
                *padded(bucket_length(x.size, min_length=FIT_BUCKET_MIN))
            ),
        )
        return jax.tree.map(lambda v: np.asarray(v)[0], jax.device_get(out))
