"""What can go wrong, and how rmtkit says so: typed exceptions and row warnings.

Bad *input* (an unknown option, a file that cannot be parsed) raises one of the exceptions below.
Every error names the file, layer or tensor concerned, what was expected and what was found. All
derive from :class:`RmtkitError`, so ``except rmtkit.errors.RmtkitError`` catches any of them;
each also derives from the builtin a caller would naturally catch (``ValueError``,
``TypeError``, ``FileNotFoundError``).

A bad *layer* never raises: its row of the analysis carries NaN metrics and a ``warning``, one of
the labels of :class:`RowWarning` (the label of a fitted layer says how its alpha reads).

This module is the shared vocabulary of every layer of rmtkit: it imports nothing but the
standard library.
"""

import enum

__all__ = [
    "FITTED_WARNINGS",
    "SCALE_ONLY_WARNINGS",
    "CorruptModelError",
    "InvalidArgumentError",
    "InvalidWeightsError",
    "MissingDataError",
    "RmtkitError",
    "RowWarning",
    "UnsupportedModelError",
]


class RmtkitError(Exception):
    """Base class of every error rmtkit raises on purpose."""


class InvalidWeightsError(RmtkitError, ValueError):
    """A weight array has the wrong rank, dtype or layout for the requested operation."""


class InvalidArgumentError(RmtkitError, ValueError):
    """An option is unknown or out of range (checked before any work starts)."""


class UnsupportedModelError(RmtkitError, TypeError):
    """The object or file is of a kind no adapter reads (or has no analyzable layer)."""


class CorruptModelError(RmtkitError, ValueError):
    """A model file exists but cannot be parsed: truncated, bad header, inconsistent tensors."""


class MissingDataError(RmtkitError, FileNotFoundError):
    """A file the model refers to (external data, shard) does not exist."""


class RowWarning(enum.StrEnum):
    """The ``warning`` label of a row of :func:`rmtkit.analyze` (and of the other per-layer
    tables): why a layer has NaN metrics, or how its alpha reads.

    Each member is the string the table holds (``RowWarning.TOO_FEW_EVALS == "too-few-evals"``);
    its docstring says when it is given. Labels that carry a reason are written
    ``"<label>: <reason>"`` (:meth:`because`); :meth:`of` reads the label back.
    The checks of an analysis run in the order of the members, the first that applies labels
    the row.
    """

    def __new__(cls, value: str, doc: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    NO_BASE_LAYER = "no-base-layer", "``base=`` has no layer of this node path."
    BASE_SHAPE_MISMATCH = "base-shape-mismatch", "``base=`` has this layer with another shape."
    NO_MATCH = "no-match", "Distances: the other model has no layer of this path and shape."
    UNSUPPORTED_QUANTIZATION = (
        "unsupported-quantization",
        "The layer is stored quantized in a scheme rmtkit does not read (an operator or a "
        "packed checkpoint layout it cannot dequantize); written "
        "``unsupported-quantization: <op/scheme>``. Its codes are never read as weights "
        "(sizes only).",
    )
    TOO_MANY_EVALS = (
        "too-many-evals",
        "More eigenvalues than ``max_evals``; ``W`` is not even read (sizes only).",
    )
    READ_FAILED = (
        "read-failed",
        "Reading ``W`` raised (a corrupt tensor, a vanished file, a loader's own error); "
        "written ``read-failed: <reason>`` (sizes only).",
    )
    NON_FINITE_WEIGHTS = "non-finite-weights", "NaN or Inf in ``W`` (sizes only)."
    ALL_ZERO = "all-zero", "Every entry of ``W`` is 0 (sizes only)."
    SPECTRUM_OVERFLOW = (
        "spectrum-overflow",
        "Entries so large that the eigenvalues would overflow float64 (sizes only).",
    )
    SPECTRUM_UNDERFLOW = (
        "spectrum-underflow",
        "Entries so small that the eigenvalues would underflow float64 (sizes only).",
    )
    ESD_FAILED = (
        "esd-failed",
        "LAPACK did not converge on the spectrum; written ``esd-failed: <reason>`` (sizes only).",
    )
    TOO_FEW_EVALS = (
        "too-few-evals",
        "Fewer than ``min_evals`` eigenvalues: not fitted, scale metrics kept.",
    )
    RANK_DEFICIENT = (
        "rank-deficient",
        "Fewer than ``min_evals`` numerically nonzero eigenvalues (the ``matrix_rank`` of "
        "``W`` as read): not fitted, scale metrics kept.",
    )
    DUPLICATE_EVALS = (
        "duplicate-evals",
        "More than half of the fitted eigenvalues, or of the tail the fit chose, are equal up "
        "to round-off (0.1 %): a power law gives ties zero probability, so no alpha; scale "
        "metrics kept.",
    )
    FIT_FAILED = (
        "fit-failed",
        "The fit found no admissible tail or a non-finite alpha: the fit-based metrics are "
        "NaN, the others reported.",
    )
    SHORT_TAIL = (
        "short-tail",
        "``gof=True``: the fitted tail has fewer than 10 eigenvalues, too few to test whether it "
        "is a power law: the goodness-of-fit values are NaN, alpha is reported (docs/math.md "
        "§12).",
    )
    NOT_POWER_LAW = (
        "not-power-law",
        "``gof=True``: the CSN goodness-of-fit p-value ``pl_pvalue`` is at most 0.1, so the tail "
        "is not a power law and its alpha does not measure a heavy tail (docs/math.md §12); "
        "alpha is still reported.",
    )
    OVER_TRAINED = (
        "over-trained",
        "Fitted, alpha < 2: hints at over-training (docs/math.md §4).",
    )
    UNDER_TRAINED = (
        "under-trained",
        "Fitted, alpha > 6: an almost random layer, hints at under-training.",
    )
    NONE = "", "Fitted, 2 <= alpha <= 6: a well-trained layer by HT-SR."

    def because(self, reason: str) -> str:
        """The label with its reason: ``"read-failed: <reason>"``."""
        return f"{self.value}: {reason}"

    @classmethod
    def of(cls, label: str) -> "RowWarning":
        """The member of a table's label (its part before ``": "``)."""
        return cls(str(label).split(": ", 1)[0])


#: labels of rows reported with their scale metrics only (nothing fitted is kept)
SCALE_ONLY_WARNINGS = (
    RowWarning.TOO_FEW_EVALS,
    RowWarning.RANK_DEFICIENT,
    RowWarning.DUPLICATE_EVALS,
)
#: labels of rows whose spectrum was fitted (a failed fit included)
FITTED_WARNINGS = (
    RowWarning.NONE,
    RowWarning.OVER_TRAINED,
    RowWarning.UNDER_TRAINED,
    RowWarning.FIT_FAILED,
    RowWarning.SHORT_TAIL,
    RowWarning.NOT_POWER_LAW,
)
