"""``rmtkit analyze --gof --n-boot B``: the goodness-of-fit columns (docs/math.md §12), the
summary's counts, the per-layer figures of ``--plots``, and a bad ``--n-boot`` as a one-line
error."""

import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import GOF_COLUMNS, require

import rmtkit
from rmtkit.cli import main

require("onnx")  # every run reads the embedded model (an ONNX file)

MODEL = str(rmtkit.data_path())
N_BOOT = 20
SEED = 3


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary_values(out: str) -> dict[str, float]:
    """The ``name  value`` lines printed under "Summary"."""
    lines = itertools.takewhile(str.strip, out.split("Summary", 1)[1].splitlines()[1:])
    return {k: float(v) for k, v in (line.split() for line in lines)}


@pytest.mark.slow
def test_gof_columns_and_summary(capsys, tmp_path):
    csv = tmp_path / "d.csv"
    argv = ("analyze", "-q", "--gof", "--n-boot", str(N_BOOT), "--seed", str(SEED))
    code, out, err = run(capsys, *argv, "--out", str(csv))
    assert code == 0 and err == ""
    header = out.splitlines()[1]
    assert "pl_pvalue" in header.split()
    df = pd.read_csv(csv, keep_default_na=False, na_values=["", "nan", "NaN"])
    assert all(name in df.columns for name in GOF_COLUMNS)
    # the options reach the analysis: the values are analyze(gof=True, n_boot, key=seed)'s
    details = rmtkit.analyze(MODEL, gof=True, n_boot=N_BOOT, key=SEED, progress=False)
    for name in GOF_COLUMNS:
        np.testing.assert_array_equal(df[name].to_numpy(float), details[name].values)
    p = df["pl_pvalue"].to_numpy(float)
    tested = np.isfinite(p)
    assert tested.sum() == 3  # conv2, fc1, fc2; conv1 and fc3 have too few eigenvalues
    assert list(df["warning"][tested & (p <= 0.1)]) == ["not-power-law"] * int(
        np.sum(tested & (p <= 0.1))
    )
    s = summary_values(out)
    assert s["num_pl_tested"] == tested.sum()
    assert s["num_pl_pass"] == np.sum(p[tested] > 0.1)


@pytest.mark.slow
def test_without_gof_no_columns(capsys, tmp_path):
    csv = tmp_path / "d.csv"
    code, out, _ = run(capsys, "analyze", "-q", "--out", str(csv))
    assert code == 0
    assert "pl_pvalue" not in out and "num_pl_tested" not in out
    assert not any(name in pd.read_csv(csv).columns for name in GOF_COLUMNS)


@pytest.mark.slow
def test_plots_draw_the_gof_figures(capsys, tmp_path):
    require("matplotlib")
    folder = tmp_path / "figs"
    argv = ("analyze", "-q", "--gof", "--n-boot", "8", "--layers", "fc1", "--seed", str(SEED))
    code, _, err = run(capsys, *argv, "--plots", str(folder))
    assert code == 0, err
    names = {p.name for p in folder.iterdir()}
    stems = {n.removesuffix("_esd_loglog.png") for n in names if n.endswith("_esd_loglog.png")}
    assert len(stems) == 1
    (stem,) = stems
    assert {f"{stem}_gof_bootstrap.png", f"{stem}_gof_tail.png"} <= names


@pytest.mark.bad_input
@pytest.mark.parametrize("value", ["0", "-5"])
def test_bad_n_boot_is_a_one_line_error(capsys, value):
    code, out, err = run(capsys, "analyze", "-q", "--gof", "--n-boot", value)
    assert code == 1 and out == ""
    assert (
        err
        == f"rmtkit: error: --n-boot must be >= 1 (bootstrap replicates of --gof); got {value}\n"
    )


@pytest.mark.bad_input
def test_n_boot_not_an_integer_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--gof", "--n-boot", "many"])
    assert exc.value.code == 2
    assert "--n-boot: invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.bad_input
def test_n_boot_without_gof_is_refused(capsys):
    code, out, err = run(capsys, "analyze", "-q", "--n-boot", "50")
    assert code == 1 and out == ""
    expected = "--n-boot needs --gof (it is the number of bootstrap replicates of --gof)"
    assert err == f"rmtkit: error: {expected}\n"
