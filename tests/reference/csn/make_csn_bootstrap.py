"""Record rmtkit's CSN bootstrap on the cities and flares data sets (tests/core/test_gof_csn.py).

One refit of these spectra takes about 0.1 s on a 2-core CPU (n = 19,447 and 12,773; 100 of
them in 6-11 s with the compile), too slow for every test run; this script runs it once and
stores the p-values, their Monte-Carlo errors and every synthetic D. The test compares the
stored p-values with CSN's Table 6.1 and recomputes the first replicates live (replicate b
uses ``fold_in(key, b)``, so a short run reproduces the start of a long one).

Run from the repository root (about 20 s on 2 idle cores)::

    .venv/bin/python tests/reference/csn/make_csn_bootstrap.py
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import rmtkit  # noqa: E402

HERE = Path(__file__).resolve().parent
#: data set -> (factor applied to the file's values, as CSN's units, replicates)
RUNS = {"cities": (1e-3, 100), "flares": (1.0, 100)}
SEED = 0


def main() -> None:
    out = {"rmtkit_version": rmtkit.__version__, "jax": jax.__version__, "seed": SEED, "runs": {}}
    arrays = {}
    for name, (factor, n_boot) in RUNS.items():
        data = np.loadtxt(HERE / f"{name}.txt.gz") * factor
        start = time.perf_counter()
        res = rmtkit.pl_pvalue(data, key=jax.random.key(SEED), n_boot=n_boot)
        res = jax.device_get(res)
        seconds = time.perf_counter() - start
        out["runs"][name] = {
            "factor": factor,
            "n_boot": n_boot,
            "p_value": float(res.p_value),
            "se": float(res.se),
            "D": float(res.D),
            "alpha": float(res.alpha),
            "xmin": float(res.xmin),
            "n_tail": int(res.n_tail),
            "n_valid": int(res.n_valid),
            "seconds": round(seconds, 1),
        }
        arrays[f"{name}__D_boot"] = np.asarray(res.D_boot)
        print(name, out["runs"][name], file=sys.stderr, flush=True)
    (HERE / "csn_bootstrap.json").write_text(json.dumps(out, indent=1) + "\n")
    np.savez_compressed(HERE / "csn_bootstrap.npz", **arrays)


if __name__ == "__main__":
    main()
