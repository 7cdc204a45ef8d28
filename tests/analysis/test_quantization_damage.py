"""Quantization damage of the embedded model quantized by onnxruntime (int8, int4): alpha
survives int8, the error W_q - W is measured and MP-fitted, ``source`` / ``quant`` survive
netCDF, and ``rmtkit compare float.onnx int8.onnx`` prints the per-layer table."""

import numpy as np
import pytest
import xarray as xr
from _deps import require

onnx = require("onnx")
require("onnxruntime")
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

import rmtkit  # noqa: E402
from rmtkit.cli import main  # noqa: E402

#: |alpha(int8) - alpha(float)| allowed on every layer with >= 50 eigenvalues (measured on the
#: embedded model: at most 0.025, fc2 per-tensor; see notebooks/06_quantization.ipynb)
ALPHA_TOL_INT8 = 0.05


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    d = tmp_path_factory.mktemp("dmg")
    out = {}
    for name, kw in {
        "per_tensor": dict(weight_type=QuantType.QInt8),
        "per_channel": dict(weight_type=QuantType.QInt8, per_channel=True),
    }.items():
        quantize_dynamic(str(rmtkit.data_path()), d / f"{name}.onnx", **kw)
        out[name] = str(d / f"{name}.onnx")
    return out


@pytest.mark.parametrize("scheme", ["per_tensor", "per_channel"])
def test_int8_alpha_within_tolerance_of_float(int8, scheme):
    ref = rmtkit.analyze(rmtkit.data_path(), progress=False)
    d = rmtkit.analyze(int8[scheme], progress=False)
    big = ref["num_evals"].values >= 50
    assert big.sum() == 3  # conv2, fc1, fc2 (conv1 and fc3 have 9 and 10)
    shift = np.abs(d["alpha"].values[big] - ref["alpha"].values[big])
    assert np.all(shift <= ALPHA_TOL_INT8), shift


def test_damage_is_the_difference_of_the_analyses_and_the_error_matrix(int8):
    src = str(rmtkit.data_path())
    dmg = rmtkit.quantization_damage(int8["per_tensor"], src)
    ref = rmtkit.analyze(src, progress=False)
    q = rmtkit.analyze(int8["per_tensor"], progress=False)
    for var in rmtkit.analysis.quantization.DAMAGE_VARS:
        np.testing.assert_array_equal(dmg[f"{var}_ref"].values, ref[var].values)
        np.testing.assert_array_equal(dmg[f"delta_{var}"].values, q[var].values - ref[var].values)
    wq, w = rmtkit.load(int8["per_tensor"]), rmtkit.load(src)
    for i, name in enumerate(dmg["name"].values):
        a, b = (
            np.asarray(wq[str(name)]["W"].values, np.float64),
            np.asarray(w[str(name)]["W"].values),
        )
        want = np.linalg.norm(a - b) / np.linalg.norm(b)
        np.testing.assert_allclose(dmg["rel_error"].values[i], want, rtol=1e-6)
    assert list(dmg["quant"].values) == ["int8 per-tensor"] * 5
    fc1 = dmg.isel(layer=2)
    assert np.isfinite(fc1["error_sigma_mp"].item()) and fc1["error_num_spikes"].item() >= 0
    assert 0 < fc1["rel_error"].item() < 0.05  # int8 rounding: ~1 % of the weight's norm


def test_layers_left_in_float_have_no_error(int8, tmp_path):
    """Quantize only the MatMul / Gemm layers: the convolutions are unchanged, error 0."""
    quantize_dynamic(
        str(rmtkit.data_path()), tmp_path / "fc_only.onnx", op_types_to_quantize=["Gemm"]
    )
    dmg = rmtkit.quantization_damage(tmp_path / "fc_only.onnx", rmtkit.data_path())
    assert list(dmg["quant"].values[:2]) == ["", ""]
    np.testing.assert_array_equal(dmg["rel_error"].values[:2], 0.0)
    np.testing.assert_array_equal(dmg["delta_log_spectral_norm"].values[:2], 0.0)


def test_source_and_quant_survive_netcdf(int8, tmp_path):
    d = rmtkit.analyze(int8["per_channel"], progress=False)
    d.to_netcdf(tmp_path / "d.nc")
    back = xr.load_dataset(tmp_path / "d.nc")
    assert list(back["source"].values) == list(d["source"].values)
    assert list(back["quant"].values) == list(d["quant"].values)
    assert str(back["source"].values[2]) == "fc1.weight_Transposed_quantized"
    assert str(back["quant"].values[2]) == "int8 per-channel"
    assert str(back["quant"].values[0]) == "int8 per-tensor"  # ConvInteger: per tensor


def test_cli_compare_float_and_int8(int8, capsys):
    assert main(["compare", str(rmtkit.data_path()), int8["per_tensor"], "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Quantization damage of per_tensor.onnx" in out
    table = out.split("Quantization damage", 1)[1]
    for col in ("delta_alpha", "rel_error", "error_num_spikes", "int8 per-tensor", "fc1"):
        assert col in table


def test_cli_compare_of_float_models_prints_no_damage(capsys):
    src = str(rmtkit.data_path())
    assert main(["compare", src, src, "--quiet"]) == 0
    assert "Quantization damage" not in capsys.readouterr().out


def test_a_layer_that_cannot_be_read_stays_a_flagged_row(tmp_path):
    """An unreadable quantized layer (int8 codes without a scale) is flagged in the quantized
    model, in the analysis of W_q - W (``base=``) and in the damage table; never read."""
    st = require("safetensors.numpy")
    from rmtkit.errors import RowWarning

    rng = np.random.default_rng(0)
    a = (rng.standard_t(3, size=(96, 128)) * 0.05).astype(np.float32)
    b = (rng.standard_t(3, size=(80, 128)) * 0.05).astype(np.float32)
    st.save_file({"a.weight": a, "b.weight": b}, str(tmp_path / "float.safetensors"))
    codes = np.round(b / np.abs(b).max() * 127).astype(np.int8)
    st.save_file({"a.weight": a, "b.weight": codes}, str(tmp_path / "q.safetensors"))
    dmg = rmtkit.quantization_damage(tmp_path / "q.safetensors", tmp_path / "float.safetensors")
    flag = RowWarning.UNSUPPORTED_QUANTIZATION.because("int8 weight without scales")
    assert list(dmg["warning"].values)[1] == flag
    assert list(dmg["error_warning"].values)[1] == flag
    assert np.isnan(dmg["rel_error"].values[1]) and np.isnan(dmg["delta_alpha"].values[1])
    assert dmg["rel_error"].values[0] == 0.0  # a float layer, unchanged
