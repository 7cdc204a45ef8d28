"""The unit of an analysis's work: one row of the result table.

A :class:`Row` is one layer (or one convolution slice with ``pool=False``): its sizes, known from
the shape alone, its spectrum once computed (and its randomized spectrum), the values the bucket
kernels computed for it, and its ``warning`` label (:class:`rmtkit.errors.RowWarning`). The
labeled layer (:mod:`rmtkit.analysis`) plans and labels rows; the engine fills their spectra and
values.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Row"]


@dataclass
class Row:
    """One row of an analysis (see the module docstring)."""

    name: str
    kind: str
    layer_id: int
    N: int
    M: int
    rf: int
    slice_id: int
    n_expected: int
    warning: str = ""
    source: str = ""  # the stored tensor the row was read from (node attr ``source``)
    quant: str = ""  # how it was stored quantized ("" for float; node attr ``quant``)
    evals: np.ndarray | None = None
    rand_evals: np.ndarray | None = None
    values: dict = field(default_factory=dict)
    #: per-row arrays an option computed while ``W`` was in memory (e.g. ``"vectors"``)
    extras: dict = field(default_factory=dict)
