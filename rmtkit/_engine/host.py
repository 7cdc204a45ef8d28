r"""Host (numpy / LAPACK) spectra of whole layers: the fast route of the model-level analysis.

:func:`rmtkit.esd` is the pure-JAX, differentiable spectrum (and the GPU path). A model's
analysis only needs the eigenvalues, once per layer, so on a CPU it takes the fastest LAPACK
route measured on the reference machine (docs/math.md §1, ``benchmarks/analyze_floor.py``): numpy's
``eigvalsh`` (``dsyevd``) of the float64 Gram matrix :math:`G = A^\top A` of the smaller side
of each :math:`N \times M` slice :math:`A` (:math:`N \ge M`), formed block by block
(:func:`gram64`). numpy rather than scipy because numpy's LAPACK calls release the GIL, so the
analysis runs one layer per core on threads (one BLAS thread each), which beats one layer at a
time on all cores (``dsytrd`` is half memory-bound and scales poorly over cores).

Float64 keeps every eigenvalue :math:`\ge 10^{-6}\lambda_{\max}` within :math:`10^{-9}`
relative of float64 SVD values (a float32 eigensolve would not: its absolute error is
:math:`\sim 10^{-7}\lambda_{\max}`). Very thin slices (:math:`M \le` :data:`SVD_BELOW`) use
``numpy.linalg.svd(compute_uv=False)`` instead.

Large Gram matrices (:math:`M \ge` :data:`TWO_STAGE_FROM`, e.g. every matrix of an LLM) are
diagonalised by LAPACK's two-stage symmetric eigensolver, values only (``dsyevd_2stage``:
dense to band with matrix-matrix products, band to tridiagonal by bulge chasing, then
``dsterf``), called through the LAPACKE interface of the OpenBLAS numpy already loaded
(:func:`eigvalsh64`). ``dsyevd``'s one-stage reduction spends half its flops in
matrix-vector products that stream the whole matrix from memory at every column; at
:math:`M = 4096` on one core the two-stage solver takes about half the time, with the same
accuracy (both are backward stable; measured: ``benchmarks/eig_routes.py``). Where no
two-stage LAPACKE is found (another BLAS), numpy's ``eigvalsh`` is used: same contract, the
machine's own choice, so results stay deterministic on a given machine.

The Gram route resolves eigenvalues only down to :math:`\sim M\epsilon\lambda_{\max}` (its
round-off), i.e. singular values down to :math:`\sim\sqrt\epsilon\, s_{\max}`, while
``matrix_rank`` counts :math:`s_i > N \epsilon s_{\max}`. So a slice whose smallest Gram eigenvalue
is below :data:`GRAM_FLOOR` :math:`\cdot M\lambda_{\max}` (numerically rank-deficient or nearly
so, where the rank matters) is recomputed with float64 SVD values; full-rank slices, the vast
majority, keep the fast route.

The conventions are those of :func:`rmtkit.esd` exactly (raw units, slices
``W[:, :, i(, j)]`` oriented :math:`N \ge M`, pooled convolution spectra times ``conv_norm``,
unpooled ones times ``rf * conv_norm``, ``normalize`` divides by :math:`N`); the tests check
both routes agree.
"""

import ctypes
import functools

import numpy as np

from rmtkit._engine.executor import loaded_openblas
from rmtkit.core.esd import (
    CONV_NORM,
    canonical_slices,
    combine_slices,
    from_canonical_slices,
    oriented_slices,
)

__all__ = [
    "GRAM_FLOOR",
    "LARGE_GRAM",
    "SVD_BELOW",
    "TWO_STAGE_FROM",
    "eigvalsh64",
    "footprint",
    "gram64",
    "gram_resolved",
    "host_esd",
    "host_randomize",
    "host_slices",
    "key_rng",
    "svd_evals",
    "two_stage_available",
]

#: slices with at most this many columns use ``numpy.linalg.svd`` values (faster than eigh there)
SVD_BELOW = 8
#: a Gram spectrum with :math:`\lambda_{\min}/\lambda_{\max}` below ``GRAM_FLOOR * M`` is
#: recomputed by SVD: the float64 Gram eigensolve has absolute error
#: :math:`\lesssim M\epsilon\lambda_{\max}` (:math:`\epsilon = 2.2\times10^{-16}`), so above
#: 100x that every eigenvalue, the smallest included, is resolved to ~1 % or better and the
#: rank is certain; below it the slice is (numerically) rank-deficient and SVD values decide.
GRAM_FLOOR = 100 * float(np.finfo(np.float64).eps)


