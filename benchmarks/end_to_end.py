"""Benchmark: speed as a user meets it -- fresh processes, end to end, against WeightWatcher 0.7.7.

Three measurements, each in fresh processes, interleaved run by run so that the drift of a
shared machine hits them alike (medians over ``--runs``):

1. **rmtkit, first and second call.** A fresh interpreter imports rmtkit (timed apart), then
   runs ``rmtkit.analyze(path)`` on a safetensors file of 24 transformer-like matrices
   (``--blocks`` blocks of 4 d x d and 2 d x 4d heavy-tailed matrices, d = ``--dim``; the
   model of ``analyze_floor.py``): the first call includes reading the file and everything a
   first call does in a process (loading the stored kernels, the first Dataset); the second
   call, in the same process, reads the file again and repeats it.
2. **WeightWatcher 0.7.7**, in its own interpreter (``--ww-python``: WeightWatcher is not a
   dependency of rmtkit), on the same file: ``WeightWatcher(model=folder).analyze()`` (its own
   safetensors reader) timed, imports apart.
3. **The CLI**: ``rmtkit analyze`` on the embedded model (wall time of the whole process),
   against the bare ``python -c "import jax"`` measured in the same run (the import rmtkit
   cannot avoid).

Printed: the medians, ``WW / rmtkit first call`` (issue 18 target >= 3x), ``first / second
call`` (target <= 1.3x) and the CLI's wall time (target <= 2.5 s), and whether the alphas of
rmtkit and WeightWatcher agree. ``--options rand`` runs ``randomize=True, mp_fit=True`` in both
(WeightWatcher: ``randomize=True, mp_fit=True``).

Thread settings: each tool's defaults (rmtkit: one worker thread per core, one BLAS thread
each; WeightWatcher: torch/BLAS defaults), or ``--ww-blas-threads 1`` for one BLAS thread in
WeightWatcher. rmtkit's persistent compile cache is a fresh folder filled by one untimed
process first (a user's second-ever run; ``--cold`` times that first process instead).

    python3 -m venv /tmp/wwenv && /tmp/wwenv/bin/pip install weightwatcher==0.7.7 torch==2.13.0
    python benchmarks/end_to_end.py --ww-python /tmp/wwenv/bin/python [--runs 5]
    python benchmarks/end_to_end.py --ww-python /tmp/wwenv/bin/python --options rand --blocks 1
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze_floor import make_model  # noqa: E402

OPTIONS = {"default": {}, "rand": {"randomize": True, "mp_fit": True}}

RMTKIT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import rmtkit
t1, c1 = time.perf_counter(), time.process_time()
options = json.loads(sys.argv[2])
details = rmtkit.analyze(sys.argv[1], progress=False, **options)
t2, c2 = time.perf_counter(), time.process_time()
rmtkit.analyze(sys.argv[1], progress=False, **options)
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2,
                  "cpu_first": c2 - c1, "cpu_second": c3 - c2,
                  "alpha": [float(a) for a in details.alpha.values],
                  "names": [str(n) for n in details.name.values]}))
"""

WW_CHILD = """
import contextlib, io, json, logging, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
import weightwatcher as ww
t1 = time.perf_counter()
if int(sys.argv[3]) > 0:
    torch.set_num_threads(int(sys.argv[3]))
logging.getLogger("weightwatcher").setLevel(logging.ERROR)
np.random.seed(0)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    t2, c2 = time.perf_counter(), time.process_time()
    details = ww.WeightWatcher(model=sys.argv[1]).analyze(**json.loads(sys.argv[2]))
    t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"import": t1 - t0, "analyze": t3 - t2, "cpu": c3 - c2,
                  "alpha": [float(a) for a in details["alpha"]],
                  "names": [str(n) for n in details["name"]]}))
"""


def write_model(folder: str, blocks: int, dim: int) -> str:
    """The model of ``analyze_floor.py`` as ``folder/model.safetensors`` (PyTorch naming: every
    tensor ``<layer>.weight``, which WeightWatcher's reader needs); returns the folder."""
    from safetensors.numpy import save_file

    layers = make_model(blocks, dim)
    tensors = {f"{name.replace('/', '.')}.weight": w for name, w in layers.items()}
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    return folder


