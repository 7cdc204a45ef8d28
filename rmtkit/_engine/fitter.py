"""Fitting rows bucket by bucket while the layers are still being read.

Rows (:class:`rmtkit._engine.rows.Row`) with a spectrum are grouped by bucket length
(:func:`rmtkit.bucket_length` from :data:`rmtkit._engine.kernels.FIT_BUCKET_MIN` up); a
bucket's chunk of :func:`rmtkit._engine.kernels.batch_size` rows is fitted
(:func:`rmtkit._engine.kernels.run_kernels`) as soon as it is full, so the kernels run while the
worker threads compute the next spectra. Rows arrive in layer order, so each chunk holds the
same rows as if they were all collected first: the results do not depend on the timing.

The kernels of a bucket are made ready (loaded from disk, or compiled) on a background thread as
soon as the bucket's first row arrives, by one call on a chunk of padding alone, while the
worker threads still compute spectra: a fresh process no longer loads them serially when the
first chunk is fitted (often at the end, for a small model). The chunk waits for that call, so
a kernel is never loaded twice, and the rows' values come from the chunk's own call. With
``gof``, the goodness-of-fit kernels a row needs (the comparison at its bucket length, the
bootstrap at its own :func:`rmtkit._engine.kernels.gof_length`) are made ready the same way, on
two more threads (each takes seconds to compile).
"""

from concurrent.futures import Future, ThreadPoolExecutor

import jax
import numpy as np

from rmtkit._engine.kernels import (
    FIT_BUCKET_MIN,
    RAND_VARS,
    KernelOptions,
    batch_size,
    gof_length,
    run_gof,
    run_kernels,
    warm_up_gof,
)
from rmtkit._engine.rows import Row
from rmtkit.core.esd import bucket_length, pad_spectra

__all__ = ["GOF_STREAM", "Fitter", "gof_key", "gof_keys"]

#: the goodness-of-fit bootstrap of row (layer_id, slice_id) draws from
#: ``fold_in(fold_in(fold_in(key, GOF_STREAM), layer_id), slice_id)`` (apart from the
#: randomization's ``fold_in(key, layer_id)``)
GOF_STREAM = 0x60F


def gof_key(key, layer_id: int, slice_id: int):
    """The bootstrap key of row ``(layer_id, slice_id)`` of an analysis with ``key`` (typed):
    ``fold_in(fold_in(fold_in(key, GOF_STREAM), layer_id), slice_id)``."""
    base = jax.random.fold_in(key, GOF_STREAM)
    return jax.random.fold_in(jax.random.fold_in(base, layer_id), slice_id)


def gof_keys(key, rows: list[Row], size: int) -> np.ndarray:
    """The key data of the rows' bootstrap keys (:func:`gof_key`), padded to ``size`` rows
    with the first one: a row's key depends on its layer and slice only, not on its bucket.
    One compiled call for the chunk (each eager ``fold_in`` costs a dispatch)."""
    ids = [(r.layer_id, r.slice_id) for r in rows]
    ids += [ids[0]] * (size - len(rows))
    layer_ids, slice_ids = (np.asarray(v, np.uint32) for v in zip(*ids, strict=True))
    return np.asarray(_row_key_data(key, layer_ids, slice_ids))


@jax.jit
def _row_key_data(key, layer_ids, slice_ids):
    """``key_data`` of :func:`gof_key` for each ``(layer_ids[i], slice_ids[i])``."""
    return jax.vmap(lambda lid, sid: jax.random.key_data(gof_key(key, lid, sid)))(
        layer_ids, slice_ids
    )


