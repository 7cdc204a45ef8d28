"""`import rmtkit` stays light: no framework, no plotting library, no xarray (DESIGN.md)."""

import json
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "onnx",
    "onnxruntime",
    "keras",
    "tensorflow",
    "matplotlib",
    "xarray",
    "safetensors",
    "hypothesis",
)


def modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_import_rmtkit_imports_no_framework():
    loaded = modules_after("import rmtkit")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.slow
def test_import_adapters_imports_no_framework():
    loaded = modules_after("import rmtkit.adapters")
    assert not loaded & {"torch", "onnx", "keras", "tensorflow", "matplotlib"}


@pytest.mark.slow
def test_lazy_names_resolve():
    loaded = modules_after("import rmtkit; rmtkit.load; rmtkit.validate_collection")
    assert "xarray" in loaded and "torch" not in loaded
