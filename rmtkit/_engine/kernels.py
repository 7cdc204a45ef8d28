r"""The bucket kernels: every row of a bucket fitted by one compiled, vmapped call.

Spectra of different lengths are padded to a few bucket lengths
(:func:`rmtkit.bucket_length` from :data:`FIT_BUCKET_MIN` up, :func:`rmtkit.pad_spectra`) and
fitted :func:`batch_size` rows at a time by **one** jitted ``jax.vmap`` per kernel, option set,
bucket length and batch size, in float64: the power-law fit (:func:`rmtkit.fit_pl`, or
:func:`rmtkit.fit_tpl`) with :func:`rmtkit.spectral_metrics`, and, as asked, the
Marchenko-Pastur fit (:func:`rmtkit.mp_fit`), detX (:func:`rmtkit.detx`), the statistics of
the randomized spectra and the power law's goodness of fit (:func:`rmtkit.pl_pvalue`, its
bootstrap for every row of the bucket in the same call, and :func:`rmtkit.pl_compare`). So a
200-layer model compiles a handful of kernels, and the compiled executables are kept on disk
between processes (:mod:`rmtkit._engine.stored`).

Each kernel returns float64 arrays by variable name; the names, by group, are this module's
``*_VARS`` constants (the columns of :func:`rmtkit.analyze`). Count sentinels: a failed MP fit,
detX or trap count gives -1 (the labeled layer turns it into NaN).
"""

import functools
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rmtkit._engine.stored import stored_kernel
from rmtkit.core.esd import bucket_length
from rmtkit.core.gof import pl_compare, pl_pvalue
from rmtkit.core.metrics import WEAK_RANK_TOL, spectral_metrics, weak_rank_loss
from rmtkit.core.mp import mp_fit
from rmtkit.core.powerlaw import EVALS_THRESH, fit_pl
from rmtkit.core.spacing import level_spacing
from rmtkit.core.svd import detx
from rmtkit.core.tpl import fit_tpl
from rmtkit.core.traps import rand_distance

__all__ = [
    "ALPHA_METRIC_VARS",
    "COMPARE_VARS",
    "DETX_VARS",
    "FINGER_VARS",
    "FIT_BUCKET_MIN",
    "FIT_VARS",
    "GOF_BUCKET_MIN",
    "GOF_VARS",
    "MP_VARS",
    "METRIC_VARS",
    "RAND_VARS",
    "SPACING_VARS",
    "TPL_VARS",
    "KernelOptions",
    "batch_size",
    "gof_length",
    "run_gof",
    "run_kernels",
    "warm_up_gof",
]

#: smallest bucket length of the model-level fits: compiling a kernel costs seconds, fitting a
#: padded 256-value spectrum microseconds, so small spectra share the 256 bucket (the public
#: :func:`rmtkit.bucket_length` starts at its own, smaller default)
FIT_BUCKET_MIN = 256

#: the power-law (or TPL) fit
FIT_VARS = ("alpha", "xmin", "xmax", "D", "sigma", "num_pl_spikes")
#: :func:`rmtkit.spectral_metrics` of the row (``spectral_norm`` = ``lambda_max``)
METRIC_VARS = (
    "num_evals",
    "alpha_weighted",
    "log_alpha_norm",
    "lambda_max",
    "spectral_norm",
    "norm",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "entropy",
    "matrix_rank",
    "rank_loss",
    "weak_rank_loss",
)
#: the metrics of :data:`METRIC_VARS` that depend on alpha
ALPHA_METRIC_VARS = ("alpha_weighted", "log_alpha_norm")
#: ``fix_fingers="clip_xmax"``
FINGER_VARS = ("raw_alpha", "num_fingers")
#: ``fit="TPL"`` / ``"E_TPL"``
TPL_VARS = ("Lambda",)
#: ``randomize=True``
RAND_VARS = (
    "rand_distance",
    "max_rand_eval",
    "ww_softrank",
    "ww_maxdist",
    "num_traps",
    "rand_sigma_mp",
    "rand_mp_softrank",
    "rand_bulk_max",
)
#: ``mp_fit=True``
MP_VARS = ("sigma_mp", "bulk_min", "bulk_max", "num_spikes", "mp_softrank", "W_scale")
#: ``detx=True``
DETX_VARS = ("detX_num", "detX_val")
#: ``gof=True``: the likelihood ratios of :func:`rmtkit.pl_compare` (docs/math.md §12) ...
COMPARE_VARS = (
    "R_lognormal",
    "p_lognormal",
    "R_exponential",
    "p_exponential",
    "R_stretched_exp",
    "p_stretched_exp",
    "R_tpl",
    "p_tpl",
)
#: ... and, first, the CSN p-value of the power law and its Monte-Carlo error
GOF_VARS = ("pl_pvalue", "pl_pvalue_se") + COMPARE_VARS
#: ``spacing=True``: level spacing of the bulk (docs/math.md §11.2)
SPACING_VARS = ("mean_spacing_ratio", "spacing_ks_wigner", "spacing_ks_poisson")


