"""hopnet: ionic migration barriers in solids from ALIGNN graph networks.

Importing the package does no work: no git calls, no device probing, no downloads.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("hopnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from hopnet.infra.errors import HopnetError  # noqa: E402

__all__ = ["__version__", "HopnetError"]


def __getattr__(name: str):
    """``hopnet.predict(...)`` / ``hopnet.predict_many(...)`` without importing the submodule
    first (loaded on first use, so ``import hopnet`` stays free of torch and model loading)."""
    if name in ("predict", "predict_many"):
        import importlib

        module = importlib.import_module("hopnet.predict")
        return module if name == "predict" else module.predict_many
    raise AttributeError(f"module 'hopnet' has no attribute {name!r}")
