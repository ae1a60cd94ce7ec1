"""Infrastructure every layer may use and that knows nothing of crystals or models: the error
kinds (:mod:`.errors`), typed-config key checks (:mod:`.configs`), provenance and atomic writes
(:mod:`.provenance`), sealed files and model-folder manifests (:mod:`.integrity`) and opt-in
process settings (:mod:`.runtime`). Nothing is imported here."""