@dataclass(frozen=True)
class KernelOptions:
    """Static options of the bucket kernels (hashable: the jit cache key)."""

    fit: str = "PL"
    xmin_method: str = "search"
    xmin_max: float | None = None
    xmax: Any = None
    fix_fingers: str | None = None
    mp_fit: bool = False
    detx: bool = False
    max_fingers: int = 10
    finger_thresh: float = 1.0
    tolerance: float = WEAK_RANK_TOL
    spacing: bool = False
    gof: bool = False
    n_boot: int = 0
    key_impl: str = "threefry2x32"

    def fit_only(self) -> "KernelOptions":
        """The options the fit kernel depends on (its cache key): switching ``mp_fit``,
        ``detx``, ``spacing`` or ``gof`` on reuses the compiled fit."""
        return replace(
            self, mp_fit=False, detx=False, spacing=False, gof=False, n_boot=0, key_impl=""
        )

    def compare_only(self) -> "KernelOptions":
        """The options the comparison kernel of the goodness of fit depends on (its cache
        key): the xmin rule."""
        return KernelOptions(xmin_method=self.xmin_method, xmin_max=self.xmin_max, gof=True)

    def gof_only(self) -> "KernelOptions":
        """The options the goodness-of-fit kernel depends on (its cache key)."""
        return KernelOptions(
            xmin_method=self.xmin_method,
            xmin_max=self.xmin_max,
            gof=True,
            n_boot=self.n_boot,
            key_impl=self.key_impl,
        )

    def variables(self, randomize: bool) -> list[str]:
        """The names of the values the kernels give a row, in table order."""
        names = list(FIT_VARS) + list(METRIC_VARS)
        if self.fix_fingers is not None:
            names += FINGER_VARS
        if self.fit != "PL":
            names += TPL_VARS
        if randomize:
            names += RAND_VARS
        if self.mp_fit:
            names += MP_VARS
        if self.detx:
            names += DETX_VARS
        if self.gof:
            names += GOF_VARS
        if self.spacing:
            names += SPACING_VARS
        return names


def batch_size(length: int) -> int:
    """Fixed rows per kernel call for a bucket length (bounded memory, one compile per length)."""
    if length <= 512:
        return 16
    if length <= 2048:
        return 8
    if length <= 8192:
        return 2
    return 1


def _as_f64(values: dict) -> dict:
    return {k: jnp.asarray(v).astype(jnp.float64) for k, v in values.items()}


def _fit_row(evals, mask, n_rows, opts: KernelOptions) -> dict:
    """The fit and the docs/math.md §4 metrics of one row (traced under vmap)."""
    out = {}
    if opts.fit == "PL":
        f = fit_pl(
            evals,
            mask,
            xmin_method=opts.xmin_method,
            xmin_max=opts.xmin_max,
            xmax=opts.xmax,
            fix_fingers=opts.fix_fingers,
            max_fingers=opts.max_fingers,
            finger_thresh=opts.finger_thresh,
        )
        alpha = f.alpha
        out.update(
            alpha=f.alpha,
            xmin=f.xmin,
            xmax=f.xmax,
            D=f.D,
            sigma=f.sigma,
            num_pl_spikes=f.num_pl_spikes,
        )
        if opts.fix_fingers is not None:
            out.update(raw_alpha=f.raw_alpha, num_fingers=f.num_fingers)
    else:
        method = "search" if opts.fit == "TPL" else "peak"
        t = fit_tpl(evals, mask, xmin_method=method, xmin_max=opts.xmin_max)
        alpha = t.alpha
        top = jnp.max(jnp.where(mask, evals, -jnp.inf))
        out.update(
            alpha=t.alpha,
            Lambda=t.Lambda,
            xmin=t.xmin,
            xmax=jnp.where(t.ok, top, jnp.nan),
            D=t.D,
            sigma=t.sigma,
            num_pl_spikes=t.n_tail,
        )
    m = spectral_metrics(evals, mask, alpha=alpha, n_rows=n_rows)
    for name in METRIC_VARS:
        out[name] = m.lambda_max if name == "spectral_norm" else getattr(m, name)
    if opts.tolerance != WEAK_RANK_TOL:  # WeightWatcher's ``tolerance``
        out["weak_rank_loss"] = weak_rank_loss(evals, mask, tol=opts.tolerance)
    return _as_f64(out)


