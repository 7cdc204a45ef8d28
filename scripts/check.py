"""Every check rmtkit's CI runs, failing when any fails (the README's test command runs this).

    .venv/bin/python scripts/check.py            # gates, the core checks, the suite
    .venv/bin/python scripts/check.py --fast     # gates and the fast subset (-m "not slow")

1. gates: ``ruff check`` and ``ruff format --check`` (the pinned ruff of the ``test`` extra);
2. the core checks, run side by side:
   - the doctests of the math layer (``rmtkit/core``);
   - the jaxtyping + beartype pass over the core tests: every annotation of ``rmtkit.core`` is
     checked at every call (``-m "not bad_input and not slow"``: the hook would pre-empt rmtkit's
     own argument errors, and the slow statistical tests repeat the same calls many times);
   - the other core tests (``-m "bad_input or slow"``), so that each runs once;
   both in a core-only environment (``.venv-core``: rmtkit's runtime dependencies, the test
   runner, beartype and the reference packages of the ``core-test`` extra; no onnx, torch,
   keras or dask; created here when missing);
   - the browser of the report's tests (``.ci/install_browser``: Debian's chromium and its
     driver; needs root), when it is missing;
3. the rest of the suite on all cores (``pytest-xdist``), every optional dependency required
   (``RMTKIT_REQUIRE_ALL_DEPS=1``: a missing one fails instead of skipping). ``tests/core`` ran in
   step 2, so it is not run again.

No step can hang CI: a test fails after 300 s (``pytest-timeout``, thread method: every
thread's stack is printed, also for a hang inside native code) and a step is ended after
:data:`STEP_BUDGET` seconds.

Run from the repository root with the ``.venv`` of the README's second command.
"""

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CORE_ENV = ROOT / ".venv-core"
#: what the core-only environment installs: rmtkit (runtime dependencies only) and the runner
CORE_INSTALL = ["-e", ".[core-test]"]
#: the slowest tests of each step are listed at its end (where CI time goes); a test that runs
#: longer than ``--timeout`` seconds fails: with the ``thread`` method, a watchdog thread prints
#: the stack of every thread and ends the process (a pytest-xdist worker is replaced and the
#: test reported as crashed), which also stops a hang inside native code (a LAPACK or XLA call
#: that never returns to Python), where the default ``signal`` method never fires
PYTEST = [
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "--durations=15",
    "--timeout=300",
    "--timeout-method=thread",
]
#: wall-clock budget of one step in seconds: a step still running then (a hang outside any
#: test: collection, a worker's start or end) is ended with its process group and fails, so
#: that CI always finishes and says where it stopped
STEP_BUDGET = 1800


def _run(title: str, cmd: list[str], env: dict | None = None) -> None:
    """Run one step; exit with its status when it fails."""
    _wait(title, _start(title, cmd, env))


def _start(title: str, cmd: list[str], env: dict | None = None):
    print(f"== {title}: {' '.join(cmd)}", flush=True)
    # its own process group: a step over its budget is ended with every process it started
    return time.monotonic(), subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def _wait(title: str, started, *, exit_on_failure: bool = True) -> int:
    """Wait for a step (at most :data:`STEP_BUDGET` seconds from its start); print its state."""
    start, proc = started
    try:
        code = proc.wait(timeout=max(1.0, STEP_BUDGET - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        print(f"== {title}: over its budget of {STEP_BUDGET} s, ended", flush=True)
        code = _end(proc)
    except KeyboardInterrupt:  # its own session does not get the terminal's Ctrl-C
        _end(proc)
        raise
    state = "ok" if code == 0 else "FAILED"
    print(f"== {title}: {state} ({time.monotonic() - start:.0f} s)", flush=True)
    if code != 0 and exit_on_failure:
        sys.exit(code)
    return code


def _end(proc: subprocess.Popen) -> int:
    """End a step's process group (SIGTERM, then SIGKILL after 30 s); a nonzero status."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    return proc.returncode or 1


def _core_env() -> Path:
    """The core-only environment's interpreter (created and installed when missing)."""
    python = CORE_ENV / "bin" / "python"
    if not (CORE_ENV / ".installed").exists():
        _run("core-only environment", [sys.executable, "-m", "venv", str(CORE_ENV)])
        _run("core-only install", [str(python), "-m", "pip", "install", "-q", *CORE_INSTALL])
        (CORE_ENV / ".installed").touch()
    return python


def _browser_ready() -> bool:
    """Whether the report's browser tests find Chromium and its driver: ``$RMTKIT_CHROMIUM``
    and ``$RMTKIT_CHROMEDRIVER`` when set, else Debian's ``/usr/bin`` ones or those on PATH
    (as ``tests/apps/test_report_browser.py`` looks for them)."""

    def found(env: str, *names: str) -> bool:
        names = (os.environ[env],) if os.environ.get(env) else names
        return any(shutil.which(name) for name in names)

    return found("RMTKIT_CHROMIUM", "/usr/bin/chromium", "chromium") and found(
        "RMTKIT_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fast", action="store_true", help="gates and the fast subset only (no core checks)"
    )
    args = parser.parse_args(argv)
    _run("lint", [PYTHON, "-m", "ruff", "check", "."])
    _run("format", [PYTHON, "-m", "ruff", "format", "--check", "."])
    if args.fast:
        _run("fast subset", [PYTHON, *PYTEST, "-n", "auto", "-m", "not slow"])
        return 0
    core = _core_env()
    steps = {
        "doctests": [PYTHON, *PYTEST, "--doctest-modules", "rmtkit/core"],
        "annotations (jaxtyping + beartype), core-only environment": [
            str(core),
            *PYTEST,
            "--jaxtyping-packages=rmtkit.core,beartype.beartype",
            "-m",
            "not bad_input and not slow",
            "tests/core",
        ],
        # the rest of the core tests (each core test runs once): on all cores, its statistical
        # tests are long
        "core tests (bad input, slow), core-only environment": [
            str(core),
            *PYTEST,
            "-n",
            "auto",
            "-m",
            "bad_input or slow",
            "tests/core",
        ],
    }
    if not _browser_ready():
        steps["browser (Debian's chromium, for the report's tests)"] = [
            "bash",
            str(ROOT / ".ci" / "install_browser"),
        ]
    # a test whose optional dependency is missing fails instead of skipping (the core-only
    # environment has every dependency of the core tests: no core test may skip there either)
    full_env = dict(os.environ, RMTKIT_REQUIRE_ALL_DEPS="1")
    running = {title: _start(title, cmd, full_env) for title, cmd in steps.items()}
    codes = [_wait(title, started, exit_on_failure=False) for title, started in running.items()]
    if any(codes):
        sys.exit(next(code for code in codes if code))
    _run("suite", [PYTHON, *PYTEST, "-n", "auto", "--ignore=tests/core"], env=full_env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
