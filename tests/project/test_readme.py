"""The README stays true: CI runs its test command verbatim, and its tour runs as written."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, require


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_test_command():
    _, test_command = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_main_command_analyzes_the_embedded_model():
    main_command, _ = readme_commands()
    assert main_command.endswith("rmtkit analyze")
    assert (ROOT / "rmtkit" / "data" / "digits_cnn.onnx").is_file()


@pytest.mark.slow
def test_tour_runs_and_prints_what_the_readme_says():
    """The README's Python tour runs as written, and its first two printed lines are the ones
    the README quotes (the tour reads the embedded ONNX model, so it needs onnx)."""
    require("onnx")
    text = (ROOT / "README.md").read_text()
    tour = re.search(r"## A quick tour.*?```python\n(.*?)```", text, flags=re.S).group(1)
    claimed = re.search(r"The first two lines print `([^`]*)`.*?and `([^`]*)`", text, flags=re.S)
    assert claimed, "the README no longer quotes the tour's output"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    run = subprocess.run(
        [sys.executable, "-c", tour], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == claimed.group(1)
    got = np.array(lines[1].strip("[] ").split(), float)
    want = np.array(claimed.group(2).strip("[] ").split(), float)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "too-few-evals" in run.stdout and "alpha_weighted" in run.stdout