def _mp_row(evals, mask, q, m_slice) -> dict:
    """Marchenko-Pastur fit of one row, with the slice's Q and M (docs/math.md §5)."""
    mp = mp_fit(evals, mask, Q=q, M=m_slice)
    return _as_f64(
        dict(
            sigma_mp=mp.sigma,
            bulk_min=mp.bulk_min,
            bulk_max=mp.bulk_max,
            num_spikes=jnp.where(mp.ok, mp.num_spikes, -1),
            mp_softrank=mp.mp_softrank,
            W_scale=mp.W_scale,
        )
    )


def _detx_row(evals, mask) -> dict:
    """detX tail of one row (docs/math.md §8)."""
    d = detx(evals, mask)
    return _as_f64({"detX_num": jnp.where(d.ok, d.detX_num, -1), "detX_val": d.detX_val})


def _rand_row(evals, mask, rand_evals, max_rand_eval, q, m_slice) -> dict:
    r"""Randomization statistics of one row (docs/math.md §6, as
    :func:`rmtkit.correlation_traps`): the MP fit of the randomized spectrum (``num_traps`` = its
    spikes), ``rand_distance``, ``ww_softrank`` = max_rand_eval / :math:`\lambda_{\max}`,
    ``ww_maxdist``."""
    fit = mp_fit(rand_evals, mask, Q=q, M=m_slice, margin="ww")
    lam_max = jnp.max(jnp.where(mask, evals, -jnp.inf))
    ok = fit.ok & jnp.isfinite(lam_max) & (lam_max > 0)
    safe_max = jnp.where(ok, lam_max, 1.0)
    out = dict(
        rand_distance=rand_distance(evals, rand_evals, mask),
        max_rand_eval=max_rand_eval,
        ww_softrank=max_rand_eval / safe_max,
        ww_maxdist=lam_max - max_rand_eval,
        num_traps=jnp.where(fit.ok, fit.num_spikes, -1),
        rand_sigma_mp=fit.sigma,
        rand_mp_softrank=fit.mp_softrank,
        rand_bulk_max=fit.bulk_max,
    )
    nan = jnp.asarray(jnp.nan, jnp.float64)
    return {k: jnp.where(ok | (k == "rand_distance"), v, nan) for k, v in _as_f64(out).items()}


def _bootstrap_row(evals, mask, key_data, opts: KernelOptions) -> dict:
    """The CSN p-value of one row's power law (docs/math.md §12): :func:`rmtkit.pl_pvalue`
    with ``opts.n_boot`` replicates, all refitted in this call, and the fit's xmin options."""
    key = jax.random.wrap_key_data(key_data, impl=opts.key_impl)
    p = pl_pvalue(
        evals,
        mask,
        key=key,
        n_boot=opts.n_boot,
        xmin_method=opts.xmin_method,
        xmin_max=opts.xmin_max,
    )
    return _as_f64(dict(pl_pvalue=p.p_value, pl_pvalue_se=p.se))


def _compare_row(evals, mask, opts: KernelOptions) -> dict:
    """The likelihood-ratio tests of one row's power law (docs/math.md §12):
    :func:`rmtkit.pl_compare` with the fit's xmin options."""
    c = pl_compare(evals, mask, xmin_method=opts.xmin_method, xmin_max=opts.xmin_max)
    return _as_f64({name: getattr(c, name) for name in COMPARE_VARS})


def _spacing_row(evals, mask, xmin) -> dict:
    """Level spacing of one row's bulk: the eigenvalues above the fit threshold and below the
    power-law ``xmin`` (all of them above the threshold when ``xmin`` is NaN); docs/math.md
    §11.2."""
    above = mask & (evals > EVALS_THRESH)
    bulk = above & jnp.where(jnp.isfinite(xmin), evals < xmin, True)
    s = level_spacing(evals, bulk)
    return _as_f64(
        dict(
            mean_spacing_ratio=s.mean_ratio,
            spacing_ks_wigner=s.ks_wigner,
            spacing_ks_poisson=s.ks_poisson,
        )
    )


_ROW_FUNCTIONS = {"mp": _mp_row, "detx": _detx_row, "rand": _rand_row, "spacing": _spacing_row}


