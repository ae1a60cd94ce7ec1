"""hopnet: ionic migration barriers in solids, in milliseconds instead of days of NEB.

The public API: :func:`predict` / :func:`predict_many` (the barrier of a hop, from
:mod:`hopnet.inference`), :func:`screen` (every distinct hop of a structure and its 1/2/3-D
percolation barriers, from :mod:`hopnet.screening`) and :func:`load_model` (a shipped name or a
model folder, from :mod:`hopnet.models.folder`).

Importing the package does no work: no git calls, no device probing, no downloads; the
functions are looked up in their modules on first use (PEP 562), so ``import hopnet`` stays free
of torch and pymatgen.
"""

from hopnet.infra.errors import HopnetError
from hopnet.infra import package_version

__version__ = package_version()

#: public name -> module that defines it
_API = {"predict": "hopnet.inference", "predict_many": "hopnet.inference", "screen": "hopnet.screening",
        "load_model": "hopnet.models.folder"}

__all__ = ["__version__", "HopnetError", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hopnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
