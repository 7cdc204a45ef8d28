"""validate.key_option: a key option is checked as validate.as_key checks it, without building a
key from a seed (the first jax.random.key of a process costs its compilation)."""

import jax
import numpy as np
import pytest

from rmtkit.core import validate
from rmtkit.errors import InvalidArgumentError


@pytest.mark.parametrize("k", [None, 0, 7, -3, np.int64(5), 2**63 - 1])
def test_seeds_are_checked_without_building_a_key(monkeypatch, k):
    def no_key(*args, **kwargs):
        raise AssertionError("a key was built")

    monkeypatch.setattr(jax.random, "key", no_key)
    validate.key_option(k)


@pytest.mark.parametrize(
    "k", [jax.random.key(3), jax.random.PRNGKey(3), np.array([0, 3], dtype=np.uint32)]
)
def test_keys_are_accepted(k):
    validate.key_option(k)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "k", [2**63, -(2**63) - 1, True, 1.5, "seed", jax.random.split(jax.random.key(0), 2)]
)
def test_what_as_key_refuses_key_option_refuses(k):
    with pytest.raises(InvalidArgumentError):
        validate.as_key(k)
    with pytest.raises(InvalidArgumentError):
        validate.key_option(k)
