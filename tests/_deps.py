"""Optional-dependency imports for tests: skip when missing, fail under RMTKIT_REQUIRE_ALL_DEPS."""

import importlib
import os

import pytest


def require(modname: str):
    """Import ``modname``; skip the test module when it is missing, unless
    ``RMTKIT_REQUIRE_ALL_DEPS`` is set, where a missing module is an error (CI "full" job)."""
    if modname == "keras":
        os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ.get("RMTKIT_REQUIRE_ALL_DEPS"):
        try:
            return importlib.import_module(modname)
        except ImportError as err:
            pytest.fail(f"RMTKIT_REQUIRE_ALL_DEPS is set but {modname!r} is missing: {err}")
    return pytest.importorskip(modname)
