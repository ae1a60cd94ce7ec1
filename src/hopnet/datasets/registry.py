"""The data-set registry: name -> file, description, units, recipe and pinned checksums.

Every registered file is a JSON list of entries in the JARVIS layout (``atoms`` dict plus a
``target``). The ``sha256`` pinned for a set is the sha256 of its *decompressed* JSON text, so the
same check holds whether a copy is kept as ``.json`` or ``.json.gz`` (the gzip header carries a
time stamp and would make byte hashes of equal data differ). The pins were taken from the shared
copy in ``/work/shared/data``; each one is reproduced exactly by the set's recipe.

A **recipe** says how a set is rebuilt from the public originals in the sai-mat-group GitHub
repositories (verified file by file, see ``docs/data.md``): which upstream files (each pinned by
the sha256 of its raw bytes), and how they are combined:

* ``migration-barriers`` is ``RAW-Em-5-images-TRAIN.json`` as published (the 559-path training
  split), ``jarvis2d`` is ``jarvis_2d_std_90_10.json`` as published: despite its name that file
  holds only the 993-entry training part of the 90/10 split. Both are one-file recipes.
* the seven pre-training sets (fe bg gv ph dc pz ebg) have no single upstream file: each is the
  union by ``jid`` of 26 or 27 files (the 25 trial runs, plus ``*_1000_std_clean.json`` for fe
  and bg, ``bg_trial2_800_new.json`` for bg, and the published 10 % **test split**
  ``*_std_10_test.json`` for gv ph dc pz ebg). So five of them are not training parts: they
  include their published test split, and numbers after pre-training on them must not be
  compared with the published per-property test results.
* ``migration/metadata_train.csv``, the companion table of ``migration-barriers``, is converted
  from sheet ``COMPLETE-TABUATION`` of ``TABULATION-GIT-HUB.xlsx``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hopnet.datasets.pins import pins
from hopnet.infra.errors import DataError

#: format of a registered file: "band" = migration-barrier bands (``sys_name``, ``class``, ...),
#: "property" = ``{"jid", "target", "atoms"}`` property records.
FORMATS = ("band", "property")
#: how a recipe combines its sources (implemented in :mod:`hopnet.datasets.recipes`)
BUILDS = ("copy", "merge-by-jid", "metadata-csv")

#: where the public originals are served; a mirror replaces this base and keeps the layout
UPSTREAM = "https://raw.githubusercontent.com"
BRANCH = "main"
MIG_REPO = "sai-mat-group/predicting-migration-barriers"
TL_REPO = "sai-mat-group/transfer-learning-material-properties"
_SCALED = (
    "min-max scaled to [-1, 1] over the full source set, as published (dimensionless); "
    "invert with the source set's min/max to get physical units"
)


@dataclass(frozen=True)
class Source:
    """One upstream file: ``path`` in GitHub repository ``repo`` ("owner/name", branch ``main``),
    pinned by the sha256 of its raw bytes. ``sha256`` is None only for a file whose converted
    result is pinned instead (the xlsx table, whose own checksum was not available)."""

    repo: str
    path: str
    sha256: str | None

    @property
    def name(self) -> str:
        """The file name (unique within a recipe)."""
        return self.path.rsplit("/", 1)[-1]

    def url(self, base: str = UPSTREAM) -> str:
        """``<base>/<owner>/<repo>/main/<path>``: the raw-file URL, or its place on a mirror."""
        return f"{base.rstrip('/')}/{self.repo}/{BRANCH}/{self.path}"


@dataclass(frozen=True)
class Recipe:
    """How one file of the data dir is made: fetch ``sources``, combine them with ``build`` (one
    of :data:`BUILDS`) and check the result against ``sha256`` (of the decompressed content)."""

    relpath: str
    sha256: str
    sources: tuple[Source, ...]
    build: str = "copy"


@dataclass(frozen=True)
class DatasetInfo:
    """One registered data set.

    ``relpath`` is relative to the data dir (``$HOPNET_DATA_DIR``) and to the user cache;
    ``sha256`` is the sha256 of the decompressed JSON content; ``n_entries`` the number of
    entries of the pinned file (shown by ``hopnet datasets`` without loading it). ``sources`` and
    ``build`` make the set's own recipe; ``extra_recipes`` make companion files (the migration
    metadata table).
    """

    name: str
    description: str
    task: str  # "migration-barrier" | "property-regression"
    relpath: str
    units: str
    sha256: str
    n_entries: int
    format: str = "property"
    sources: tuple[Source, ...] = ()
    build: str = "copy"
    extra_recipes: tuple[Recipe, ...] = ()

    @property
    def recipe(self) -> Recipe:
        """The recipe of the set's own file."""
        return Recipe(self.relpath, self.sha256, self.sources, self.build)

    def recipes(self) -> tuple[Recipe, ...]:
        """The set's recipe followed by those of its companion files."""
        return (self.recipe, *self.extra_recipes)

    @property
    def extras(self) -> tuple[str, ...]:
        """Relative paths of the companion files (read beside the set when present)."""
        return tuple(r.relpath for r in self.extra_recipes)

    @property
    def urls(self) -> tuple[str, ...]:
        """Upstream URLs of the set's sources."""
        return tuple(s.url() for s in self.sources)


