"""Doctest namespace of rmtkit's modules (``pytest --doctest-modules rmtkit/core``).

The examples in the docstrings use ``rmtkit``, ``jax``, ``jnp`` and ``np`` without importing them,
the way the README's tour does; float64 is on, as in the published tables and the test suite.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import rmtkit

    jax.config.update("jax_enable_x64", True)
    doctest_namespace.update(rmtkit=rmtkit, jax=jax, jnp=jnp, np=np)
