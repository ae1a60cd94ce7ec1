"""Infrastructure every layer may use and that knows nothing of crystals or models: the error
kinds (:mod:`.errors`), typed-config key checks (:mod:`.configs`), provenance and atomic writes
(:mod:`.provenance`), sealed files and model-folder manifests (:mod:`.integrity`) and opt-in
process settings (:mod:`.runtime`). Only the package version is defined here (cheap: the
top-level package reads it at import)."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed hopnet version ("0.0.0+unknown" in a source tree that was not installed)."""
    try:
        return version("hopnet")
    except PackageNotFoundError:
        return "0.0.0+unknown"
