"""Execute the notebooks of ``notebooks/`` the way CI does, and store their outputs in place.

    python scripts/execute_notebooks.py                 # every notebooks/*.ipynb
    python scripts/execute_notebooks.py 01_quickstart   # some of them (name or path)

The kernel is the running interpreter (a kernelspec written to a temporary folder: nothing to
install), started with every warning turned into an error, as pytest's ``filterwarnings = error``
does for the tests. A notebook fails on a cell error, on anything written to stderr (a warning
that IPython or a library only logs), or when it runs past its time budget. Each notebook runs in
an empty temporary working folder, so files it writes do not land in the repository.

``tests/project/test_notebooks.py`` runs the same :func:`execute` on temporary copies (never
rewriting the committed files). Needs nbformat, nbclient and ipykernel (the ``test`` extra).
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
#: wall-clock budget of one notebook, seconds (each is written to take well under 2 minutes)
TIMEOUT = 300
#: largest stored notebook, bytes (figures are drawn at a small dpi)
MAX_BYTES = 400_000
KERNEL_NAME = "rmtkit-notebooks"
#: what a reader's Jupyter should start when opening a stored notebook
STORED_KERNELSPEC = {
    "name": "python3",
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}
#: run by the kernel before the first cell (not a cell: execution counts start at 1): warnings
#: are errors, except those ipykernel raises about itself (e.g. at shutdown), which no cell causes
_STARTUP = (
    "import warnings; warnings.simplefilter('error'); "
    "warnings.filterwarnings('default', module='ipykernel')"
)


class NotebookError(Exception):
    """A notebook failed: a cell raised, wrote to stderr, or the time budget ran out."""


def kernel_manager(folder: Path) -> AsyncKernelManager:
    """A manager for an IPython kernel of *this* interpreter, warnings as errors.

    The kernelspec is written into ``folder`` (a temporary one), so it works in a fresh
    virtual environment with ipykernel installed and no ``ipykernel install`` step.
    """
    spec_dir = Path(folder) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            f"--IPKernelApp.exec_lines={_STARTUP}",
        ],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    specs = KernelSpecManager(kernel_dirs=[str(Path(folder) / "kernels")])
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    if os.name == "posix":  # local sockets in the temporary folder (no TCP ports, no warning)
        km.transport, km.ip = "ipc", str(Path(folder) / "kernel-ipc")
    return km


def stderr_outputs(nb) -> list[str]:
    """``"cell <i>: <text>"`` for every stderr stream output of ``nb``."""
    return [
        f"cell {i}: {out.get('text', '')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    ]


def execute(nb, *, cwd: Path, timeout: float = TIMEOUT, name: str = "notebook") -> float:
    """Run every cell of ``nb`` (modified in place) in a fresh kernel; return the seconds taken.

    ``timeout`` bounds the whole notebook, not one cell. Raises :class:`NotebookError` (with
    the cell's traceback) on a cell error, a timeout, or any stderr output.
    """
    start = time.monotonic()
    deadline = start + timeout
    with tempfile.TemporaryDirectory(prefix="rmtkit-kernel-") as spec_folder:
        client = NotebookClient(
            nb,
            km=kernel_manager(Path(spec_folder)),
            timeout=int(timeout),
            resources={"metadata": {"path": str(cwd)}},
            allow_errors=False,
            record_timing=False,
        )
        with client.setup_kernel(cleanup_kc=True):  # shut the kernel down (km is ours)
            info = client.wait_for_reply(client.kc.kernel_info())
            if info is not None and "language_info" in info["content"]:
                nb.metadata["language_info"] = info["content"]["language_info"]
            for index, cell in enumerate(nb.cells):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotebookError(
                        f"{name}: over its {timeout:.0f} s budget before cell {index}"
                    )
                client.timeout = max(1, int(left))
                try:
                    client.execute_cell(cell, index)
                except Exception as err:  # CellExecutionError, CellTimeoutError, DeadKernelError
                    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # no ANSI colours
                    raise NotebookError(f"{name}, cell {index}: {plain}") from err
    errors = stderr_outputs(nb)
    if errors:
        raise NotebookError(
            f"{name} wrote to stderr (warnings are errors here):\n" + "\n".join(errors)
        )
    return time.monotonic() - start


def _resolve(names: list[str]) -> list[Path]:
    if not names:
        return sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    paths = []
    for n in names:
        p = Path(n)
        if not p.suffix:
            p = NOTEBOOK_DIR / f"{n}.ipynb"
        if not p.is_file():
            raise SystemExit(f"no notebook {n!r} ({p})")
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names or paths (default: all)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT,
        help=f"budget of one notebook, seconds (default {TIMEOUT})",
    )
    args = parser.parse_args(argv)
    failed = 0
    for path in _resolve(args.notebooks):
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory(prefix="rmtkit-nb-") as cwd:
            try:
                seconds = execute(nb, cwd=Path(cwd), timeout=args.timeout, name=path.name)
            except NotebookError as err:
                print(f"FAILED {path.name}: {err}", file=sys.stderr)
                failed += 1
                continue
        nb.metadata["kernelspec"] = dict(STORED_KERNELSPEC)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        size = path.stat().st_size
        flag = "" if size <= MAX_BYTES else f"  (over {MAX_BYTES} bytes!)"
        print(f"{path.name}: {seconds:.1f} s, {size / 1000:.0f} kB{flag}")
        failed += size > MAX_BYTES
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
