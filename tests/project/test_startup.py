"""Fresh-process start-up (issue 18): what ``import rmtkit`` and a first analysis load.

No timing is asserted (benchmarks/end_to_end.py measures it); these tests keep the modules
whose import was measured to cost a fresh process the most out of the paths that do not need
them: dask (xarray's dask tests, rmtkit.collection.xarray_compat), scipy.special (only the TPL
kernel's constants need it, when it is first traced) and no framework for a safetensors file.
"""

import json
import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """Top-level names of the modules loaded after ``code`` in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=600
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_rmtkit_loads_no_scipy_special_and_no_dask():
    loaded = modules_after("import rmtkit")
    assert "scipy.special" not in loaded
    assert not {m for m in loaded if m.split(".")[0] == "dask"}


def test_a_first_analysis_of_a_safetensors_file_loads_neither(tmp_path):
    path = tmp_path / "model.safetensors"
    loaded = modules_after(
        "import numpy as np\n"
        "import rmtkit\n"
        "rng = np.random.default_rng(0)\n"
        "w = {'a.weight': rng.standard_t(3, (90, 64)).astype(np.float32)}\n"
        "import struct\n"
        "header = json.dumps({'a.weight': {'dtype': 'F32', 'shape': [90, 64],"
        " 'data_offsets': [0, w['a.weight'].nbytes]}}).encode()\n"
        f"open({str(path)!r}, 'wb').write(struct.pack('<Q', len(header)) + header"
        " + w['a.weight'].tobytes())\n"
        f"details = rmtkit.analyze({str(path)!r}, progress=False)\n"
        "rmtkit.summary(details)\n"
        "assert details.sizes['layer'] == 1\n"
    )
    assert "scipy.special" not in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("dask", "torch", "onnx", "keras")}