_TRIALS = "PAIR-WISE/DATA-JSON-TRIAL-RUNS"
_TESTS = "PAIR-WISE/TRAINING-FILES/PAIR-WISE/test-files"


def pretrain_sources(p: str) -> tuple[Source, ...]:
    """The upstream files whose union is pre-training set ``p`` (see the module docstring)."""
    paths = [f"{_TRIALS}/{p}/{p}_trial{t}_{k}.json" for t in range(1, 6) for k in (10, 100, 200, 500, 800)]
    if p in ("fe", "bg"):
        paths.append(f"{_TRIALS}/{p}/{p}_1000_std_clean.json")
    if p == "bg":
        paths.append(f"{_TRIALS}/bg/bg_trial2_800_new.json")
    if p in ("gv", "ph", "dc", "pz", "ebg"):
        paths.append(f"{_TESTS}/{p.upper()}/{p}_std_10_test.json")
    pinned = pins()
    return tuple(Source(TL_REPO, path, pinned[path]) for path in paths)


def _prop(name: str, what: str, n: int, sha: str, note: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        description=f"{what} (Materials Project / Matbench subset, for multi-property pre-training{note})",
        task="property-regression",
        relpath=f"pretrain/{name}.json.gz",
        units=_SCALED,
        sha256=sha,
        n_entries=n,
        sources=pretrain_sources(name),
        build="merge-by-jid",
    )


_WITH_TEST = "; includes the published test split"
_MIG_TRAIN = Source(MIG_REPO, "DATA_FILES/MODEL-3-4/RAW/RAW-Em-5-images-TRAIN.json",
                    "e6d5579769d8ac2bdee2bdf462c5f24b3410779c7a768ed6673f0e47f9865c7c")
_MIG_TABLE = Source(MIG_REPO, "TABULATION-GIT-HUB.xlsx", None)

# sha256 of each set: pinned from the shared copy (/work/shared/data), sha256 of the decompressed JSON.
_RECORDS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="migration-barriers",
        description="Literature NEB migration barriers E_m of mobile ions in solids, training split "
                    "(band structures: atoms 0-4 are the ion's images)",
        task="migration-barrier",
        relpath="migration/band_train.json.gz",
        units="E_m in eV (not scaled)",
        sha256=_MIG_TRAIN.sha256,  # the published training file, byte for byte
        n_entries=559,
        format="band",
        sources=(_MIG_TRAIN,),
        # xc, space group, MACE baselines: the 559 training rows of the published xlsx table
        extra_recipes=(Recipe("migration/metadata_train.csv",
                              "3d4b9f4f9c4b66f63aad1ff705d38963c62c83065c261d4184818352dd248f0b",
                              (_MIG_TRAIN, _MIG_TABLE), "metadata-csv"),),
    ),
    _prop("fe", "Formation energy per atom", 8741, "1375b9e9fc160efdb73e65a31eddd4d05bc7bf718ba7305c0b8a9ceb122fd87a", ""),
    _prop("bg", "Band gap (PBE)", 9395, "fe0f97a1e9e707d4c639e6a020563a9881f9134adfcf9b86e308b8b07feb0da9", ""),
    _prop("gv", "Shear modulus log10(G_VRH)", 6683, "1ac37ccd6b5ae2d840645160b97c1fafde6589d452c80c80ce8c6ecef3c5e1e8", _WITH_TEST),
    _prop("ph", "Last phonon DOS peak", 1265, "e7fa2159ee4228d5245d2333c7e230d7f1521b294d848eb3708d627ca5c84bd4", _WITH_TEST),
    _prop("dc", "Dielectric constant (refractive index)", 1056, "b01854e4e988c5c37353f8aa744187306b754bccedf537a6a5e3ddc358fb07b1", _WITH_TEST),
    _prop("pz", "Piezoelectric modulus", 941, "b3113af78583fd4ee8c5f21d58ce267b689c3ecf14f934e606a3a76794454f30", _WITH_TEST),
    _prop("ebg", "Experimental band gap", 2451, "f4fd2907a398f9ecc305cea316b8d2c7cb54d3027b8fdd8fd4e33aeec09526f0", _WITH_TEST),
    DatasetInfo(
        name="jarvis2d",
        description="Band gaps of 2D materials from JARVIS-DFT, training split "
                    "(out-of-domain fine-tuning check)",
        task="property-regression",
        relpath="jarvis2d/train.json.gz",
        units=_SCALED,
        sha256="afb2b6c69fdb6dfadbdd758275bc481c52af1bf85612c0d1e4bd2c77d7a1485e",
        n_entries=993,
        # jarvis_2d_std_90_10.json holds only the training part of the 90/10 split, byte for byte
        sources=(Source(TL_REPO, "MULTI-PROPERTY/JARVIS/JARVIS-SCRATCH/jarvis_2d_std_90_10.json",
                        "afb2b6c69fdb6dfadbdd758275bc481c52af1bf85612c0d1e4bd2c77d7a1485e"),),
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
