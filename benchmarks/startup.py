"""Benchmark: what a fresh process pays before rmtkit computes anything, import by import.

Each step runs in fresh interpreters (``--runs``, medians), after the steps before it, so a
line is the cost of that step alone: ``numpy``, ``ml_dtypes`` (JAX's dtype library),
``jax``, ``rmtkit``, the labeled layer (``rmtkit.analysis``: xarray + pandas) and, with dask
installed, whether a first Dataset imported dask. Wall and CPU seconds (on a shared machine
the CPU seconds are the steadier measure).

Variants of the environment -- folders put first on ``PYTHONPATH`` (``--pythonpath``), e.g.
another version of one package installed with ``pip install --target`` -- are measured in the
same run, interleaved run by run, with the ratios of their totals to the environment as
installed:

    python benchmarks/startup.py
    pip install --no-deps --target /tmp/ml070 ml_dtypes==0.7.0
    python benchmarks/startup.py --pythonpath /tmp/ml070
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

STEPS = (
    ("numpy", "import numpy"),
    ("ml_dtypes", "import ml_dtypes"),
    ("jax", "import jax, jax.numpy"),
    ("rmtkit", "import rmtkit"),
    ("rmtkit.analysis (xarray, pandas)", "import rmtkit.analysis"),
    (
        "first analysis",
        "rmtkit.summary(rmtkit.analyze(rmtkit.from_layers({'w': W}), progress=False))",
    ),
)

CHILD = """
import json, sys, time
out = {}
steps = json.loads(sys.argv[1])
for name, code in steps:
    if name == "first analysis":
        import numpy as np
        W = np.random.default_rng(0).standard_t(3, (300, 200))
    t, c = time.perf_counter(), time.process_time()
    try:
        exec(code)
    except ImportError:
        break
    out[name] = (time.perf_counter() - t, time.process_time() - c)
import ml_dtypes
out["versions"] = {m: sys.modules[m].__version__ for m in ("numpy", "ml_dtypes", "jax")
                   if m in sys.modules}
out["dask imported"] = "dask" in sys.modules
print(json.dumps(out))
"""


def run(pythonpath: str | None) -> dict:
    """One fresh interpreter through :data:`STEPS`, ``pythonpath`` first on its path."""
    env = dict(os.environ)
    # bytecode as in an installed package (an editable install under PYTHONDONTWRITEBYTECODE
    # compiles rmtkit's sources in every process); main's untimed first run writes it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(STEPS)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pythonpath", nargs="*", default=[], help="variants (folders)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    variants = ["", *args.pythonpath]
    results = {v: [] for v in variants}
    for variant in variants:  # untimed: writes the bytecode, warms the file cache
        run(variant)
    for _ in range(args.runs):
        for variant in variants:
            results[variant].append(run(variant))
    totals = {}
    for variant, runs in results.items():
        label = f"PYTHONPATH={variant}" if variant else "as installed"
        print(f"{label}: {runs[0]['versions']}; dask imported: {runs[0]['dask imported']}")
        print(f"  {'step':<36}{'wall s':>8}{'CPU s':>8}   (medians of {args.runs})")
        wall_total = cpu_total = 0.0
        for name, _ in STEPS:
            if name not in runs[0]:
                continue
            w = statistics.median(r[name][0] for r in runs)
            c = statistics.median(r[name][1] for r in runs)
            wall_total, cpu_total = wall_total + w, cpu_total + c
            print(f"  {name:<36}{w:8.3f}{c:8.3f}")
        print(f"  {'total':<36}{wall_total:8.3f}{cpu_total:8.3f}")
        totals[variant] = (wall_total, cpu_total)
    for variant in args.pythonpath:
        (w, c), (w0, c0) = totals[variant], totals[""]
        print(f"PYTHONPATH={variant} / as installed: wall {w / w0:.2f}x, CPU {c / c0:.2f}x")


if __name__ == "__main__":
    main()
