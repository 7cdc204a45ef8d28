"""rmtkit.load dispatch: by object type and by path; no needless framework imports."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from helpers import require

from rmtkit import load
from rmtkit.collection import from_layers, iter_layers
from rmtkit.errors import InvalidWeightsError, MissingDataError, UnsupportedModelError


def test_datatree_passthrough_and_validation():
    tree = from_layers({"fc": np.ones((3, 2))})
    assert load(tree) is tree
    with pytest.raises(InvalidWeightsError):
        load(xr.DataTree())


def test_pytree_dispatch():
    ((p, w),) = iter_layers(load({"dense": {"kernel": np.ones((4, 3))}}))
    assert p == "dense" and w.shape == (3, 4)


@pytest.mark.bad_input
def test_unknown_extension_and_missing(tmp_path):
    path = tmp_path / "model.h5x"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(UnsupportedModelError, match=r"model\.h5x.*extension '\.h5x'"):
        load(path)
    with pytest.raises(MissingDataError, match="nothere.onnx"):
        load(tmp_path / "nothere.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedModelError, match="empty"):
        load(tmp_path / "empty")
    with pytest.raises(UnsupportedModelError, match="cannot read a builtins.int"):
        load(3)


def test_paths_dispatch(tmp_path):
    st = require("safetensors.numpy")
    w = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    st.save_file({"fc.weight": w}, str(tmp_path / "a.safetensors"))
    for target in (tmp_path / "a.safetensors", tmp_path):
        ((_, got),) = iter_layers(load(target))
        np.testing.assert_array_equal(got.values, w)
    (tmp_path / "x.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"fc.weight": "a.safetensors"}})
    )
    ((_, got),) = iter_layers(load(tmp_path / "x.safetensors.index.json"))
    np.testing.assert_array_equal(got.values, w)


def test_default_model_by_path():
    require("onnx")
    from rmtkit import data_path

    assert len(list(iter_layers(load(data_path())))) == 5


def test_objects_dispatch(tmp_path):
    torch = require("torch")
    onnx = require("onnx")
    m = torch.nn.Sequential(torch.nn.Linear(4, 3))
    assert [p for p, _ in iter_layers(load(m))] == ["0"]
    assert [p for p, _ in iter_layers(load(m.state_dict()))] == ["0"]
    torch.save(m.state_dict(), tmp_path / "m.pt")
    assert [p for p, _ in iter_layers(load(tmp_path / "m.pt"))] == ["0"]
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="/fc/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.ones((4, 3), np.float32), "W")],
    )
    model = helper.make_model(g)
    assert [p for p, _ in iter_layers(load(model))] == ["fc"]
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    assert [p for p, _ in iter_layers(load(tmp_path / "m.onnx"))] == ["fc"]


@pytest.mark.slow
def test_import_hygiene():
    code = (
        "import sys, rmtkit.adapters, rmtkit.collection.load, rmtkit.collection; "
        "import rmtkit.adapters.safetensors, rmtkit.adapters.jax; "
        "print(sorted(m for m in ('torch', 'onnx', 'keras', 'tensorflow', 'onnxruntime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
