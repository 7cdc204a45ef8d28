"""Benchmark: rmtkit.fit_pl against the plain-numpy loop of the same search (WW's algorithm).

Prints, for each n, the compile time, the run time after compile (best of repeats), the numpy
loop's time measured in the same run, their ratio, and whether alpha / xmin / D are identical.
Issue 2 target: >= 10x faster than the loop at n = 4096 on a 2-core CPU.

    python benchmarks/fit_pl.py [--sizes 512 1024 4096 16384] [--dtype float32|float64]
"""

import argparse
import time

import jax
import numpy as np


def numpy_loop_fit(evals: np.ndarray) -> tuple[float, float, float]:
    """WeightWatcher 0.7.7's WWFit.fit_power_law_standard, as a plain loop (the baseline)."""
    data = np.sort(evals[evals > 1e-5]).astype(np.float64)
    n_all = data.size
    log_data = np.log(data)
    alphas = np.zeros(n_all - 1)
    ds = np.ones(n_all - 1)
    for i, xmin in enumerate(data[:-1]):
        n = float(n_all - i)
        alpha = 1 + n / (np.sum(log_data[i:]) - n * log_data[i])
        alphas[i] = alpha
        if alpha > 1:
            ds[i] = np.max(np.abs(1 - (data[i:] / xmin) ** (-alpha + 1) - np.arange(n) / n))
    i = int(np.argmin(ds))
    return float(alphas[i]), float(data[i]), float(ds[i])


def synthetic_spectrum(n: int, rng: np.random.Generator) -> np.ndarray:
    """A trained-layer-like ESD of n eigenvalues: a Marchenko-Pastur-like bulk (gamma, 85 %)
    and a power-law tail (alpha = 2.5, 15 %) above it. Diagonalising an n x n heavy-tailed
    matrix instead would take minutes at n = 16384 and measure LAPACK, not the fit."""
    n_tail = n * 15 // 100
    bulk = rng.gamma(4.0, 0.25, size=n - n_tail)
    tail = bulk.max() * (1.0 - rng.random(n_tail)) ** (-1.0 / 1.5)
    return np.sort(np.concatenate([bulk, tail]))


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 4096, 16384])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import rmtkit

    fit = jax.jit(rmtkit.fit_pl)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, spectra {args.dtype}, "
        "synthetic bulk + power-law tail spectra"
    )
    print(
        f"{'n':>6} {'compile s':>10} {'rmtkit ms':>10} {'loop ms':>10} {'speed-up':>9} "
        f"{'identical':>9}"
    )
    for n in args.sizes:
        evals = synthetic_spectrum(n, np.random.default_rng(n)).astype(args.dtype)
        t0 = time.perf_counter()
        jax.block_until_ready(fit(evals))
        compile_s = time.perf_counter() - t0
        ours = best_time(lambda e=evals: jax.block_until_ready(fit(e)), args.repeats)
        loop = best_time(lambda e=evals: numpy_loop_fit(e), 1 if n > 4096 else args.repeats)
        f = fit(evals)
        ref = numpy_loop_fit(evals)
        same = np.allclose([float(f.alpha), float(f.xmin), float(f.D)], ref, rtol=1e-6)
        print(
            f"{n:>6} {compile_s:>10.2f} {ours * 1e3:>10.2f} {loop * 1e3:>10.1f} "
            f"{loop / ours:>8.1f}x {str(same):>9}"
        )


if __name__ == "__main__":
    main()