def child(python: str, code: str, *args: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh ``python`` with ``args``; its last line of output, as JSON."""
    out = subprocess.run(
        [python, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def wall(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one process, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def installed_env(cache: str) -> dict:
    """rmtkit's environment: the compile cache ``cache`` and Python bytecode written and read as
    in an installed package (``pip install`` compiles it). ``PYTHONDONTWRITEBYTECODE`` is
    removed: with it, every process of an editable install compiles rmtkit's sources again
    (measured: 0.2-0.4 s of a fresh ``rmtkit analyze``), a cost no installed user pays;
    the untimed first process writes the bytecode."""
    env = dict(os.environ, RMTKIT_JAX_CACHE=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def ww_env(blas_threads: int) -> dict:
    """WeightWatcher's environment: its defaults, or ``blas_threads`` BLAS threads."""
    env = dict(os.environ)
    if blas_threads > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(blas_threads)
    return env


def agreement(rmtkit_run: dict, ww_run: dict) -> str:
    """Per-layer alpha agreement of the layers both tools report (matched by name)."""
    ours = {n.replace("/", "."): a for n, a in zip(rmtkit_run["names"], rmtkit_run["alpha"])}
    theirs = {n.removesuffix(".weight"): a for n, a in zip(ww_run["names"], ww_run["alpha"])}
    common = [n for n in ours if n in theirs]
    if not common:
        return f"no layer names in common ({len(ours)} rmtkit, {len(theirs)} WeightWatcher)"
    diff = np.abs(np.array([ours[n] for n in common]) - np.array([theirs[n] for n in common]))
    return (
        f"{int(np.sum(diff < 1e-6))}/{len(common)} layers equal to 1e-6 "
        f"(max |d alpha| {np.nanmax(diff):.1e}; {len(ours)} rmtkit rows, {len(theirs)} WW rows)"
    )


def med(values: list[float]) -> str:
    """Median and range, as text."""
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def row(label: str, wall_s: list[float], cpu_s: list[float] | None = None) -> str:
    """One line of the table: wall and CPU seconds, medians (ranges)."""
    cpu = med(cpu_s) if cpu_s else ""
    return f"{label:<46}{med(wall_s):>22}{cpu:>22}"


def ratio_row(label: str, num: list[float], den: list[float], target: str = "") -> str:
    """Median (range) of the per-run ratios ``num / den``."""
    r = [a / b for a, b in zip(num, den, strict=True)]
    return f"{label:<46}{statistics.median(r):7.2f}x ({min(r):.2f}-{max(r):.2f}) {target}"


def report(args, runs: dict) -> None:
    """Print the table of one benchmark run."""
    n = len(make_model(args.blocks, args.dim))
    load = os.getloadavg()[0]
    print(
        f"{n} matrices (d = {args.dim}) in one safetensors file, options {args.options}; "
        f"{args.runs} fresh processes each, {'cold' if args.cold else 'warm'} compile cache; "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print(f"{'':<46}{'wall s: median (range)':>22}{'CPU s: median (range)':>22}")
    rk = runs["rmtkit"]
    first, second = [r["first"] for r in rk], [r["second"] for r in rk]
    cfirst, csecond = [r["cpu_first"] for r in rk], [r["cpu_second"] for r in rk]
    print(row("import rmtkit", [r["import"] for r in rk]))
    print(row("rmtkit.analyze(path), first call in process", first, cfirst))
    print(row("rmtkit.analyze(path), second call", second, csecond))
    print(ratio_row("  first / second call, wall", first, second, "(target <= 1.3x)"))
    print(ratio_row("  first / second call, CPU", cfirst, csecond))
    if runs["ww"]:
        ww, cww = [r["analyze"] for r in runs["ww"]], [r["cpu"] for r in runs["ww"]]
        print(row("WeightWatcher 0.7.7 analyze() (reads the file)", ww, cww))
        print(row("  import weightwatcher + torch", [r["import"] for r in runs["ww"]]))
        print(ratio_row("  WW / rmtkit first call, wall", ww, first, "(target >= 3x)"))
        print(ratio_row("  WW / rmtkit first call, CPU", cww, cfirst))
        print(ratio_row("  WW / rmtkit second call, wall", ww, second))
        print(f"  alpha agreement: {agreement(rk[0], runs['ww'][0])}")
    if runs["cli"]:
        print(
            row(
                "rmtkit analyze (CLI, embedded model)",
                [w for w, _ in runs["cli"]],
                [c for _, c in runs["cli"]],
            )
        )
        print(
            row(
                '  python -c "import jax"',
                [w for w, _ in runs["jax"]],
                [c for _, c in runs["jax"]],
            )
        )
        print(
            ratio_row(
                "  CLI / import jax, wall",
                [w for w, _ in runs["cli"]],
                [w for w, _ in runs["jax"]],
                "(target: CLI <= 2.5 s)",
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ww-python", help="interpreter with weightwatcher==0.7.7 and torch")
    parser.add_argument("--blocks", type=int, default=4, help="4 blocks = 24 matrices")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--options", choices=sorted(OPTIONS), default="default")
    parser.add_argument("--ww-blas-threads", type=int, default=0, help="0: WW's defaults")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI measurement")
    parser.add_argument(
        "--cold", action="store_true", help="time rmtkit with an empty compile cache each run"
    )
    args = parser.parse_args()
    options = json.dumps(OPTIONS[args.options])
    python = sys.executable
    rmtkit_cli = [python, "-m", "rmtkit", "analyze"]
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        write_model(folder, args.blocks, args.dim)
        env = installed_env(cache)
        if not args.cold:  # one untimed process fills the compile cache (a user's first run)
            child(python, RMTKIT_CHILD, folder, options, env=env)
            wall(rmtkit_cli, env=env)
        runs: dict[str, list] = {k: [] for k in ("rmtkit", "ww", "cli", "jax")}
        for _ in range(args.runs):
            if args.cold:
                shutil.rmtree(cache, ignore_errors=True)
                os.makedirs(cache)
            runs["rmtkit"].append(child(python, RMTKIT_CHILD, folder, options, env=env))
            if args.ww_python:
                runs["ww"].append(
                    child(
                        args.ww_python,
                        WW_CHILD,
                        folder,
                        options,
                        str(args.ww_blas_threads),
                        env=ww_env(args.ww_blas_threads),
                    )
                )
            if not args.no_cli:
                runs["cli"].append(wall(rmtkit_cli, env=env))
                runs["jax"].append(wall([python, "-c", "import jax"], env=env))
    report(args, runs)


if __name__ == "__main__":
    main()
