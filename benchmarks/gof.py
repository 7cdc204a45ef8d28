"""Benchmark: the CSN goodness of fit (docs/math.md §12) against the ``powerlaw`` package, and
``analyze(gof=True)`` against ``analyze()``.

1. ``rmtkit.pl_pvalue`` with 1,000 replicates on a 1,024-eigenvalue spectrum (issue 16 target:
   <= 5 s on a 2-core CPU), against the ``powerlaw`` package (1.4.6) doing the same bootstrap:
   its per-replicate cost (``powerlaw.Fit`` of a synthetic sample: the same xmin search and
   KS distance) is measured in the same run on a few samples and multiplied by 1,000 (target:
   >= 100x faster).
2. ``rmtkit.analyze(gof=True, n_boot=200)`` on the embedded model against ``rmtkit.analyze()``
   (target: within 3x), both after a first call that compiles (and stores) the kernels.

Timings are medians of ``--repeats`` runs (the machine may be shared).

    python benchmarks/gof.py [--repeats 5] [--powerlaw-fits 5] [--n-boot 1000]
"""

import argparse
import statistics
import time
import warnings

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import rmtkit  # noqa: E402


def spectrum(n: int = 1024) -> np.ndarray:
    """The ESD of a heavy-tailed 2n x n matrix (Student t, 3 degrees of freedom): n values."""
    w = np.random.default_rng(0).standard_t(3.0, size=(2 * n, n))
    return np.asarray(rmtkit.esd(w))


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls of ``fn`` (results blocked on)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def powerlaw_replicate_seconds(x: np.ndarray, fits: int) -> float:
    """Median time of one ``powerlaw.Fit`` (xmin search + KS) on CSN bootstrap samples of x."""
    import powerlaw

    fit = rmtkit.fit_pl(x)
    xs = np.sort(x)
    start = xs.size - int(fit.num_pl_spikes)
    rng = np.random.default_rng(1)
    times = []
    for _ in range(fits):
        from_pl = rng.random(xs.size) < (xs.size - start) / xs.size
        pl = float(fit.xmin) * (1.0 - rng.random(xs.size)) ** (-1.0 / (float(fit.alpha) - 1.0))
        sample = np.where(from_pl, pl, xs[rng.integers(0, max(start, 1), xs.size)])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            powerlaw.Fit(sample, discrete=False, verbose=False).power_law.D  # noqa: B018
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--powerlaw-fits", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()

    x = spectrum()
    key = jax.random.key(0)
    start = time.perf_counter()
    first = rmtkit.pl_pvalue(x, key=key, n_boot=args.n_boot)
    jax.block_until_ready(first)
    compile_s = time.perf_counter() - start
    med, runs = timed(lambda: rmtkit.pl_pvalue(x, key=key, n_boot=args.n_boot), args.repeats)
    print(
        f"pl_pvalue n=1024 B={args.n_boot}: first call {compile_s:.1f} s; "
        f"median {med:.2f} s ({', '.join(f'{t:.2f}' for t in runs)}); "
        f"p = {float(first.p_value):.3f} +- {float(first.se):.3f}  [target <= 5 s]"
    )
    per_fit = powerlaw_replicate_seconds(x, args.powerlaw_fits)
    baseline = per_fit * args.n_boot
    print(
        f"powerlaw 1.4.6: {per_fit:.3f} s per replicate fit x {args.n_boot} = {baseline:.0f} s; "
        f"rmtkit is {baseline / med:.0f}x faster  [target >= 100x]"
    )

    model = rmtkit.load(rmtkit.data_path())
    start = time.perf_counter()
    rmtkit.analyze(model, progress=False)
    plain_first = time.perf_counter() - start
    start = time.perf_counter()
    rmtkit.analyze(model, gof=True, n_boot=200, progress=False)
    gof_first = time.perf_counter() - start
    plain, _ = timed(lambda: rmtkit.analyze(model, progress=False), args.repeats)
    gof, _ = timed(
        lambda: rmtkit.analyze(model, gof=True, n_boot=200, progress=False), args.repeats
    )
    print(
        f"embedded model: analyze() {plain * 1e3:.0f} ms, analyze(gof=True, n_boot=200) "
        f"{gof * 1e3:.0f} ms: {gof / plain:.1f}x  [target <= 3x]; first calls "
        f"{plain_first:.1f} s and {gof_first:.1f} s"
    )


if __name__ == "__main__":
    main()