def _rand_inputs(chunk: list[Row], length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded randomized spectra and ``max_rand_eval`` of a chunk (rows without: NaN)."""
    rand = np.ones((size, length))
    top = np.full(size, np.nan)
    for i, r in enumerate(chunk):
        if r.rand_evals is not None:
            rand[i, : r.rand_evals.size] = r.rand_evals
            top[i] = r.values["max_rand_eval"]
    return rand, top


def _spread(values: np.ndarray, index: list[int], size: int) -> np.ndarray:
    """``values`` at rows ``index`` of a length-``size`` float array, NaN elsewhere."""
    out = np.full(size, np.nan)
    out[index] = values
    return out


def _padded_inputs(chunk: list[Row], length: int, size: int) -> tuple:
    """The kernels' inputs for a chunk of rows padded to ``size`` rows of ``length``: evals,
    mask, n_rows, q, m_slice (padding rows: all masked, sizes 1)."""
    evals, mask = pad_spectra([r.evals for r in chunk], length=length)
    pad = size - len(chunk)
    evals = np.concatenate([evals, np.ones((pad, length))]).astype(np.float64)
    mask = np.concatenate([mask, np.zeros((pad, length), bool)])
    n_rows = np.array([r.N for r in chunk] + [1] * pad, np.float64)
    q = np.array([r.N / r.M for r in chunk] + [1.0] * pad, np.float64)
    m_slice = np.array([r.M for r in chunk] + [1] * pad, np.float64)
    return evals, mask, n_rows, q, m_slice


def _fit_chunk(chunk: list[Row], length: int, size: int, opts: KernelOptions, key=None) -> None:
    """Run the kernels on one chunk of rows of a bucket (padded to ``size`` rows of
    ``length``); fill ``row.values``."""
    evals, mask, n_rows, q, m_slice = _padded_inputs(chunk, length, size)
    rand = None
    if any(r.rand_evals is not None for r in chunk):
        rand = _rand_inputs(chunk, length, size)
    with jax.enable_x64(True):
        out = run_kernels(opts, evals, mask, n_rows, q, m_slice, rand)
        tested = [i for i, r in enumerate(chunk) if not r.warning]  # scale-only rows: no test
        if opts.gof and tested:
            gof = run_gof(opts, evals[tested], mask[tested], gof_keys(key, chunk, size)[tested])
            out.update({k: _spread(v, tested, size) for k, v in gof.items()})
    for i, r in enumerate(chunk):
        r.values.update(
            {
                k: float(v[i])
                for k, v in out.items()
                if r.rand_evals is not None or k not in RAND_VARS
            }
        )


def _warm_up(length: int, size: int, opts: KernelOptions, randomized: bool) -> None:
    """Load (or compile) the kernels of a bucket by one call on padding alone (module
    docstring); its outputs are dropped."""
    rand = _rand_inputs([], length, size) if randomized else None
    with jax.enable_x64(True):
        run_kernels(opts, *_padded_inputs([], length, size), rand)


#: kernels (kind, length, ...) this process has made ready already: a kernel stays loaded once
#: its warm-up has run, so later analyses do not warm it up again
_WARMED: set = set()


def _warm_up_gof(what: str, opts: KernelOptions, length: int) -> None:
    """:func:`rmtkit._engine.kernels.warm_up_gof` in float64, as the kernels run."""
    with jax.enable_x64(True):
        warm_up_gof(what, opts, length)


class Fitter:
    """Fits rows in bucket chunks as they arrive (module docstring); :meth:`finish` fits the
    partial chunks."""

    def __init__(self, opts: KernelOptions, key=None):
        self.opts = opts
        self.key = key  # the analysis key (typed), for the goodness-of-fit bootstrap
        self.waiting: dict[int, list[Row]] = {}
        self.ready: dict[tuple[int, bool], Future] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.gof_ready: dict[tuple[str, int], Future] = {}
        self.gof_pool: ThreadPoolExecutor | None = None

    def _prepare_gof(self, row: Row, length: int) -> None:
        """With ``gof``: start making the goodness-of-fit kernels of a tested row ready in the
        background, two at a time (compiling them takes seconds each; once per kernel, length
        and process): the comparison at the fit bucket ``length``, the bootstrap at its own."""
        if not self.opts.gof or row.warning:
            return
        for what, size in (("compare", length), ("bootstrap", gof_length(row.evals.size))):
            warmed = (what, size, self.opts.gof_only())
            if warmed not in _WARMED:
                _WARMED.add(warmed)
                if self.gof_pool is None:
                    self.gof_pool = ThreadPoolExecutor(
                        max_workers=2, thread_name_prefix="rmtkit-gof-kernels"
                    )
                self.gof_ready[(what, size)] = self.gof_pool.submit(
                    _warm_up_gof, what, self.opts, size
                )

    def _prepare(self, length: int, randomized: bool) -> None:
        """Start making the kernels of a bucket ready in the background (once per bucket and
        process: a later analysis finds them loaded)."""
        warmed = ("fit", length, randomized, self.opts)
        if warmed in _WARMED:
            return
        _WARMED.add(warmed)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rmtkit-kernels")
        self.ready[(length, randomized)] = self.pool.submit(
            _warm_up, length, batch_size(length), self.opts, randomized
        )

    def _fit(self, group: list[Row], length: int) -> None:
        """Fit one chunk once its bucket's kernels are ready (a failed warm-up is ignored: the
        chunk's own call loads the kernels and raises what there is to raise)."""
        keys = [("compare", length)] + [("bootstrap", gof_length(r.evals.size)) for r in group]
        futures = [self.ready.get((length, False)), self.ready.get((length, True))]
        for future in futures + [self.gof_ready.get(key) for key in keys]:
            if future is not None:
                future.exception()  # wait; the outcome is the chunk's own call's
        _fit_chunk(group, length, batch_size(length), self.opts, self.key)

    def add(self, rows: list[Row]) -> None:
        """Queue rows (each with a spectrum to fit); fit any bucket chunk now full."""
        for r in rows:
            length = bucket_length(r.evals.size, min_length=FIT_BUCKET_MIN)
            self._prepare(length, r.rand_evals is not None)
            self._prepare_gof(r, length)
            group = self.waiting.setdefault(length, [])
            group.append(r)
            if len(group) == batch_size(length):
                self._fit(group, length)
                self.waiting[length] = []

    def finish(self) -> None:
        """Fit the partial chunks."""
        try:
            for length, group in sorted(self.waiting.items()):
                if group:
                    self._fit(group, length)
            self.waiting.clear()
        finally:
            for pool in (self.pool, self.gof_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self.pool = self.gof_pool = None
