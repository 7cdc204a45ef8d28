"""Every check rmtkit's CI runs, in order, failing at the first that fails.

    .venv/bin/python scripts/check.py            # gates, core-only environment, the suite
    .venv/bin/python scripts/check.py --fast     # gates and the fast subset (-m "not slow")

1. ``ruff check`` and ``ruff format --check`` (lint and format, pinned ruff of the ``test`` extra);
2. the doctests of the math layer (``rmtkit/core``);
3. the jaxtyping + beartype pass over the core tests: every annotation of ``rmtkit.core`` is
   checked at every call (``-m "not bad_input"``: the hook would pre-empt rmtkit's own
   argument errors there);
4. the core tests in a core-only environment (``.venv-core``: rmtkit's runtime dependencies and
   the test runner, no onnx, torch, keras or dask; created here when missing);
5. the whole suite on all cores (``pytest-xdist``), every optional dependency required
   (``RMTKIT_REQUIRE_ALL_DEPS=1``: a missing one fails instead of skipping).

Run from the repository root with the ``.venv`` of the README's second command.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CORE_ENV = ROOT / ".venv-core"
#: what the core-only environment installs: rmtkit (runtime dependencies only) and the runner
CORE_INSTALL = ["-e", ".[core-test]"]


def _run(title: str, cmd: list[str], env: dict | None = None) -> None:
    """Run one step; exit with its status when it fails."""
    start = time.monotonic()
    print(f"== {title}: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=env)
    print(
        f"== {title}: {'ok' if done.returncode == 0 else 'FAILED'} "
        f"({time.monotonic() - start:.0f} s)",
        flush=True,
    )
    if done.returncode != 0:
        sys.exit(done.returncode)


def _core_env() -> Path:
    """The core-only environment's interpreter (created and installed when missing)."""
    python = CORE_ENV / "bin" / "python"
    if not python.exists():
        _run("core-only environment", [sys.executable, "-m", "venv", str(CORE_ENV)])
        _run("core-only install", [str(python), "-m", "pip", "install", "-q", *CORE_INSTALL])
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fast",
        action="store_true",
        help="gates and the fast subset only (no core-only environment)",
    )
    args = parser.parse_args(argv)
    pytest = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    _run("lint", [PYTHON, "-m", "ruff", "check", "."])
    _run("format", [PYTHON, "-m", "ruff", "format", "--check", "."])
    _run("doctests", [*pytest, "--doctest-modules", "rmtkit/core"])
    _run(
        "annotations (jaxtyping + beartype)",
        [
            *pytest,
            "--jaxtyping-packages=rmtkit.core,beartype.beartype",
            "-m",
            "not bad_input",
            "tests/core",
        ],
    )
    if args.fast:
        _run("fast subset", [*pytest, "-n", "auto", "-m", "not slow"])
        return 0
    core = _core_env()
    _run(
        "core tests, core-only environment",
        [str(core), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/core"],
    )
    _run("suite", [*pytest, "-n", "auto"], env=dict(os.environ, RMTKIT_REQUIRE_ALL_DEPS="1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
