"""Barrier models: the model folder format (:mod:`hopnet.models.folder`), the ALIGNN barrier
models 1-4 (:mod:`hopnet.models.barrier`) and the classical baseline. Nothing heavy is imported
here; import the submodules."""

from hopnet.models.folder import Prediction, load_model

__all__ = ["Prediction", "load_model"]
