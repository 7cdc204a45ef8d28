"""The ``rmtkit`` command line: end to end on the embedded model and on ONNX files, and the
errors a shell user sees (one line, no traceback, non-zero exit status).

Most runs call :func:`rmtkit.cli.main` in-process (the jitted kernels are shared with the other
tests); a few run ``python -m rmtkit`` and the ``rmtkit`` console script for real.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import require, trapped_onnx

from rmtkit import data_path
from rmtkit.cli import main

MODEL = str(data_path())


@pytest.fixture
def onnx_installed():
    """The runs that read an ONNX file (the embedded model by default) need onnx."""
    require("onnx")


#: a test or parameter that reads an ONNX file
needs_onnx = pytest.mark.usefixtures("onnx_installed")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def shell(*argv, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    env.pop("RMTKIT_DEBUG", None)
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)


@needs_onnx
def test_analyze_embedded_model(capsys, tmp_path):
    code, out, err = run(capsys, "analyze", "--quiet", "--out", str(tmp_path / "d.csv"))
    assert code == 0 and err == ""
    assert "digits_cnn.onnx: 5 rows" in out and "Summary" in out
    for token in ("conv1", "fc3", "too-few-evals", "alpha", "log_spectral_norm"):
        assert token in out
    df = pd.read_csv(tmp_path / "d.csv")
    assert list(df["name"]) == ["conv1", "conv2", "fc1", "fc2", "fc3"] and "alpha" in df


@needs_onnx
def test_analyze_onnx_file_options(capsys, tmp_path):
    path = tmp_path / "copy.onnx"
    shutil.copy(MODEL, path)
    code, out, _ = run(
        capsys,
        "analyze",
        str(path),
        "-q",
        "--layers",
        "dense",
        "!fc3",
        "--min-evals",
        "8",
        "--detx",
        "--out",
        str(tmp_path / "d.nc"),
    )
    assert code == 0 and "2 rows" in out and "detX_num" in out
    with xr.open_dataset(tmp_path / "d.nc") as back:
        assert list(back["name"].values) == ["fc1", "fc2"]
    code, out, _ = run(capsys, "analyze", str(path), "-q", "--no-pool", "--layers", "conv2")
    assert code == 0 and "9 rows" in out and "slice_id" in out


@needs_onnx
def test_describe(capsys):
    code, out, _ = run(capsys, "describe")
    assert code == 0 and "5 rows" in out and "too-few-evals" in out
    code, out, _ = run(capsys, "describe", MODEL, "--layers", "1", "--no-pool")
    assert code == 0 and "9 rows" in out


@pytest.mark.slow
@needs_onnx
def test_compare(capsys, tmp_path):
    other = tmp_path / "other.onnx"
    shutil.copy(MODEL, other)
    code, out, _ = run(
        capsys, "compare", MODEL, str(other), "-q", "--out", str(tmp_path / "both.nc")
    )
    assert code == 0 and "digits_cnn.onnx" in out and "other.onnx" in out
    assert "layers_matched" in out and "frobenius" in out
    with xr.open_dataset(tmp_path / "both.nc") as both:
        assert both.sizes["model"] == 2
        np.testing.assert_allclose(both.alpha.isel(model=0), both.alpha.isel(model=1))


def test_sharpen_and_smooth_write_runnable_onnx(capsys, tmp_path):
    ort = require("onnxruntime")
    trapped_onnx(tmp_path / "in.onnx")
    x = np.ones((1, 64), np.float32)
    for cmd in (["sharpen"], ["smooth", "--method", "percent"]):
        out_path = tmp_path / f"{cmd[0]}.onnx"
        code, out, err = run(capsys, cmd[0], str(tmp_path / "in.onnx"), str(out_path), *cmd[1:])
        assert code == 0 and err == "" and str(out_path) in out
        y = ort.InferenceSession(str(out_path)).run(None, {"x": x})[0]
        assert y.shape == (1, 100) and np.isfinite(y).all()


ERRORS = [
    (["analyze", "/no/such/model.onnx"], "/no/such/model.onnx: no such file"),
    (["describe", "{tmp}/model.txt"], "unknown model file extension '.txt'"),
    (["analyze", "-q", "--out", "{tmp}/d.xlsx"], "unknown output format '.xlsx'"),
    (["analyze", "-q", "--out", "/no/such/dir/d.csv"], "does not exist"),
    (["analyze", "-q", "--min-evals", "60", "--max-evals", "50"], "smaller than `min_evals`"),
    (["compare", MODEL], "at least two models"),
    (["sharpen", MODEL, "{tmp}/out.pt"], "must be .onnx"),
    (["sharpen", "{tmp}/nothere.onnx", "{tmp}/out.onnx"], "no such file"),
]
#: errors found while reading an ONNX file (the embedded model by default): they need onnx
ONNX_ERRORS = [
    (["analyze", "{tmp}/broken.onnx"], "not a readable ONNX model"),
    (["analyze", "-q", "--layers", "nothing"], "selects no layer"),
]


def assert_one_line_error(capsys, tmp_path, argv, match):
    (tmp_path / "model.txt").write_text("not a model")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage-bytes")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("rmtkit: error: ") and err.count("\n") == 1 and match in err
    assert "Traceback" not in err


@pytest.mark.bad_input
@pytest.mark.parametrize("argv, match", ERRORS)
def test_errors_are_one_line(capsys, tmp_path, argv, match):
    assert_one_line_error(capsys, tmp_path, argv, match)


@needs_onnx
@pytest.mark.bad_input
@pytest.mark.parametrize("argv, match", ONNX_ERRORS)
def test_errors_reading_onnx_are_one_line(capsys, tmp_path, argv, match):
    assert_one_line_error(capsys, tmp_path, argv, match)


@pytest.mark.bad_input
def test_parquet_needs_pyarrow(capsys, tmp_path):
    if importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet"):
        require("onnx")  # analyzes the embedded model
        code, _, _ = run(capsys, "analyze", "-q", "--out", str(tmp_path / "d.parquet"))
        assert code == 0 and (tmp_path / "d.parquet").is_file()
        return
    code, _, err = run(capsys, "analyze", "-q", "--out", str(tmp_path / "d.parquet"))
    assert code == 1 and "pip install pyarrow" in err and err.count("\n") == 1


@pytest.mark.bad_input
def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--fit", "XX"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


@pytest.mark.slow
@needs_onnx
def test_plots(capsys, tmp_path):
    require("matplotlib")
    if importlib.util.find_spec("rmtkit.plot") is None:
        code, _, err = run(capsys, "analyze", "-q", "--plots", str(tmp_path))
        assert code == 1 and "rmtkit.plot" in err
        return
    code, out, err = run(
        capsys, "analyze", "-q", "--layers", "fc2", "--plots", str(tmp_path / "figs")
    )
    assert code == 0, err
    assert (
        sorted(p.suffix for p in (tmp_path / "figs").iterdir())
        and (tmp_path / "figs" / "correlation_flow.png").is_file()
    )


@pytest.mark.slow
@needs_onnx
def test_python_dash_m_and_console_script(tmp_path):
    r = shell(sys.executable, "-m", "rmtkit", "describe")
    assert r.returncode == 0, r.stderr
    assert "digits_cnn.onnx: 5 rows" in r.stdout
    script = Path(sys.executable).with_name("rmtkit")
    if not script.exists():
        pytest.skip("the rmtkit console script is not installed in this environment")
    r = shell(str(script), "analyze", str(tmp_path / "missing.onnx"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == f"rmtkit: error: {tmp_path / 'missing.onnx'}: no such file or folder"
    r = shell(str(script), "analyze", "--layers", "fc2", "-q")
    assert r.returncode == 0, r.stderr
    assert "fc2" in r.stdout and "Summary" in r.stdout and r.stderr == ""
