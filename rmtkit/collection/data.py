"""Files shipped with rmtkit (``rmtkit/data/``): the embedded default model."""

import importlib.resources
from pathlib import Path

from rmtkit.errors import MissingDataError

__all__ = ["DEFAULT_MODEL", "data_path"]

#: The embedded default model: a small CNN trained on scikit-learn's digits
#: (scripts/train_default_model.py; architecture and test accuracy in digits_cnn.json).
DEFAULT_MODEL = "digits_cnn.onnx"


def data_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a file shipped in ``rmtkit/data`` (default: the embedded default model).

    >>> data_path().name
    'digits_cnn.onnx'
    """
    path = Path(str(importlib.resources.files("rmtkit") / "data" / name))
    if not path.is_file():
        raise MissingDataError(f"{path}: rmtkit ships no data file {name!r}")
    return path
