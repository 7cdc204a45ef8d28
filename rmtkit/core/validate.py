"""The checks of rmtkit's arguments, in one place: arrays, options, integers and keys.

Shapes, dtypes and option strings are known before any computation (also under ``jax.jit``),
so they are checked here and fail fast with a message that names the argument, says what was
expected, what arrived, and how to fix it. Values (NaN, short tails) are not checked here:
the estimators return NaN for them.

Every layer of rmtkit uses these (the labeled layer for its options too), so one option is
refused the same way wherever it is given: arrays raise :class:`InvalidWeightsError`, options
:class:`InvalidArgumentError`.
"""

import math
from collections.abc import Iterable

import jax
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
            f"`{name}` must hold real numbers, got dtype {x.dtype}; pass a float array."
        )
    return x


def spectrum(x: ArrayLike, name: str = "evals") -> Array:
    """A non-empty 1-D floating spectrum (one matrix); batches go through ``jax.vmap``."""
    x = float_array(x, name)
    if x.ndim != 1:
        raise InvalidWeightsError(
            f"`{name}` must be a 1-D spectrum, got shape {x.shape}; map over a batch with jax.vmap."
        )
    if x.size == 0:
        raise InvalidWeightsError(
            f"`{name}` is empty: a spectrum needs at least one eigenvalue (mask padding "
            "instead of removing it)."
        )
    return x


def mask(m: ArrayLike | None, like: Array, name: str = "mask") -> Array:
    """A boolean mask of the same shape as ``like``; ``None`` means all ``True``."""
    if m is None:
        return jnp.ones(like.shape, dtype=bool)
    m = jnp.asarray(m)
    if m.shape != like.shape:
        raise InvalidWeightsError(
            f"`{name}` must have the shape of the spectrum {like.shape}, got {m.shape}."
        )
    if m.dtype != jnp.bool_:
        raise InvalidWeightsError(f"`{name}` must be boolean, got dtype {m.dtype}.")
    return m


def weights(w: ArrayLike, name: str = "W") -> Array:
    """A weight array in canonical layout: 2-D dense, 3-D conv1d or 4-D conv2d."""
    w = float_array(w, name)
    if w.ndim not in (2, 3, 4):
        raise InvalidWeightsError(
            f"`{name}` must be 2-D (fan_out, fan_in), 3-D (fan_out, fan_in, k) or 4-D "
            f"(fan_out, fan_in, kh, kw), got shape {w.shape}."
        )
    if 0 in w.shape:
        raise InvalidWeightsError(f"`{name}` has an empty axis: shape {w.shape}.")
    return w


def is_int(value) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_bool(value) -> bool:
    """True or False (Python or numpy)."""
    return isinstance(value, (bool, np.bool_))


def choice(value, name: str, allowed: Iterable) -> None:
    """Raise unless ``value`` is one of ``allowed`` (str / None / int / bool options).

    Any other type (an array, a list) is refused without comparing it.
    """
    allowed = tuple(allowed)
    if not (isinstance(value, (str, int, np.integer, type(None))) and value in allowed):
        raise InvalidArgumentError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r:.80}."
        )


def flag(value, name: str) -> None:
    """Raise unless ``value`` is True or False."""
    if not is_bool(value):
        raise InvalidArgumentError(f"`{name}` must be True or False; got {value!r:.80}.")


def positive(value, name: str, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a (non-negative if ``allow_zero``) number / integer."""
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not (value >= 0 if allow_zero else value > 0)
    ):
        what = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgumentError(f"`{name}` must be {what} {bound}; got {value!r}.")


def finite_positive(value, name: str) -> None:
    """Raise unless ``value`` is None or a finite number > 0."""
    if value is not None and not (
        isinstance(value, (int, float, np.integer, np.floating))
        and not is_bool(value)
        and math.isfinite(value)
        and value > 0
    ):
        raise InvalidArgumentError(
            f"`{name}` must be None or a finite number > 0; got {value!r:.80}."
        )


def key(k, name: str = "key") -> Array:
    """A ``jax.random`` key given as an *array* argument of a pure function: a typed key
    (``jax.random.key(seed)``) or a legacy raw ``uint32[2]`` key, returned as an array (works
    on tracers). Seeds are not keys here: the functions of :mod:`rmtkit.core` take the key
    they are given."""
    arr = jnp.asarray(k)
    if not (
        jnp.issubdtype(arr.dtype, jax.dtypes.prng_key)
        or (arr.dtype == jnp.uint32 and arr.shape == (2,))
    ):
        raise InvalidWeightsError(
            f"`{name}` must be a jax.random key (jax.random.key(seed)), got dtype {arr.dtype} "
            f"and shape {arr.shape}."
        )
    return arr


def _seed(k, name: str) -> int | None:
    """The int seed of a key option (``None`` is seed 0), or None when ``k`` is not a seed."""
    if k is None:
        return 0
    if not is_int(k):
        return None
    if not -(2**63) <= int(k) < 2**63:
        raise InvalidArgumentError(f"`{name}` seed {k} is outside the int64 range.")
    return int(k)


def as_key(k, name: str = "key"):
    """A typed ``jax.random`` key from an *option* of the labeled layer: ``None`` (key 0), an
    int seed in the int64 range, a typed key or a legacy raw ``uint32[2]`` key."""
    seed = _seed(k, name)
    if seed is not None:
        return jax.random.key(seed)
    if not is_bool(k):
        try:
            arr = jnp.asarray(k)
            if arr.dtype == jnp.uint32:
                k = jax.random.wrap_key_data(arr)  # legacy raw key
            if jnp.issubdtype(jnp.asarray(k).dtype, jax.dtypes.prng_key):
                jax.random.fold_in(k, 0)  # one key, not a batch of them
                return k
        except (TypeError, ValueError):
            pass
    raise InvalidArgumentError(
        f"`{name}` must be a jax.random key (jax.random.key(seed)) or an int seed; got {k!r:.80}."
    )


def key_option(k, name: str = "key") -> None:
    """Check a key *option* as :func:`as_key` does, without building a key from a seed.

    A function that may not need its key (``randomize=False``) checks it up front with this:
    the first ``jax.random.key`` of a process costs ~0.3 s (its compilation).
    """
    if _seed(k, name) is None:
        as_key(k, name)
