"""The data-set registry: name -> file, description, units, origin and pinned checksum.

Every registered file is a JSON list of entries in the JARVIS layout (``atoms`` dict plus a
``target``), stored gzipped. The ``sha256`` pinned here is the sha256 of the *decompressed* JSON
text, so the same check holds whether a copy is kept as ``.json`` or ``.json.gz`` (the gzip header
carries a time stamp and would make byte hashes of equal data differ). All sums were pinned from the
shared copy in ``/work/shared/data`` (there is no internet access where this was written), not from
the upstream originals.

Origin URLs point at the public originals in the sai-mat-group GitHub repositories. The file names
and the branch (``main``) are our best knowledge of those repositories, not verified: the shared
copies are the *training* parts of the published files, gzipped, so a download of an original is
expected to fail the pinned checksum (and is then refused with a :class:`DataError`) unless a mirror
that serves the shared layout is named with ``HOPNET_DATA_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hopnet.infra.errors import DataError

#: format of a registered file: "band" = migration-barrier bands (``sys_name``, ``class``, ...),
#: "property" = ``{"jid", "target", "atoms"}`` property records.
FORMATS = ("band", "property")

_MIG_REPO = "https://raw.githubusercontent.com/sai-mat-group/predicting-migration-barriers/main"
_TL_REPO = "https://raw.githubusercontent.com/sai-mat-group/transfer-learning-material-properties/main"
_SCALED = (
    "min-max scaled to [-1, 1] over the full source set, as published (dimensionless); "
    "invert with the source set's min/max to get physical units"
)


@dataclass(frozen=True)
class DatasetInfo:
    """One registered data set.

    ``relpath`` is relative to the data dir (``$HOPNET_DATA_DIR``) and to the user cache;
    ``sha256`` is the sha256 of the decompressed JSON content; ``n_entries`` the number of
    entries of the pinned file (shown by ``hopnet datasets`` without loading it).
    """

    name: str
    description: str
    task: str  # "migration-barrier" | "property-regression"
    relpath: str
    units: str
    urls: tuple[str, ...]
    sha256: str
    n_entries: int
    format: str = "property"
    #: optional companion files (relative paths), e.g. the migration metadata table
    extras: tuple[str, ...] = ()


def _prop(name: str, what: str, n: int, sha: str, url_name: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        description=f"{what} (Materials Project / Matbench subset, for multi-property pre-training)",
        task="property-regression",
        relpath=f"pretrain/{name}.json.gz",
        units=_SCALED,
        # best-known location of the per-property JSON used by the MPT work (unverified name)
        urls=(f"{_TL_REPO}/MULTI-PROPERTY/SEPARATE-HEAD-FT/DATA-JSON-MULTI-PROP/{url_name}",
              f"{_TL_REPO}/PAIR-WISE/DATA-JSON-TRIAL-RUNS/{url_name}"),
        sha256=sha,
        n_entries=n,
    )


# sha256 values: pinned from the shared copy (/work/shared/data), sha256 of the decompressed JSON.
_RECORDS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="migration-barriers",
        description="Literature NEB migration barriers E_m of mobile ions in solids, training split "
                    "(band structures: atoms 0-4 are the ion's images)",
        task="migration-barrier",
        relpath="migration/band_train.json.gz",
        units="E_m in eV (not scaled)",
        # RAW-Em-5-images-TRAIN.json is the published training file; metadata comes from
        # TABULATION-GIT-HUB.xlsx (our CSV is a conversion of it and is not downloaded).
        urls=(f"{_MIG_REPO}/DATA_FILES/MODEL-3-4/RAW/RAW-Em-5-images-TRAIN.json",),
        sha256="e6d5579769d8ac2bdee2bdf462c5f24b3410779c7a768ed6673f0e47f9865c7c",
        n_entries=559,
        format="band",
        extras=("migration/metadata_train.csv",),
    ),
    _prop("fe", "Formation energy per atom", 8741, "1375b9e9fc160efdb73e65a31eddd4d05bc7bf718ba7305c0b8a9ceb122fd87a", "fe.json"),
    _prop("bg", "Band gap (PBE)", 9395, "fe0f97a1e9e707d4c639e6a020563a9881f9134adfcf9b86e308b8b07feb0da9", "bg.json"),
    _prop("gv", "Shear modulus log10(G_VRH)", 6683, "1ac37ccd6b5ae2d840645160b97c1fafde6589d452c80c80ce8c6ecef3c5e1e8", "gv.json"),
    _prop("ph", "Last phonon DOS peak", 1265, "e7fa2159ee4228d5245d2333c7e230d7f1521b294d848eb3708d627ca5c84bd4", "ph.json"),
    _prop("dc", "Dielectric constant (refractive index)", 1056, "b01854e4e988c5c37353f8aa744187306b754bccedf537a6a5e3ddc358fb07b1", "dc.json"),
    _prop("pz", "Piezoelectric modulus", 941, "b3113af78583fd4ee8c5f21d58ce267b689c3ecf14f934e606a3a76794454f30", "pz.json"),
    _prop("ebg", "Experimental band gap", 2451, "f4fd2907a398f9ecc305cea316b8d2c7cb54d3027b8fdd8fd4e33aeec09526f0", "ebg.json"),
    DatasetInfo(
        name="jarvis2d",
        description="Band gaps of 2D materials from JARVIS-DFT, training split "
                    "(out-of-domain fine-tuning check)",
        task="property-regression",
        relpath="jarvis2d/train.json.gz",
        units=_SCALED,
        # the published file holds the 90/10 train+test split; ours is its training part
        urls=(f"{_TL_REPO}/MULTI-PROPERTY/JARVIS/JARVIS-SCRATCH/jarvis_2d_std_90_10.json",),
        sha256="afb2b6c69fdb6dfadbdd758275bc481c52af1bf85612c0d1e4bd2c77d7a1485e",
        n_entries=993,
    ),
)

REGISTRY: dict[str, DatasetInfo] = {r.name: r for r in _RECORDS}


def get_info(name: str) -> DatasetInfo:
    """The registry record of ``name``; :class:`DataError` naming the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known: {', '.join(REGISTRY)} (or give a path to a .json/.json.gz file)"
        ) from None


def list_datasets() -> list[DatasetInfo]:
    """All registered data sets, in registry order."""
    return list(REGISTRY.values())
