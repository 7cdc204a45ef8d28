"""The dask.distributed path: per-layer tasks on a LocalCluster give the local Dataset."""

import numpy as np
import pytest
import xarray as xr
from helpers import local_dask_client, require

import rmtkit
from rmtkit.analysis import analyze, analyze_many, spectra
from rmtkit.errors import InvalidArgumentError

#: cluster against local: the workers run their BLAS with another number of threads, and
#: OpenBLAS on some CPUs (an Intel Xeon here, not an AMD EPYC) then sums in another order, so
#: the spectra agree to a few ulps, not bit for bit (run-to-run determinism at fixed settings
#: is tests/analysis/test_determinism.py's)
RTOL = 1e-10


def assert_same(a, b):
    """``a`` and ``b`` equal but for the BLAS's summation order: same variables, coordinates
    and attributes, values within :data:`RTOL`."""
    xr.testing.assert_allclose(a, b, rtol=RTOL, atol=0)
    assert a.attrs.keys() == b.attrs.keys()


distributed = require("distributed")
require("dask.array")


def small_tree(seed: int = 0):
    rng = np.random.default_rng(seed)
    layers = {
        f"block{i}/fc": rng.standard_t(3, (260, 130 + 20 * i)).astype(np.float32) for i in range(4)
    }
    layers["conv"] = rng.standard_normal((40, 20, 3, 3)).astype(np.float32)
    layers["bad"] = np.full((80, 70), np.nan, np.float32)
    return rmtkit.from_layers(layers)


# these two run before the module's cluster exists (file order)
def test_executor_errors_are_typed_and_early():
    with pytest.raises(InvalidArgumentError, match="unknown executor"):
        analyze(small_tree(), executor="gpu")
    with pytest.raises(InvalidArgumentError, match="executor must be"):
        analyze(small_tree(), executor=3)


def test_executor_dask_without_a_client_says_how_to_make_one():
    with pytest.raises(ValueError):
        distributed.get_client()  # runs before the module's cluster starts
    with pytest.raises(InvalidArgumentError, match="Client"):
        analyze(small_tree(), executor="dask")


@pytest.fixture(scope="module")
def client():
    with local_dask_client() as c:
        yield c


@pytest.fixture(scope="module")
def local():
    return analyze(
        small_tree(), randomize=True, mp_fit=True, key=5, progress=False, executor="threads"
    )


def test_dask_backed_weights_run_on_the_cluster_and_match_local(client, local):
    tree = small_tree().chunk()
    assert all(node["W"].chunks is not None for node in tree.subtree if "W" in node)
    with distributed.get_task_stream(client) as stream:
        out = analyze(tree, randomize=True, mp_fit=True, key=5, progress=False)
    assert_same(out, local)
    ran = [t for t in stream.data if "_remote_layer" in str(t["key"])]
    assert len(ran) == local.sizes["layer"]  # one task per layer, on the workers
    assert {t["worker"] for t in ran} <= set(client.scheduler_info()["workers"])


def test_in_memory_weights_stay_local_unless_asked(client, local, monkeypatch):
    import rmtkit._engine.executor as ex

    calls = []
    real = ex.dask_map
    monkeypatch.setattr(
        "rmtkit.analysis.collect.dask_map", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    out = analyze(small_tree(), randomize=True, mp_fit=True, key=5, progress=False)
    assert_same(out, local)
    assert calls == []
    out = analyze(small_tree(), randomize=True, mp_fit=True, key=5, progress=False, executor="dask")
    assert_same(out, local)
    assert calls == [1]
    out = analyze(
        small_tree().chunk(), randomize=True, mp_fit=True, key=5, progress=False, executor=client
    )
    assert_same(out, local)
    assert calls == [1, 1]


def test_spectra_on_the_cluster_match_local(client):
    a = spectra(small_tree().chunk())
    b = spectra(small_tree(), executor="threads")
    assert_same(a, b)


def test_analyze_many_fans_models_out_as_tasks(client):
    models = {"s0": small_tree(0), "s1": small_tree(1)}
    local = analyze_many(models, executor="threads", progress=False)
    remote = analyze_many(models, progress=False)
    assert_same(remote, local)
    assert list(remote.model.values) == ["s0", "s1"]


@pytest.mark.slow
def test_real_worker_processes_read_a_lazily_loaded_file(tmp_path):
    """Worker processes: the weights (a lazily loaded safetensors file) are read there."""
    require("safetensors")
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    path = tmp_path / "model.safetensors"
    save_file(
        {f"layer{i}.weight": rng.standard_t(3, (200, 120)).astype(np.float32) for i in range(3)},
        str(path),
    )
    local = analyze(path, progress=False, executor="threads")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster):
        remote = analyze(rmtkit.load(path).chunk(), progress=False)
    assert remote.drop_attrs().identical(local.drop_attrs())
