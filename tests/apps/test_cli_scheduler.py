"""``rmtkit analyze --scheduler``: the command line on a running dask cluster."""

import numpy as np
import pytest
from helpers import local_dask_client, require

from rmtkit import cli

distributed = require("distributed")
require("dask.array")


@pytest.fixture(scope="module")
def client():
    with local_dask_client() as c:
        yield c


def test_cli_scheduler_runs_the_layers_on_that_cluster(client, tmp_path, capsys, monkeypatch):
    """``rmtkit analyze --scheduler ADDRESS`` connects to a running cluster (one task per
    layer there) and writes the same details as the local run."""
    require("safetensors")
    from safetensors.numpy import save_file

    rng = np.random.default_rng(4)
    path = tmp_path / "model.safetensors"
    save_file(
        {f"layer{i}.weight": rng.standard_t(3, (180, 110)).astype(np.float32) for i in range(3)},
        str(path),
    )
    address = client.scheduler.address
    assert (
        cli.main(
            ["analyze", str(path), "-q", "--threads", "1", "--out", str(tmp_path / "local.csv")]
        )
        == 0
    )
    with distributed.get_task_stream(client) as stream:
        assert (
            cli.main(
                [
                    "analyze",
                    str(path),
                    "-q",
                    "--scheduler",
                    address,
                    "--out",
                    str(tmp_path / "remote.csv"),
                ]
            )
            == 0
        )
    assert sum("_remote_layer" in str(t["key"]) for t in stream.data) == 3
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
    capsys.readouterr()
    monkeypatch.setattr(cli, "SCHEDULER_TIMEOUT", 0.5)
    assert cli.main(["analyze", str(path), "-q", "--scheduler", "tcp://127.0.0.1:9"]) == 1
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in capsys.readouterr().err
    assert cli.main(["analyze", str(path), "-q", "--threads", "0"]) == 1
    assert "--threads must be >= 1" in capsys.readouterr().err
