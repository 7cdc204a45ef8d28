"""The options of an analysis, checked before any layer is read.

:func:`check_options` checks every option's type and range (no layer is read, so a typo never
costs a model's worth of work) and returns the static options of the bucket kernels.
"""

from rmtkit._engine.kernels import KernelOptions
from rmtkit.collection.finetune import LORA_MODES
from rmtkit.core import validate
from rmtkit.core.metrics import WEAK_RANK_TOL
from rmtkit.core.powerlaw import FIX_FINGERS, XMIN_METHODS
from rmtkit.errors import InvalidArgumentError

__all__ = ["DEFAULT_MIN_EVALS", "DEFAULT_N_BOOT", "FITS", "PROGRESS", "check_options"]

#: default ``min_evals``: the power-law fit needs ~50 eigenvalues to mean anything
#: (docs/math.md §8; WeightWatcher's default is 8)
DEFAULT_MIN_EVALS = 50
#: default ``n_boot`` of ``gof=True``: CSN's 2,500 replicates give the p-value to +-0.01
DEFAULT_N_BOOT = 2500
#: the ``fit`` option: power law, truncated power law, TPL with the "peak" xmin range
FITS = ("PL", "TPL", "E_TPL")
#: the named value of ``progress`` besides True / False: draw the bar even off a terminal
PROGRESS = "always"
#: most eigenvalues ``xmax=-k`` may drop (a larger k leaves nothing to fit anyway)
_MAX_DROP = 2**31 - 1


def check_progress(progress) -> None:
    """Raise unless ``progress`` is True, False or ``"always"``."""
    if not (validate.is_bool(progress) or (isinstance(progress, str) and progress == PROGRESS)):
        raise InvalidArgumentError(
            f"`progress` must be True, False or 'always'; got {progress!r:.80}."
        )


def check_options(
    *,
    min_evals,
    max_evals,
    pool,
    fit,
    xmin_method,
    xmin_max,
    xmax,
    fix_fingers,
    randomize,
    mp_fit,
    detx,
    lora,
    progress=False,
    max_fingers=10,
    finger_thresh=1.0,
    tolerance=WEAK_RANK_TOL,
    spacing=False,
    vectors=False,
    inverse=False,
    conv2d_fft=False,
    intra=False,
    sparsify=True,
    stacked=False,
    gof=False,
    n_boot=DEFAULT_N_BOOT,
    key_impl="threefry2x32",
) -> KernelOptions:
    """Check every option's type and range (no layer is read); the kernels' static options."""
    if not validate.is_int(min_evals) or min_evals < 0:
        raise InvalidArgumentError(f"`min_evals` must be an int >= 0; got {min_evals!r:.80}.")
    if max_evals is not None:
        if not validate.is_int(max_evals) or max_evals < 1:
            raise InvalidArgumentError(
                f"`max_evals` must be None or an int >= 1; got {max_evals!r:.80}."
            )
        if max_evals < min_evals:
            raise InvalidArgumentError(
                f"`max_evals`={max_evals} is smaller than `min_evals`={min_evals}: no layer "
                "could be analysed."
            )
    for name, value in (
        ("pool", pool),
        ("randomize", randomize),
        ("mp_fit", mp_fit),
        ("detx", detx),
        ("gof", gof),
    ):
        validate.flag(value, name)
    for name, value in (
        ("spacing", spacing),
        ("vectors", vectors),
        ("inverse", inverse),
        ("conv2d_fft", conv2d_fft),
        ("intra", intra),
        ("sparsify", sparsify),
        ("stacked", stacked),
    ):
        validate.flag(value, name)
    _check_combinations(
        pool=pool,
        randomize=randomize,
        vectors=vectors,
        inverse=inverse,
        conv2d_fft=conv2d_fft,
        intra=intra,
        stacked=stacked,
    )
    check_progress(progress)
    validate.choice(fit, "fit", FITS)
    validate.choice(xmin_method, "xmin_method", XMIN_METHODS)
    validate.choice(fix_fingers, "fix_fingers", FIX_FINGERS)
    if not (
        xmax is None
        or (isinstance(xmax, str) and xmax == "force")
        or (validate.is_int(xmax) and -_MAX_DROP <= xmax < 0)
    ):
        raise InvalidArgumentError(
            f"`xmax` must be None, 'force' or a negative int -k (k < 2**31); got {xmax!r:.80}."
        )
    validate.finite_positive(xmin_max, "xmin_max")
    if fit != "PL" and (fix_fingers is not None or xmax is not None):
        raise InvalidArgumentError(
            f"`fix_fingers` and `xmax` apply to fit='PL' only; got fit={fit!r}."
        )
    validate.choice(lora, "lora", LORA_MODES)
    if not validate.is_int(max_fingers) or max_fingers < 1:
        raise InvalidArgumentError(f"`max_fingers` must be an int >= 1; got {max_fingers!r:.80}.")
    for name, value in (
        ("finger_thresh", finger_thresh),
        ("tolerance", tolerance),
    ):
        validate.positive(value, name)  # a number > 0, not None
        validate.finite_positive(value, name)
    validate.positive(n_boot, "n_boot", integer=True)
    if gof and (fit != "PL" or fix_fingers is not None or xmax is not None):
        raise InvalidArgumentError(
            "`gof=True` tests the power law of fit='PL' on [xmin, inf): it does not apply to "
            f"fit={fit!r}, fix_fingers={fix_fingers!r} or xmax={xmax!r}."
        )
    return KernelOptions(
        fit=fit,
        xmin_method=xmin_method,
        xmin_max=None if xmin_max is None else float(xmin_max),
        xmax=xmax if xmax is None or isinstance(xmax, str) else int(xmax),
        fix_fingers=fix_fingers,
        mp_fit=bool(mp_fit),
        detx=bool(detx),
        max_fingers=int(max_fingers),
        finger_thresh=float(finger_thresh),
        tolerance=float(tolerance),
        spacing=bool(spacing),
        gof=bool(gof),
        n_boot=int(n_boot) if gof else 0,
        key_impl=key_impl if gof else "threefry2x32",
    )


def _check_combinations(*, pool, randomize, vectors, inverse, conv2d_fft, intra, stacked):
    """Raise for the combinations of the derived analyses that have no meaning (WeightWatcher
    0.7.7 refuses the same ones, except where noted)."""
    conflicts = [
        (intra and randomize, "`intra` with `randomize`"),
        (intra and vectors, "`intra` with `vectors`"),
        (intra and stacked, "`intra` with `stacked`"),
        (intra and conv2d_fft, "`intra` with `conv2d_fft`"),
        (inverse and vectors, "`inverse` with `vectors`"),
        (conv2d_fft and not pool, "`conv2d_fft` with `pool=False`"),
        (stacked and not pool, "`stacked` with `pool=False` (one matrix is stacked)"),
        (conv2d_fft and randomize, "`conv2d_fft` with `randomize` (rmtkit randomizes W)"),
        (conv2d_fft and vectors, "`conv2d_fft` with `vectors`"),
    ]
    for bad, what in conflicts:
        if bad:
            raise InvalidArgumentError(f"{what} cannot be combined; run them separately.")
