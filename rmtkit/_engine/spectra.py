"""One layer's spectra by the route of this machine: the dispatcher of the engine.

:func:`layer_esd` sends a layer to the host (:mod:`rmtkit._engine.host`, float64 LAPACK) on a CPU
and to the accelerator (:mod:`rmtkit._engine.device`, float32 first) when JAX has a GPU or
:data:`DEVICE_ENV` says so. :func:`randomized_spectra` randomizes a layer on the host and takes
its spectrum by the same route. Both routes follow the conventions of :func:`rmtkit.esd`
(docs/math.md §1) and are tested to agree.
"""

import os

import numpy as np

from rmtkit._engine.host import host_esd, host_randomize, key_rng
from rmtkit.core.esd import CONV_NORM

__all__ = ["DEVICE_ENV", "inverse_spectrum", "layer_esd", "randomized_spectra", "use_device"]

#: environment variable forcing the device route on ("1") or off ("0"); default: on with a GPU
DEVICE_ENV = "RMTKIT_DEVICE_SPECTRA"


def use_device() -> bool:
    """Whether layer spectra go to the accelerator (:mod:`rmtkit._engine.device`):
    ``$RMTKIT_DEVICE_SPECTRA`` if set (``1``/``0``), else whether JAX's default backend is not
    the CPU."""
    env = os.environ.get(DEVICE_ENV, "").strip().lower()
    if env:
        return env not in ("0", "off", "false", "no")
    import jax

    return jax.default_backend() != "cpu"


def layer_esd(w: np.ndarray, *, pool: bool = True, conv_norm: float = CONV_NORM) -> np.ndarray:
    """One layer's eigenvalues by the route of this machine: :func:`rmtkit._engine.host.host_esd`
    (LAPACK, float64) on a CPU, :func:`rmtkit._engine.device.device_esd` (float32 first) with
    a GPU."""
    if use_device():
        from rmtkit._engine.device import device_esd

        return device_esd(w, pool=pool, conv_norm=conv_norm)
    return host_esd(w, pool=pool, conv_norm=conv_norm)


def inverse_spectrum(evals: np.ndarray) -> np.ndarray:
    r"""The inverse ESD (WeightWatcher ``inverse=True``): :math:`1/\lambda` of the positive
    eigenvalues, ascending (an exactly zero eigenvalue has no inverse and is left out)."""
    evals = np.asarray(evals)
    return np.sort(1.0 / evals[evals > 0])


def randomized_spectra(
    w: np.ndarray,
    key,
    *,
    conv_norm: float = CONV_NORM,
    replicas: int | None = None,
    inverse: bool = False,
) -> tuple[np.ndarray, float]:
    r"""Spectrum of one randomization of ``w`` and the largest eigenvalue over ``replicas``.

    ``w`` is permuted (:func:`rmtkit._engine.host.host_randomize`, generator
    :func:`rmtkit._engine.host.key_rng` of ``key``) and its pooled spectrum computed by
    :func:`layer_esd`; ``replicas`` (default: 5 when ``w`` has
    fewer than 100 eigenvalues, else 1, as WeightWatcher) independent draws give
    ``max_rand_eval``. Returns (the first draw's spectrum, ``max_rand_eval``); with
    ``inverse``, of the inverse spectra (:func:`inverse_spectrum`).
    """
    w = np.asarray(w)
    n_evals = min(w.shape[0], w.shape[1]) * int(np.prod(w.shape[2:], dtype=np.int64))
    if replicas is None:
        replicas = 5 if n_evals < 100 else 1
    rng = key_rng(key)

    def draw():
        evals = layer_esd(host_randomize(w, rng), pool=True, conv_norm=conv_norm)
        return inverse_spectrum(evals) if inverse else evals

    first = draw()
    top = float(first[-1])
    for _ in range(replicas - 1):
        top = max(top, float(draw()[-1]))
    return first, top
