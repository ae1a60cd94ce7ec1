"""hopnet: ionic migration barriers in solids from ALIGNN graph networks.

Importing the package does no work: no git calls, no device probing, no downloads.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("hopnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from hopnet.errors import HopnetError  # noqa: E402

__all__ = ["__version__", "HopnetError"]