def host_slices(w: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`rmtkit.esd.slices`: ``(rf, N, M)`` oriented slices (views)."""
    return oriented_slices(w, np)


#: rows of a float32 slice converted to float64 at a time while forming its Gram matrix
BLOCK_ELEMENTS = 1 << 22


def gram64(a: np.ndarray) -> np.ndarray:
    r""":math:`G = A^\top A` in float64 for an ``N x M`` slice ``A``.

    Accumulated over row blocks of :data:`BLOCK_ELEMENTS` entries converted to float64 one
    block at a time, so a float32 layer never has a full float64 copy: extra memory
    :math:`8M^2` bytes + one block. numpy's ``matmul`` (not scipy's ``dsyrk``, which has half
    the flops) because it releases the GIL: layers run in parallel on threads.
    """
    n_rows, n_cols = a.shape
    # numpy computes X^T X (and X X^T) as one BLAS syrk when both operands share a buffer
    wide = a.T if a.flags.f_contiguous and not a.flags.c_contiguous else None  # A = wide^T
    if a.dtype == np.float64:
        return a.T @ a if wide is None else wide @ wide.T
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    gram = None
    for start in range(0, n_rows, step):
        if wide is None:
            block = a[start : start + step].astype(np.float64)
            part = block.T @ block
        else:
            block = wide[:, start : start + step].astype(np.float64)
            part = block @ block.T
        if gram is None:
            gram = part
        else:
            gram += part
    return gram


def gram_resolved(evals: np.ndarray) -> np.ndarray:
    r"""Whether float64 Gram spectra (ascending, ``(..., M)``) resolve their smallest
    eigenvalue: :math:`\lambda_{\min} \ge` :data:`GRAM_FLOOR` :math:`\cdot M\lambda_{\max}`;
    where not, SVD values decide (:func:`svd_evals`)."""
    return evals[..., 0] >= GRAM_FLOOR * evals.shape[-1] * evals[..., -1]


def svd_evals(a: np.ndarray) -> np.ndarray:
    """Ascending squared singular values of one slice, float64 SVD (no Gram round-off)."""
    s = np.linalg.svd(np.asarray(a, dtype=np.float64), compute_uv=False)
    return np.sort(s * s)


#: Gram matrices at least this large use the two-stage eigensolver (:func:`eigvalsh64`)
TWO_STAGE_FROM = 2048
#: a model with a Gram matrix at least this large runs its layers on fewer workers with more
#: BLAS threads each (:func:`rmtkit._engine.executor.layer_workers`)
LARGE_GRAM = 4096
#: LAPACKE's ``matrix_layout`` for column-major storage: a C-ordered symmetric matrix is its
#: own column-major transpose, so LAPACKE works on it in place (row-major would copy it)
_COL_MAJOR = 102
#: LAPACKE names of ``dsyevd_2stage`` in the OpenBLAS builds numpy ships or links, with the
#: width of their integers (ILP64 builds: 64 bits)
_TWO_STAGE_SYMBOLS = (
    ("scipy_LAPACKE_dsyevd_2stage64_", ctypes.c_int64),
    ("LAPACKE_dsyevd_2stage64_", ctypes.c_int64),
    ("scipy_LAPACKE_dsyevd_2stage", ctypes.c_int32),
    ("LAPACKE_dsyevd_2stage", ctypes.c_int32),
)


@functools.cache
def _two_stage():
    """``(function, integer type)`` of LAPACKE ``dsyevd_2stage`` in an OpenBLAS loaded in
    this process (:func:`rmtkit._engine.executor.loaded_openblas`), or None.

    The names are tried in :data:`_TWO_STAGE_SYMBOLS` order over all libraries, so the ILP64
    build numpy ships (the library of numpy's own ``linalg``) is chosen whenever it is there,
    whatever else is loaded. Called through ``ctypes``, which releases the GIL during the call
    (as numpy's own LAPACK calls do), so layers still run in parallel on threads.
    """
    np.linalg.eigvalsh(np.eye(2))  # numpy's LAPACK is loaded
    libraries = []
    for path in loaded_openblas() or []:
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    for name, int_type in _TWO_STAGE_SYMBOLS:
        for lib in libraries:
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            fn.restype = int_type
            fn.argtypes = [
                ctypes.c_int,  # matrix_layout
                ctypes.c_char,  # jobz
                ctypes.c_char,  # uplo
                int_type,  # n
                ctypes.c_void_p,  # a
                int_type,  # lda
                ctypes.c_void_p,  # w
            ]
            return fn, int_type
    return None


def two_stage_available() -> bool:
    """Whether LAPACKE ``dsyevd_2stage`` was found (:func:`eigvalsh64` uses it)."""
    return _two_stage() is not None


def eigvalsh64(gram: np.ndarray, *, two_stage: bool | None = None) -> np.ndarray:
    r"""Ascending eigenvalues of a symmetric float64 matrix (``gram`` may be overwritten).

    ``two_stage=None`` (default): LAPACK's two-stage solver (``dsyevd_2stage``, values only)
    for :math:`M \ge` :data:`TWO_STAGE_FROM` when it is available, else numpy's ``eigvalsh``
    (``dsyevd``); ``True`` / ``False`` force one (``True`` falls back to numpy when it is not
    available). Both are backward stable: eigenvalue errors :math:`O(M\epsilon\|G\|)`.

    Raises
    ------
    numpy.linalg.LinAlgError
        The eigensolver did not converge (as numpy's ``eigvalsh`` raises).
    """
    n = gram.shape[0]
    found = _two_stage() if (n >= TWO_STAGE_FROM if two_stage is None else two_stage) else None
    if found is None:
        return np.linalg.eigvalsh(gram)
    fn, int_type = found
    gram = np.ascontiguousarray(gram, dtype=np.float64)
    evals = np.empty(n, dtype=np.float64)
    info = fn(_COL_MAJOR, b"N", b"L", int_type(n), gram.ctypes.data, int_type(n), evals.ctypes.data)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsyevd_2stage: info = {info} (no convergence)")
    return evals


def _slice_evals(a: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of ``a.T @ a`` (float64) for one ``N x M`` slice, ``N >= M``.

    numpy's LAPACK calls (``eigvalsh``: ``dsyevd``; ``svd``) and the two-stage solver
    (:func:`eigvalsh64`, ctypes) release the GIL, scipy's f2py wrappers do not: measured, two
    threads of numpy run two layers at once, of scipy one.
    """
    if a.shape[1] > SVD_BELOW:
        try:
            evals = eigvalsh64(gram64(a))
        except np.linalg.LinAlgError:  # no convergence: the SVD values decide
            return svd_evals(a)
        if gram_resolved(evals):
            return evals
    return svd_evals(a)


def footprint(shape, itemsize: int) -> int:
    """Bytes one layer of this shape needs while :func:`host_esd` runs (matrix, Gram, block)."""
    n_cols = min(shape[0], shape[1])
    return int(np.prod(shape, dtype=np.int64)) * itemsize + 8 * n_cols * n_cols + 8 * BLOCK_ELEMENTS


def host_esd(
    w: np.ndarray, *, normalize: bool = False, pool: bool = True, conv_norm: float = CONV_NORM
) -> np.ndarray:
    """Eigenvalues of one layer, float64, with the conventions of :func:`rmtkit.esd`.

    Returns shape ``(M,)`` for a 2-D ``w``, ``(rf*M,)`` pooled, ``(rf, M)`` unpooled; ascending.
    ``w`` must be finite (the caller checks).
    """
    w = np.asarray(w)
    stack = host_slices(w)
    _, n_rows, _ = stack.shape
    evals = np.stack([_slice_evals(a) for a in stack])  # (rf, M)
    return combine_slices(
        evals,
        ndim=w.ndim,
        n_rows=n_rows,
        normalize=normalize,
        pool=pool,
        conv_norm=conv_norm,
        xp=np,
    )


def key_rng(key) -> np.random.Generator:
    """A numpy ``Generator`` determined by a ``jax.random`` key (its raw key data) alone.

    The host randomization draws with numpy (Fisher–Yates in C: ~10x faster than
    ``jax.random.permutation``'s sorts on a CPU); the stream depends only on the explicit key.
    """
    import jax

    data = np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(data.tolist())))


def host_randomize(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Permute the entries of ``w`` uniformly at random, independently per convolution slice.

    The host twin of :func:`rmtkit.randomize` (same law, docs/math.md §6: each slice
    ``W[:, :, i(, j)]`` keeps its multiset of entries), drawn from ``rng``.
    """
    w = np.asarray(w)
    slices = canonical_slices(w, np)
    flat = slices.reshape(slices.shape[0], -1)
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        out[i] = row[rng.permutation(row.size)]
    return from_canonical_slices(out.reshape(slices.shape), w.shape, np)