@functools.cache
def _kernel_fn(what: str, opts: KernelOptions | None = None):
    """The vmapped per-bucket kernel (not jitted), one per option set: ``"fit"`` (fit +
    metrics, keyed by the fit options), ``"bootstrap"`` and ``"compare"`` (the goodness of
    fit, keyed by its options), ``"mp"``,
    ``"detx"``, ``"rand"``."""
    if what == "fit":
        return jax.vmap(functools.partial(_fit_row, opts=opts))
    if what == "bootstrap":
        return jax.vmap(functools.partial(_bootstrap_row, opts=opts))
    if what == "compare":
        return jax.vmap(functools.partial(_compare_row, opts=opts))
    return jax.vmap(_ROW_FUNCTIONS[what])


def _call_kernel(what: str, opts: KernelOptions | None, *args):
    """Run the bucket kernel :func:`_kernel_fn` through its stored executable
    (:func:`rmtkit._engine.stored.stored_kernel`: a fresh process loads it instead of tracing,
    lowering and compiling it). Same computation, same results as ``jax.jit`` of it."""
    return _stored(what, opts, *args)(*args)


def _stored(what: str, opts: KernelOptions | None, *args):
    """The stored executable of :func:`_kernel_fn` for ``args``' shapes (loaded, or compiled
    and stored, on first use in the process), not run."""
    return stored_kernel(_kernel_fn(what, opts), f"{what}|{opts!r}", *args)


def run_kernels(opts: KernelOptions, evals, mask, n_rows, q, m_slice, rand=None) -> dict:
    """The kernels of one padded chunk (fit + metrics, and MP / detX / randomization as
    asked), as host arrays by variable name. ``rand`` is ``(rand_evals, max_rand_eval)``."""
    out = dict(_call_kernel("fit", opts.fit_only(), evals, mask, n_rows))
    if opts.mp_fit:
        out.update(_call_kernel("mp", None, evals, mask, q, m_slice))
    if opts.detx:
        out.update(_call_kernel("detx", None, evals, mask))
    if rand is not None:
        out.update(_call_kernel("rand", None, evals, mask, rand[0], rand[1], q, m_slice))
    if opts.spacing:
        out.update(_call_kernel("spacing", None, evals, mask, out["xmin"]))
    return jax.device_get(out)


#: shortest padded length of a row's bootstrap kernel: the bootstrap refits the row ``n_boot``
#: times, so each row is padded to its own bucket (:func:`gof_length`), not to its fit's (from
#: :data:`FIT_BUCKET_MIN`)
GOF_BUCKET_MIN = 32


def gof_length(size: int) -> int:
    """Padded length of the bootstrap kernel of a row of ``size`` eigenvalues:
    :func:`rmtkit.bucket_length` from :data:`GOF_BUCKET_MIN` up."""
    return bucket_length(size, min_length=GOF_BUCKET_MIN)


def warm_up_gof(what: str, opts: KernelOptions, length: int) -> None:
    """Load (or compile and store) the ``"compare"`` or ``"bootstrap"`` kernel of
    :func:`run_gof` at ``length``, without running it (a bootstrap on padding would still
    refit ``n_boot`` samples)."""
    evals, mask = np.ones((1, length)), np.zeros((1, length), bool)
    if what == "compare":
        _stored(what, opts.compare_only(), evals, mask)
    else:
        key = jax.random.key_data(jax.random.key(0, impl=opts.key_impl))
        _stored(what, opts.gof_only(), evals, mask, np.asarray(key)[None])


def run_gof(opts: KernelOptions, evals, mask, keys) -> dict:
    """The goodness of fit of the rows of ``evals`` (padded at the end to their fit bucket's
    length), one row per call: the likelihood-ratio tests (:func:`_compare_row`) at that
    length, the bootstrap (:func:`_bootstrap_row`) at the row's :func:`gof_length` (so no row
    is refitted ``n_boot`` times at a longer length, or for padding rows). ``keys`` are the
    rows' key data (``jax.random.key_data``). Host arrays by variable name
    (:data:`GOF_VARS`)."""
    compare_opts = opts.compare_only()
    parts = []
    for row in range(evals.shape[0]):
        length = gof_length(int(np.sum(mask[row])))
        one = slice(row, row + 1)
        out = dict(_call_kernel("compare", compare_opts, evals[one], mask[one]))
        args = (evals[one, :length], mask[one, :length], keys[one])
        out.update(_call_kernel("bootstrap", opts.gof_only(), *args))
        parts.append(jax.device_get(out))
    return {k: np.concatenate([p[k] for p in parts]) for k in GOF_VARS} if parts else {}
