"""The default memory budget of the layers in flight: twice the largest layer, at least
MEMORY_BUDGET, unless $RMTKIT_MEMORY says otherwise (rmtkit._engine.executor.memory_budget)."""

import threading
import time

import numpy as np

from rmtkit._engine import executor
from rmtkit._engine.host import footprint


def test_twice_the_largest_layer_at_least_the_floor(monkeypatch):
    monkeypatch.delenv(executor.MEMORY_ENV, raising=False)
    assert executor.memory_budget() == executor.MEMORY_BUDGET
    assert executor.memory_budget(executor.MEMORY_BUDGET // 4) == executor.MEMORY_BUDGET
    mlp = footprint((11008, 4096), 4)  # an LLM's MLP matrix, float32
    assert executor.memory_budget(mlp) == 2 * mlp > executor.MEMORY_BUDGET


def test_the_environment_wins(monkeypatch):
    monkeypatch.setenv(executor.MEMORY_ENV, "256M")
    assert executor.memory_budget(10 << 30) == 256 << 20


def test_two_of_the_largest_layers_run_at_once(monkeypatch):
    """With the default budget of a model of large layers, two run together (two workers)."""
    monkeypatch.delenv(executor.MEMORY_ENV, raising=False)
    size = 3 * executor.MEMORY_BUDGET // 4  # two of them exceed the floor alone
    running, most = [0], [0]
    lock = threading.Lock()

    def work(item):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return item

    items = list(range(6))
    out = executor.ordered_map(
        work, items, workers=2, cost=lambda _: size, budget=executor.memory_budget(size)
    )
    assert list(out) == items
    assert most[0] == 2
    assert np.isclose(executor.memory_budget(size), 2 * size)
