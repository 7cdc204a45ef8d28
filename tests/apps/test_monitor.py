"""rmtkit.monitor: per-epoch HT-SR history of a training run, flags, saving, Keras callback."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import xarray as xr
from helpers import require

from rmtkit import monitor as monitor_mod
from rmtkit.errors import InvalidArgumentError
from rmtkit.monitor import Monitor, monitor_flags


def details_of(alphas, names=None):
    """A hand-built analysis Dataset (the analyze schema, the variables the monitor reads)."""
    n = len(alphas)
    names = names or [f"fc{i}" for i in range(n)]
    alphas = np.asarray(alphas, dtype=np.float64)
    return xr.Dataset(
        {
            "alpha": ("layer", alphas),
            "log_norm": ("layer", np.ones(n)),
            "warning": ("layer", np.array([""] * n, dtype=object)),
        },
        coords={
            "name": ("layer", names),
            "kind": ("layer", ["dense"] * n),
            "layer_id": ("layer", np.arange(n)),
        },
    )


# ---------------------------------------------------------------------------------------------
# Recording, flags and saving with ready analyses (no model, fast).


def test_rows_history_and_flags_from_ready_analyses(tmp_path):
    path = tmp_path / "run" / "alpha.nc"
    mon = Monitor(path)
    trajectory = [
        [7.0, 5.0, 4.0],
        [6.5, 3.0, 2.5],
        [5.0, 1.9, 2.2],
        [4.0, 1.5, 1.8],
        [3.0, 2.4, 1.6],
    ]
    for epoch, alphas in enumerate(trajectory):
        row = mon(details_of(alphas), val_loss=1.0 / (epoch + 1))
        assert int(row.epoch) == epoch
        assert row["alpha"].dims == ("layer",)
        assert float(row["mean_alpha"]) == pytest.approx(np.mean(alphas))
        assert float(row["val_loss"]) == pytest.approx(1.0 / (epoch + 1))
        assert path.is_file()
    hist = mon.history
    assert dict(hist.sizes) == {"epoch": 5, "layer": 3}
    assert hist["alpha"].dims == ("epoch", "layer")
    assert hist["mean_alpha"].dims == ("epoch",) and hist["mean_log_norm"].dims == ("epoch",)
    np.testing.assert_allclose(hist["alpha"].values, trajectory)
    assert list(hist["name"].values) == ["fc0", "fc1", "fc2"]
    # mean alpha: 5.33, 4.0, 3.03, 2.43, 2.33 -> never below 2; the layers cross
    flags = mon.flags
    assert flags.early_stop_epoch is None and not mon.should_stop
    assert flags.over_trained == {"fc1": 2, "fc2": 3}
    assert flags.under_trained == {}  # fc0 starts above 6: the baseline, not a crossing
    assert (4, "fc1", "over-trained") not in flags.events  # fc1 went back above 2 at epoch 4
    # the file holds the same history, and its flags are the same
    saved = xr.load_dataset(path)
    np.testing.assert_allclose(saved["alpha"].values, trajectory)
    assert monitor_flags(saved) == flags
    assert not [p for p in path.parent.iterdir() if p.name != "alpha.nc"]  # no temp files left


def test_early_stop_signal_and_crossings_into_under_trained():
    mon = Monitor()
    for alphas in ([3.0, 3.0], [2.5, 6.5], [1.9, 1.5], [1.8, 1.9]):
        mon(details_of(alphas))
    flags = mon.flags
    assert flags.early_stop_epoch == 2 and mon.should_stop
    assert flags.under_trained == {"fc1": 1}
    assert flags.over_trained == {"fc0": 2, "fc1": 2}
    assert flags.events == (
        (1, "fc1", "under-trained"),
        (2, "fc0", "over-trained"),
        (2, "fc1", "over-trained"),
    )


def test_epochs_layers_and_resume(tmp_path):
    path = tmp_path / "h.nc"
    mon = Monitor(path)
    mon(details_of([3.0, 4.0]), epoch=10)
    mon(details_of([3.5, 4.5, 5.0], names=["fc0", "fc1", "new"]), epoch=12)  # a layer appears
    mon(details_of([2.5, 3.5]), epoch=10)  # re-recording an epoch replaces it
    hist = mon.history
    assert list(hist.epoch.values) == [10, 12]
    assert np.isnan(hist["alpha"].sel(epoch=10).values[2])
    assert hist["alpha"].sel(epoch=10).values[0] == 2.5
    resumed = Monitor(path, resume=True)
    resumed(details_of([2.0, 3.0]))  # next epoch: 13
    assert list(resumed.history.epoch.values) == [10, 12, 13]
    assert Monitor(path).history.sizes["epoch"] == 0  # without resume: a fresh run


@pytest.mark.bad_input
def test_metric_names_must_not_clash():
    mon = Monitor()
    with pytest.raises(InvalidArgumentError, match="clashes"):
        mon(details_of([3.0]), mean_alpha=1.0)
    with pytest.raises(InvalidArgumentError, match="must be a scalar"):
        mon(details_of([3.0]), loss=[1.0, 2.0])


def test_monitor_plot(tmp_path):
    require("matplotlib")
    import matplotlib.image

    mon = Monitor()
    for e, alphas in enumerate(([5.0, 4.0], [3.0, 2.5], [1.9, 1.8])):
        mon(details_of(alphas), val_accuracy=0.5 + e / 10)
    fig = mon.plot(savefig=tmp_path)
    out = tmp_path / "monitor.png"
    assert out.stat().st_size > 8_000
    assert matplotlib.image.imread(out).shape[:2] == (640, 800)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "early stop: epoch 2" in labels


@pytest.mark.slow
def test_import_does_not_import_keras_or_matplotlib():
    code = (
        "import sys, rmtkit.monitor; "
        "print(sorted({'keras', 'matplotlib', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Real training runs.


@pytest.mark.slow
def test_torch_training_run_moves_alpha(tmp_path):
    torch = require("torch")
    torch.manual_seed(0)
    d_in, width, n = 64, 128, 2048  # 64 and 128 eigenvalues: the buckets of the other tests
    teacher = torch.nn.Sequential(
        torch.nn.Linear(d_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8)
    )
    x = torch.randn(n, d_in)
    y = teacher(x).detach()
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 8),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    mon = Monitor(tmp_path / "torch.nc")
    mon(model, loss=float("nan"))  # epoch 0: at initialisation
    epochs = 4
    for _ in range(epochs):
        for i in range(0, n, 64):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i : i + 64]), y[i : i + 64])
            loss.backward()
            opt.step()
        mon(model, loss=loss.item())
    hist = xr.load_dataset(tmp_path / "torch.nc")
    assert list(hist.epoch.values) == list(range(epochs + 1))
    assert list(hist["name"].values) == ["0", "2", "4"]
    alpha = hist["alpha"].values
    assert np.isfinite(alpha[:, :2]).all() and np.isnan(alpha[:, 2]).all()  # 8 evals: no fit
    # training makes the spectra heavier-tailed: alpha falls well below its initial value
    assert alpha[-1, 0] < alpha[0, 0] - 1.0
    assert hist["mean_alpha"].values[-1] < hist["mean_alpha"].values[0] - 0.5
    assert hist["loss"].values[-1] < 0.05


@pytest.mark.slow
def test_keras_callback_records_rows(tmp_path):
    keras = require("keras")
    keras.utils.set_random_seed(0)
    with jax.numpy_rank_promotion("allow"):  # Keras adds biases by rank promotion
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(128, name="h1"),
                keras.layers.Dense(64, name="h2"),
                keras.layers.Dense(1, name="out"),
            ]
        )
        model.compile(optimizer="adam", loss="mse")
        x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
        y = x[:, :1] * 2.0
        mon = Monitor(tmp_path / "keras.nc")
        callback = monitor_mod.KerasMonitor(mon)
        assert isinstance(callback, keras.callbacks.Callback)
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    hist = mon.history
    assert list(hist.epoch.values) == [0, 1, 2]
    assert list(hist["name"].values) == ["h1", "h2", "out"]
    assert np.isfinite(hist["alpha"].values[:, :2]).all()
    assert np.isfinite(hist["loss"].values).all()  # Keras logs recorded as scalars
    assert xr.load_dataset(tmp_path / "keras.nc").sizes["epoch"] == 3
