"""Trace-time checks shared by the public functions.

Shapes, dtypes and option strings are known before any computation (also under ``jax.jit``),
so they are checked here and fail fast with a message that names the argument, says what was
expected, what arrived, and how to fix it. Values (NaN, short tails) are not checked here:
the estimators return NaN for them (STYLE.md §4).
"""

from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from rmtkit.errors import InvalidArgumentError, InvalidWeightsError


def is_real_dtype(dtype) -> bool:
    """Whether ``dtype`` holds real numbers: bool, integers, floats (ml_dtypes' bfloat16 and
    float8 included), not complex, strings or objects."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biuf":
        return True
    try:
        return jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    except TypeError:
        return False


def _narrow_float(dtype) -> bool:
    """Floating dtypes below 32 bits (float16, bfloat16, float8, ...): LAPACK has none."""
    return jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32


def float_array(x: ArrayLike, name: str) -> Array:
    """``jnp.asarray(x)`` with a floating dtype: narrow floats and integers become float32.

    Raises InvalidWeightsError for what is not an array of real numbers (complex, strings,
    ragged nested lists, objects).
    """
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError, OverflowError) as err:
        raise InvalidWeightsError(
            f"`{name}` must be an array of real numbers, got {type(x).__name__} ({err})."
        ) from err
    if _narrow_float(x.dtype) or jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return x.astype(jnp.float32)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InvalidWeightsError(
            f"`{name}` must hold real numbers, got dtype {x.dtype}; pass a float array.")
    return x


def spectrum(x: ArrayLike, name: str = "evals") -> Array:
    """A non-empty 1-D floating spectrum (one matrix); batches go through ``jax.vmap``."""
    x = float_array(x, name)
    if x.ndim != 1:
        raise InvalidWeightsError(
            f"`{name}` must be a 1-D spectrum, got shape {x.shape}; "
            "map over a batch with jax.vmap.")
    if x.size == 0:
        raise InvalidWeightsError(
            f"`{name}` is empty: a spectrum needs at least one eigenvalue (mask padding "
            "instead of removing it).")
    return x


def mask(m: ArrayLike | None, like: Array, name: str = "mask") -> Array:
    """A boolean mask of the same shape as ``like``; ``None`` means all ``True``."""
    if m is None:
        return jnp.ones(like.shape, dtype=bool)
    m = jnp.asarray(m)
    if m.shape != like.shape:
        raise InvalidWeightsError(
            f"`{name}` must have the shape of the spectrum {like.shape}, got {m.shape}.")
    if m.dtype != jnp.bool_:
        raise InvalidWeightsError(f"`{name}` must be boolean, got dtype {m.dtype}.")
    return m


def weights(w: ArrayLike, name: str = "W") -> Array:
    """A weight array in canonical layout: 2-D dense, 3-D conv1d or 4-D conv2d."""
    w = float_array(w, name)
    if w.ndim not in (2, 3, 4):
        raise InvalidWeightsError(
            f"`{name}` must be 2-D (fan_out, fan_in), 3-D (fan_out, fan_in, k) or 4-D "
            f"(fan_out, fan_in, kh, kw), got shape {w.shape}.")
    if 0 in w.shape:
        raise InvalidWeightsError(f"`{name}` has an empty axis: shape {w.shape}.")
    return w


def choice(value, name: str, allowed: Iterable) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidArgumentError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def positive(value, name: str, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a (non-negative if ``allow_zero``) number / integer."""
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind) or not (
            value >= 0 if allow_zero else value > 0):
        what = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"`{name}` must be {what} {bound}; got {value!r}.")
