"""Training of the barrier models with Lightning: typed configs (:mod:`.config`), the input
pipeline (:mod:`.data`), the Lightning module (:mod:`.module`) and :func:`.train.train`.
Import the submodules; nothing is imported here (Lightning is slow to import)."""
