"""Benchmark: exact routes to one layer's eigenvalues on a CPU, and the precision contract.

For each ``N x M`` shape (heavy-tailed float32 weights, as a model stores them) every route
computes the M eigenvalues of W^T W in float64 on **one BLAS thread** (how the analysis runs
each layer: one layer per core), timed in the same process (wall and CPU seconds: on a shared
machine the CPU seconds are the steadier measure), with ratios ("ratio": how many times faster
than the baseline) against the route rmtkit used before issue 18 (the float64 Gram matrix and
numpy's ``eigvalsh``, LAPACK ``dsyevd``). Every route's eigenvalues are compared with float64
SVD values (``dgesdd``), the reference of docs/math.md §1: max relative error over the
eigenvalues >= 1e-6 lambda_max, and whether the contract (1e-5) holds.

Routes:

- ``gram+dsyevd``: float64 Gram matrix (:func:`rmtkit._engine.host.gram64`) + numpy
  ``eigvalsh`` (one-stage tridiagonal reduction ``dsytrd``: half of it matrix-vector products,
  memory-bound at large M);
- ``gram+dsyevd_2stage``: the same Gram matrix, LAPACK's two-stage reduction (dense -> band
  with matrix-matrix products, band -> tridiagonal by bulge chasing), values only
  (:func:`rmtkit._engine.host.eigvalsh64`, numpy's bundled OpenBLAS through LAPACKE);
- ``svd``: float64 SVD values of W itself (``numpy.linalg.svd(compute_uv=False)``);
- ``qr+svd``: Householder QR of W (``numpy.linalg.qr(mode="r")``), then SVD values of R;
- ``gram32+eigvalsh``: float32 Gram matrix and eigensolve, for scale (it misses the contract).

    python benchmarks/eig_routes.py --shapes 1024x1024 2048x2048 4096x4096 11008x4096
    python benchmarks/eig_routes.py --shapes 11008x4096 --routes gram+dsyevd gram+dsyevd_2stage
"""

import argparse
import time

import numpy as np

from rmtkit._engine.executor import blas_threads
from rmtkit._engine.host import eigvalsh64, gram64, two_stage_available

#: docs/math.md §1: relative error allowed for eigenvalues >= FLOOR * lambda_max
CONTRACT, FLOOR = 1e-5, 1e-6


def _svd(w: np.ndarray) -> np.ndarray:
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    return np.sort(s * s)


def _qr_svd(w: np.ndarray) -> np.ndarray:
    r = np.linalg.qr(w.astype(np.float64), mode="r")
    s = np.linalg.svd(r, compute_uv=False)
    return np.sort(s * s)


def _gram32(w: np.ndarray) -> np.ndarray:
    return np.linalg.eigvalsh(w.T @ w).astype(np.float64)


ROUTES = {
    "gram+dsyevd": lambda w: np.linalg.eigvalsh(gram64(w)),
    "gram+dsyevd_2stage": lambda w: eigvalsh64(gram64(w), two_stage=True),
    "svd": _svd,
    "qr+svd": _qr_svd,
    "gram32+eigvalsh": _gram32,
}
BASELINE = "gram+dsyevd"


def weights(n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    """Heavy-tailed (Student-t, 3 dof) float32 weights, oriented ``n_rows >= n_cols``."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(3.0, (n_rows, n_cols)) * 0.02).astype(np.float32)


def max_rel_error(evals: np.ndarray, ref: np.ndarray) -> float:
    """Max relative error of ``evals`` against ``ref`` over ``ref >= FLOOR * max(ref)``."""
    keep = ref >= FLOOR * ref[-1]
    return float(np.max(np.abs(evals[keep] - ref[keep]) / ref[keep]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["1024x1024", "2048x2048", "4096x4096"])
    parser.add_argument("--routes", nargs="+", choices=sorted(ROUTES), default=sorted(ROUTES))
    parser.add_argument("--repeats", type=int, default=1, help="timings per route (median)")
    args = parser.parse_args()
    routes = [BASELINE] + [r for r in args.routes if r != BASELINE]
    print(f"two-stage LAPACK found: {two_stage_available()}; 1 BLAS thread; float32 weights")
    print(f"{'':>33}{'wall s':>9}{'ratio':>11}{'CPU s':>9}{'ratio':>11}")
    print(f"{'shape':>12} {'route':<20}{'':>40}{'max rel err':>13}  contract")
    for shape in args.shapes:
        n_rows, n_cols = (int(x) for x in shape.lower().split("x"))
        w = weights(max(n_rows, n_cols), min(n_rows, n_cols))
        with blas_threads(1):
            ref = _svd(w) if "svd" not in routes else None
            seconds, cpu, results = {}, {}, {}
            for name in routes:
                times, cpus = [], []
                for _ in range(args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    results[name] = ROUTES[name](w)
                    times.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                seconds[name], cpu[name] = float(np.median(times)), float(np.median(cpus))
            ref = results.get("svd", ref)
        for name in routes:
            err = max_rel_error(results[name], ref)
            print(
                f"{shape:>12} {name:<20}{seconds[name]:9.2f}"
                f"{seconds[BASELINE] / seconds[name]:10.2f}x{cpu[name]:9.2f}"
                f"{cpu[BASELINE] / cpu[name]:10.2f}x{err:13.1e}  "
                f"{'yes' if err <= CONTRACT else 'NO'}"
            )


if __name__ == "__main__":
    main()
