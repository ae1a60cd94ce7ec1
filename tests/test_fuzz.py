"""Property-based fuzzing of the parsers (issue #7).

Random and mutated CIF / POSCAR / JSON inputs, random lattices (near-singular, huge, tiny, NaN)
and site lists, random migration-path arguments and mutated data-set files go through the
structure, path and data-set loaders. The property, for every case: the call returns something
physical (checked here independently of hopnet's own validation) or raises a
:class:`~hopnet.infra.errors.HopnetError` whose message is one non-empty line -- never another
exception, and never a call that runs longer than ``CALL_LIMIT_S`` (a hang).

Each test records how many cases it ran as ``fuzz_cases:<layer>`` user properties;
``tests/conftest.py`` sums them into one ``fuzz: N cases (...)`` line of the terminal summary.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from ase import Atoms
from hypothesis import example, given, reject, settings
from hypothesis import strategies as st
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.vasp import Poscar

import hopnet.datasets as hd
from hopnet.datasets.core import Dataset
from hopnet.infra.errors import DataError, HopnetError
from hopnet.paths import MigrationPath, as_frac3, as_path
from hopnet.structures import (
    from_jarvis,
    read_structure,
    to_jarvis,
    to_structure,
    validate_structure,
)

T = TypeVar("T")
# absurd lattices overflow numpy on their way to the error; parsers' own notes are not failures
pytestmark = [pytest.mark.filterwarnings("ignore:(overflow|invalid value|divide by zero) encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

CALL_LIMIT_S = 10.0  # one call taking longer than this is a hang
#: multiplies every test's number of examples: HOPNET_FUZZ_SCALE=20 for a long local run
SCALE = float(os.environ.get("HOPNET_FUZZ_SCALE", "1"))
LAYERS = ("structures", "paths", "datasets")
CASES: Counter[str] = Counter()  # fuzz cases run so far, per layer
NAN, INF = float("nan"), float("inf")

# --------------------------------------------------------------------------- the property


def fuzz_settings(examples: int) -> settings:
    """``examples`` cases (times :data:`SCALE`), no per-example deadline (hangs are caught by
    :func:`time_limit`)."""
    return settings(max_examples=max(1, round(examples * SCALE)), deadline=None)


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in hopnet cannot eat it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the current case when the block runs longer than ``seconds`` (SIGALRM, main thread)."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Hang:
        pytest.fail(f"hang: one call ran longer than {seconds:g} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean_message(exc: BaseException) -> None:
    """A HopnetError message is one non-empty line."""
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in msg and "\r" not in msg, f"{type(exc).__name__} message is not one line: {msg!r}"


def bounded(fn: Callable[..., T], *args: Any, errors: type[HopnetError] = HopnetError, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None when it raised ``errors`` with a clean message. Any other
    exception propagates (the case fails), and so does a hang."""
    with time_limit(CALL_LIMIT_S):
        try:
            return fn(*args, **kwargs)
        except errors as exc:
            assert_clean_message(exc)
            return None


def attempt(layer: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """One fuzz case of ``layer`` (counted): :func:`bounded` ``fn``."""
    CASES[layer] += 1
    return bounded(fn, *args, **kwargs)


def passes(check: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
    """A follow-up check inside a case: True when it accepts, False when it raises a clean
    HopnetError."""

    def run() -> bool:
        check(*args, **kwargs)
        return True

    return bool(bounded(run))


@pytest.fixture(autouse=True)
def _record_cases(record_property: Callable[[str, object], None]) -> Iterator[None]:
    """Record the cases each test ran (summed by the terminal-summary hook in conftest.py)."""
    before = CASES.copy()
    yield
    for layer in LAYERS:
        if CASES[layer] > before[layer]:
            record_property(f"fuzz_cases:{layer}", CASES[layer] - before[layer])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the files a case writes (overwritten case after case)."""
    return tmp_path_factory.mktemp("fuzz")


def assert_physical(s: Any) -> None:
    """Necessary conditions of a physical crystal, checked without hopnet; then hopnet's own
    validation must accept it too."""
    assert isinstance(s, Structure) and len(s) > 0
    matrix = np.asarray(s.lattice.matrix, dtype=float)
    frac = np.asarray(s.frac_coords, dtype=float)
    assert np.isfinite(matrix).all() and np.isfinite(frac).all()
    assert s.is_ordered and all(Element.is_valid_symbol(getattr(sp, "symbol", str(sp))) for sp in s.species)
    per_atom = abs(float(np.linalg.det(matrix))) / len(s)
    assert 1.0 <= per_atom <= 1.0e4, f"volume per atom {per_atom:g} Å^3"
    # an LLL vector is at least as long as the shortest lattice vector (an atom's own image)
    assert min(s.lattice.get_lll_reduced_lattice().abc) >= 0.5 - 1e-9
    if len(s) > 1:  # distances over the 27 nearest cells bound the true minimum-image ones from above
        d = s.distance_matrix + np.eye(len(s)) * 1e9
        assert d.min() >= 0.5 - 1e-9, f"atoms {d.min():.3g} Å apart"
    validate_structure(s)


def assert_sane_path(p: Any, validated: bool) -> None:
    """What every returned path must satisfy (the cheap construction checks); a validated one also
    has physical end structures."""
    assert isinstance(p, MigrationPath)
    assert p.initial_frac.shape == p.final_frac.shape == (3,)
    assert np.isfinite(p.initial_frac).all() and np.isfinite(p.final_frac).all()
    assert np.isfinite(p.lattice_matrix).all(), "path over a non-finite lattice"
    assert isinstance(p.n_images, int) and p.n_images >= 2
    assert math.isfinite(p.hop_length) and p.hop_length > 0
    assert Element.is_valid_symbol(p.ion)
    if validated:
        assert_physical(p.initial())
        assert_physical(p.final())


# --------------------------------------------------------------------------- seed files

def _cif(name: str, abc: tuple[float, float, float], sites: str, symmetry: str) -> str:
    """A small orthogonal-cell CIF: ``symmetry`` lines, then the site loop (label, symbol, x y z, occupancy)."""
    a, b, c = abc
    return (f"data_{name}\n_cell_length_a   {a}\n_cell_length_b   {b}\n_cell_length_c   {c}\n"
            "_cell_angle_alpha   90.0\n_cell_angle_beta   90.0\n_cell_angle_gamma   90.0\n" + symmetry +
            "loop_\n _atom_site_label\n _atom_site_type_symbol\n _atom_site_fract_x\n _atom_site_fract_y\n"
            " _atom_site_fract_z\n _atom_site_occupancy\n" + sites)


CSCL_CIF = _cif("CsCl", (4.123, 4.123, 4.123), " Cs1  Cs  0.0  0.0  0.0  1.0\n Cl1  Cl  0.5  0.5  0.5  1.0\n",
                "_symmetry_space_group_name_H-M   'P m -3 m'\n_symmetry_Int_Tables_number   221\n")
LIFEPO4_CIF = _cif("LiFePO4", (10.332, 6.010, 4.692),
                   " Li1  Li  0.0     0.0     0.0     1.0\n Fe1  Fe  0.2822  0.25    0.9747  1.0\n"
                   " P1   P   0.0948  0.25    0.4182  1.0\n O1   O   0.0968  0.25    0.7428  1.0\n"
                   " O2   O   0.4571  0.25    0.2060  1.0\n O3   O   0.1656  0.0465  0.2848  1.0\n",
                   "_symmetry_space_group_name_H-M   'P n m a'\n")
ONE_ATOM_CIF = _cif("Po", (3.359, 3.359, 3.359), " Po1  Po  0.0  0.0  0.0  1.0\n",
                    "_symmetry_space_group_name_H-M   'P 1'\nloop_\n _symmetry_equiv_pos_as_xyz\n 'x, y, z'\n")

NACL_POSCAR = """Na4 Cl4 rock salt
1.0
5.6402 0.0 0.0
0.0 5.6402 0.0
0.0 0.0 5.6402
Na Cl
4 4
Direct
0.0 0.0 0.0
0.0 0.5 0.5
0.5 0.0 0.5
0.5 0.5 0.0
0.5 0.5 0.5
0.5 0.0 0.0
0.0 0.5 0.0
0.0 0.0 0.5
"""

ONE_ATOM_POSCAR = """bcc Li, Cartesian, scale factor
3.51
1.0 0.0 0.0
0.0 1.0 0.0
0.0 0.0 1.0
Li
1
Cartesian
0.0 0.0 0.0
"""

TRICLINIC_POSCAR = """LiCoO2-like triclinic cell
1.0
2.82 0.0 0.0
-1.41 2.44 0.0
0.3 0.2 14.05
Li Co O
1 1 2
Direct
0.0 0.0 0.5
0.0 0.0 0.0
0.3333 0.6667 0.2604
0.6667 0.3333 0.7396
"""

CIF_SEEDS = (CSCL_CIF, LIFEPO4_CIF, ONE_ATOM_CIF)  # (F m -3 m NaCl costs 0.4 s a read)
with warnings.catch_warnings():  # pymatgen notes that the space group comes from the H-M symbol
    warnings.simplefilter("ignore")
    POSCAR_SEEDS = (NACL_POSCAR, ONE_ATOM_POSCAR, TRICLINIC_POSCAR,
                    Poscar(Structure.from_str(LIFEPO4_CIF, fmt="cif")).get_str())

# regression inputs (bugs the fuzzing found; each is pinned with @example below)
CUBIC_2 = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]
#: a coordinate 7e24 cells out / a lattice vector 7e24 Å long (a cell of sane volume): the overlap
#: search crashed in pymatgen (NULL pointer, bad index) or ran out of memory
FAR_SITE_POSCAR = NACL_POSCAR.replace("0.5 0.0 0.5\n", "0.5 -7126360073264381627990016 0.5\n", 1)
SKEWED_POSCAR = NACL_POSCAR.replace("5.6402 0.0 0.0", "5.6402 -7126360073264381627990016 0.0", 1)

# file names and the format argument a structure file is read with
FILE_KINDS = {
    "cif": [("x.cif", None), ("x.cif", "cif"), ("x.txt", "cif")],
    "poscar": [("POSCAR", None), ("x.vasp", None), ("x.txt", "poscar"), ("x", "vasp")],
    "any": [("x.cif", None), ("POSCAR", None), ("x.json", None), ("x.json.gz", None), ("x.xyz", None),
            ("x.dat", None), ("x", "extxyz"), ("x.dat", "json"), ("x", "jarvis")],
}

# --------------------------------------------------------------------------- strategies

NASTY_NUMBERS = ["nan", "NaN", "inf", "-inf", "1e308", "1e400", "-1e308", "0", "-0", "1e-300", "1e6", "1e-3",
                 "99999999999999999999999", "1.2.3", "abc", "?", ".", "1e", "--1", "0x10", "1/2", "1(", "\x00"]
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\(\d+\))?(?![\w.])")

nasty_float = st.sampled_from([NAN, INF, -INF, 1e308, -1e308, 1e-300, 0.0, -0.0, 1e6, 1e-3, 1e-12])
any_float = st.one_of(st.floats(-20, 20), nasty_float, st.floats())
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(), st.text(max_size=8))


def _json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4))


json_value = st.recursive(json_leaf, _json_containers, max_leaves=12)

SYMBOLS = ["Li", "Na", "Mg", "O", "Fe", "P", "Mn", "Co", "Cl", "S"]
JUNK_SYMBOLS = ["X", "Xx", "", "li", "LI", "D", "T", "Fe2+", "Og", "Uuo", "e", " Li", "Li\n", 3, None, 1.5, ["Li"]]
element = st.one_of(st.sampled_from(SYMBOLS), st.sampled_from(SYMBOLS), st.sampled_from(JUNK_SYMBOLS))


@st.composite
def mutated_text(draw: st.DrawFn, seeds: tuple[str, ...]) -> str:
    """A seed file with a few lines deleted / duplicated / swapped / replaced, numbers replaced by
    NaN, inf, huge, tiny or garbage tokens, and possibly truncated at a random offset."""
    lines = draw(st.sampled_from(seeds)).splitlines()
    for _ in range(draw(st.integers(0, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["number", "number", "number", "delete", "duplicate", "swap", "replace", "insert"]))
        if op == "number":
            found = list(NUMBER.finditer(lines[i]))
            if found:
                m = found[draw(st.integers(0, len(found) - 1))]
                new = draw(st.one_of(st.sampled_from(NASTY_NUMBERS), any_float.map(repr), st.integers().map(str)))
                lines[i] = lines[i][: m.start()] + new + lines[i][m.end():]
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "replace":
            lines[i] = draw(st.text(max_size=30))
        else:
            lines.insert(i, draw(st.sampled_from(["loop_", "_atom_site_label", "data_x", "#", "Direct", "1",
                                                 "Selective dynamics", "_cell_length_a 0", "'", ";"])))
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 3)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _rows(m: np.ndarray) -> list[list[float]]:
    return [[float(x) for x in row] for row in m]


@st.composite
def lattices(draw: st.DrawFn) -> Any:
    """A ``lattice_mat``: sane, random, near-singular, huge (1e6 Å), tiny (1e-3 Å), with NaN/inf
    entries, or not a 3x3 matrix at all."""
    kind = draw(st.sampled_from(["cubic", "cubic", "random", "near_singular", "huge", "tiny", "nasty",
                                 "skewed", "wrong"]))
    a = draw(st.floats(2.0, 12.0))
    if kind == "cubic":
        return _rows(np.diag([a, a * draw(st.floats(0.8, 1.5)), a * draw(st.floats(0.8, 1.5))]))
    if kind == "random":
        return [[draw(st.floats(-15, 15)) for _ in range(3)] for _ in range(3)]
    if kind == "near_singular":
        eps = draw(st.sampled_from([0.0, 1e-15, 1e-9, 1e-6, 1e-3]))
        u, v = np.array([a, 0.3, 0.1]), np.array([0.2, a, -0.4])
        return _rows(np.array([u, v, u + v * draw(st.floats(-2, 2)) + eps * np.array([0.1, 0.2, a])]))
    if kind == "huge":
        return _rows(np.diag([a, a, a]) * draw(st.sampled_from([1e6, 1e12, 1e150, 1e300])))
    if kind == "tiny":
        return _rows(np.diag([a, a, a]) * draw(st.sampled_from([1e-3, 1e-8, 1e-200, 1e-320])))
    if kind == "nasty":
        m = [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]]
        m[draw(st.integers(0, 2))][draw(st.integers(0, 2))] = draw(nasty_float)
        return m
    if kind == "skewed":  # cell vectors nearly parallel but of sizeable volume
        c = draw(st.one_of(st.floats(1.0, 500.0), st.sampled_from([9e3, 2e4, 1e6])))
        return [[a, 0.0, 0.0], [c, draw(st.sampled_from([1e-3, 0.05, 0.5])), 0.0], [0.0, 0.0, a]]
    return draw(st.sampled_from([[[a, 0, 0], [0, a, 0]], [a, 0, 0, 0, a, 0, 0, 0, a], [[a, 0], [0, a], [0, 0]],
                                 [[[a], [0], [0]], [[0], [a], [0]], [[0], [0], [a]]], "5 0 0 0 5 0 0 0 5",
                                 None, [[a, 0, 0], [0, a, 0], [0, 0, "x"]], [[a, 0, 0], [0, a, 0], [0, 0, None]],
                                 [[a, 0, 0], [0, a, 0], [0, 0]], {"a": a}, 5.0, []]))


@st.composite
def sites(draw: st.DrawFn) -> tuple[Any, Any]:
    """(coords, elements): random site lists, empty ones, mismatched lengths, unknown elements,
    overlapping atoms, NaN/inf coordinates, wrong shapes."""
    n = draw(st.integers(0, 8))
    coords = [[draw(st.floats(-1.5, 1.5)) for _ in range(3)] for _ in range(n)]
    elements: list[Any] = [draw(st.sampled_from(SYMBOLS)) for _ in range(n)]
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["overlap", "nasty", "far", "mismatch", "junk_element"]))
        if kind == "overlap" and coords:
            i = draw(st.integers(0, len(coords) - 1))
            coords.append([x + draw(st.sampled_from([0.0, 1.0, 1e-9, 0.01])) for x in coords[i]])
            elements.append(draw(st.sampled_from(SYMBOLS)))
        elif kind in ("nasty", "far") and coords:
            value = draw(nasty_float) if kind == "nasty" else draw(st.sampled_from([1e3, -1e4, 1e5, 1e7, 7e24]))
            coords[draw(st.integers(0, len(coords) - 1))][draw(st.integers(0, 2))] = value
        elif kind == "mismatch":
            if elements and draw(st.booleans()):
                elements.pop()
            else:
                elements.append(draw(st.sampled_from(SYMBOLS)))
        elif kind == "junk_element" and elements:
            elements[draw(st.integers(0, len(elements) - 1))] = draw(st.sampled_from(JUNK_SYMBOLS))
    wrong = draw(st.sampled_from(["none"] * 6 + ["coords", "elements"]))
    if wrong == "coords":
        return draw(st.sampled_from([[x[:2] for x in coords], [x + [0.0] for x in coords],
                                     [c for x in coords for c in x], [[x] for x in coords], "0 0 0", None, 7,
                                     [["a", "b", "c"]] * n, [[0.1, 0.2, [0.3]]] * n])), elements
    if wrong == "elements":
        return coords, draw(st.sampled_from(["LiO", "".join(SYMBOLS), 5, None, {"Li": 1}, tuple(elements)]))
    return coords, elements


@st.composite
def jarvis_dicts(draw: st.DrawFn) -> dict:
    """A JARVIS ``Atoms`` dict with a random lattice and site list (and the odd junk key)."""
    coords, elements = draw(sites())
    d: dict[str, Any] = {"lattice_mat": draw(lattices()), "coords": coords, "elements": elements}
    cart = draw(st.sampled_from(["absent", False, True, True, "yes", 1, None]))
    if cart != "absent":
        d["cartesian"] = cart
    if draw(st.integers(0, 9)) == 0:
        d.pop(draw(st.sampled_from(["lattice_mat", "coords", "elements"])))
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.sampled_from(["abc", "angles", "props"]))] = draw(json_value)
    return d


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` (gzipped for ``*.gz``)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def read_case(path: Path, fmt: str | None) -> None:
    """One structure-file case: what is read is a Structure, physical whenever hopnet's validation
    accepts it; the validating entry point returns only physical structures."""
    s = attempt("structures", read_structure, path, fmt)
    if s is not None:
        assert isinstance(s, Structure)
        if passes(validate_structure, s):
            assert_physical(s)
    if fmt is None:
        v = bounded(to_structure, path)
        if v is not None:
            assert_physical(v)


# --------------------------------------------------------------------------- structures


def test_seed_files_are_valid(work: Path) -> None:
    """The mutations below start from files that read and validate."""
    for i, text in enumerate(CIF_SEEDS):
        assert_physical(to_structure(write(work / f"seed{i}.cif", text)))
    for i, text in enumerate(POSCAR_SEEDS):
        assert_physical(to_structure(write(work / f"POSCAR_seed{i}", text)))


@fuzz_settings(500)
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300)), kind=st.sampled_from(FILE_KINDS["any"]))
def test_random_bytes_and_text(work: Path, data: bytes | str, kind: tuple[str, str | None]) -> None:
    name, fmt = kind
    read_case(write(work / name, data), fmt)


@fuzz_settings(600)
@given(text=mutated_text(CIF_SEEDS), kind=st.sampled_from(FILE_KINDS["cif"]))
def test_mutated_cif(work: Path, text: str, kind: tuple[str, str | None]) -> None:
    name, fmt = kind
    read_case(write(work / name, text), fmt)


@fuzz_settings(600)
@given(text=mutated_text(POSCAR_SEEDS), kind=st.sampled_from(FILE_KINDS["poscar"]))
@example(text=FAR_SITE_POSCAR, kind=("x", "vasp"))
@example(text=SKEWED_POSCAR, kind=("x", "vasp"))
def test_mutated_poscar(work: Path, text: str, kind: tuple[str, str | None]) -> None:
    name, fmt = kind
    read_case(write(work / name, text), fmt)


@fuzz_settings(1000)
@given(d=jarvis_dicts())
@example(d={"lattice_mat": CUBIC_2, "coords": [], "elements": 5})  # TypeError from list(5)
@example(d={"lattice_mat": [[1, 0, 0], [2, 0, 0], [0, 0, 1]], "coords": [[0, 0, 0]], "elements": ["Li"],
            "cartesian": True})  # LinAlgError: Cartesian -> fractional in a degenerate cell
@example(d={"lattice_mat": [[1e4, 0, 0], [0, 1e4, 0], [0, 0, 1e-8]], "coords": [[0, 0, 0]], "elements": ["Li"]})
@example(d={"lattice_mat": [[5, 0, 0], [0, 5, 0], [0, 0, 5]], "coords": [[0, 0, 0], [0.5, 0.5, 1e5]],
            "elements": ["Na", "Cl"]})  # the overlap search needed ~3 GB
def test_jarvis_dicts(d: dict) -> None:
    s = attempt("structures", from_jarvis, d)
    if s is not None:
        assert len(s) == len(d["elements"])
    v = bounded(to_structure, d)
    if v is not None:
        assert_physical(v)


@fuzz_settings(300)
@given(obj=st.one_of(json_value, jarvis_dicts(),
                     st.builds(lambda d, a: {"atoms": d, "x": a}, jarvis_dicts(), json_value)),
       name=st.sampled_from(["x.json", "x.json.gz"]))
def test_json_files(work: Path, obj: Any, name: str) -> None:
    path = write(work / name, json.dumps(obj))
    read_case(path, None)


@fuzz_settings(300)
@given(lattice=lattices(), mutate=st.sampled_from(["none", "species", "coords", "drop", "lattice_key", "sites_type"]),
       value=json_value)
def test_pymatgen_dicts(lattice: Any, mutate: str, value: Any) -> None:
    """``Structure.as_dict()`` dicts with random lattices and mutated sites."""
    d = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    d["lattice"]["matrix"] = lattice
    if mutate == "species":
        d["sites"][0]["species"] = value
    elif mutate == "coords":
        d["sites"][1]["abc"] = value
    elif mutate == "drop":
        d["sites"] = []
    elif mutate == "lattice_key":
        d["lattice"] = value
    elif mutate == "sites_type":
        d["sites"] = value
    s = attempt("structures", to_structure, d)
    if s is not None:
        assert_physical(s)


@fuzz_settings(300)
@given(cell=lattices(), site_list=sites(), pbc=st.sampled_from([True, False, (True, True, False)]))
@example(cell=[[2.0, 0.3, 0.1], [0.2, 2.0, -0.4], [2.0, 0.3, 0.1]], site_list=([], []),
         pbc=True)  # LinAlgError: ASE takes a cell of 3 non-zero but dependent vectors as 3D
def test_ase_atoms(cell: Any, site_list: tuple[Any, Any], pbc: Any) -> None:
    """ASE ``Atoms`` over random cells (those ASE itself accepts)."""
    coords, elements = site_list
    try:
        atoms = Atoms(symbols=elements, positions=coords, cell=cell, pbc=pbc)
    except Exception:  # noqa: BLE001 -- ASE refused to build it: nothing for hopnet to read
        reject()
    s = attempt("structures", to_structure, atoms)
    if s is not None:
        assert_physical(s)


# --------------------------------------------------------------------------- paths

_ROCK_SALT = Structure.from_str(NACL_POSCAR, fmt="poscar")
GOOD_POINTS = ([0.25, 0.25, 0.25], [0.75, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.75, 0.25])
BAD_POINTS = ([NAN, 0, 0], [0, INF, 0], [0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [[0.1, 0.2, 0.3]], "0 0 0", "abc", None,
              {"x": 0}, [0.1, "a", 0.3], [0.1, None, 0.3], [], [1e308, 1e308, 1e308], np.array([0.1, 0.2, 0.3]),
              np.zeros((1, 3)), [True, False, True], [1 + 2j, 0, 0])
point = st.one_of(st.sampled_from(GOOD_POINTS), st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
                  st.lists(any_float, min_size=3, max_size=3), st.sampled_from(BAD_POINTS))
ion = st.one_of(st.sampled_from(["Li", "Li", "Na", "Mg", "Cl"]), st.sampled_from(JUNK_SYMBOLS))
n_images = st.one_of(st.integers(-2, 12), st.sampled_from([5, 5, 2, 5.0, 2.5, "5", None, True, np.int64(7), 10**6]))
convention = st.sampled_from(["fractional", "cartesian", "as_given", "nope", None])


@st.composite
def hosts(draw: st.DrawFn) -> Any:
    """A host: rock salt (scaled), a JARVIS dict of it over a random lattice, or a random dict."""
    kind = draw(st.sampled_from(["rock_salt", "lattice", "lattice", "random", "structure_obj"]))
    base = rock_salt()
    if kind == "rock_salt":
        return base.copy() if draw(st.booleans()) else to_jarvis(base)
    if kind == "lattice":
        d = to_jarvis(base)
        d["lattice_mat"] = draw(lattices())
        return d
    if kind == "random":
        return draw(jarvis_dicts())
    return draw(st.sampled_from([None, "no/such/file.cif", 42, [1, 2], {"a": 1}]))


def path_case(build: Callable[..., MigrationPath], *args: Any, validated: bool, **kwargs: Any) -> None:
    """One path case: a returned path is sane, and physical when validated (by ``build`` or after)."""
    p = attempt("paths", build, *args, **kwargs)
    if p is not None:
        assert_sane_path(p, validated)
        if not validated and passes(p.validate):
            assert_sane_path(p, True)


def rock_salt_dict(lattice: list) -> dict:
    """The rock-salt host as a JARVIS dict over another lattice."""
    return {**to_jarvis(_ROCK_SALT), "lattice_mat": lattice}


@fuzz_settings(600)
@given(host=hosts(), ion=ion, a=point, b=point, n=n_images, conv=convention, same=st.booleans())
@example(host=rock_salt_dict(np.diag([2e300] * 3).tolist()), ion="Li", a=GOOD_POINTS[0], b=GOOD_POINTS[1], n=5,
         conv="fractional", same=False)  # accepted with an infinite hop length
@example(host=rock_salt_dict([[NAN, 0, 0], [0, 5, 0], [0, 0, 5]]), ion="Li", a=GOOD_POINTS[0], b=GOOD_POINTS[1], n=5,
         conv="fractional", same=False)  # accepted over a NaN lattice
@example(host=_ROCK_SALT, ion="Li", a=GOOD_POINTS[0], b=GOOD_POINTS[1], n=5, conv=np.array([0.1, 0.2, 0.3]),
         same=False)  # ValueError: truth value of an array
def test_migration_path_constructor(host: Any, ion: Any, a: Any, b: Any, n: Any, conv: Any, same: bool) -> None:
    path_case(MigrationPath, host, ion, a, a if same else b, n, conv, validated=False)


@fuzz_settings(600)
@given(host=hosts(), ion=ion, a=point, b=point, n=n_images, conv=convention, validate=st.booleans(),
       tol=st.sampled_from([0.3, 0.0, -1.0, NAN, 100.0]))
@example(host=rock_salt_dict([[2.0, 0.0, 0.0], [1e308, 2.0, 0.0], [0.0, 0.0, 2.0]]), ion="Li", a=GOOD_POINTS[0],
         b=GOOD_POINTS[1], n=5, conv="fractional", validate=False, tol=0.3)  # OverflowError in pymatgen's LLL
@example(host=rock_salt_dict([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ion="Li", a=GOOD_POINTS[0], b=GOOD_POINTS[1], n=5,
         conv="fractional", validate=False, tol=0.3)  # LinAlgError in pymatgen's LLL
def test_from_fractional(host: Any, ion: Any, a: Any, b: Any, n: Any, conv: Any, validate: bool, tol: float) -> None:
    path_case(MigrationPath.from_fractional, host, ion, a, b, n, conv, site_tolerance=tol, validate=validate,
              validated=validate)


index = st.one_of(st.integers(-10, 12), st.sampled_from([0, 1, 4, 4, True, 1.0, "1", None, np.int64(2), 10**30]))


@fuzz_settings(400)
@given(host=hosts(), ion=ion, i=index, j=index, n=n_images, conv=convention, validate=st.booleans())
@example(host=_ROCK_SALT, ion="Li\n", i=0, j=1, n=5, conv="fractional", validate=True)  # message of two lines
def test_from_sites(host: Any, ion: Any, i: Any, j: Any, n: Any, conv: Any, validate: bool) -> None:
    path_case(MigrationPath.from_sites, host, ion, i, j, n, conv, validate=validate, validated=validate)


def rock_salt(a: float = 5.6402) -> Structure:
    """Na4Cl4 rock salt of edge ``a`` Å (a new copy each call)."""
    s = _ROCK_SALT.copy()
    s.scale_lattice(a**3)
    return s


def valid_band(a: float = 5.64) -> dict:
    """A Li hop between two tetrahedral sites of rock salt, as a data-set band dict."""
    return to_jarvis(MigrationPath(rock_salt(a), "Li", GOOD_POINTS[0], GOOD_POINTS[1]).band())


@st.composite
def bands(draw: st.DrawFn) -> dict:
    """A valid band mutated: images of several elements, wrong atom counts, an image off the line,
    NaN coordinates, a random lattice, junk keys."""
    d = valid_band(draw(st.floats(3.0, 9.0)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["image_element", "drop", "add", "off_line", "nasty", "lattice", "swap",
                                     "cartesian"]))
        n = len(d["coords"])
        if kind == "image_element" and n:
            d["elements"][draw(st.integers(0, min(4, n - 1)))] = draw(element)
        elif kind == "drop" and n:
            k = draw(st.integers(1, min(n, 10)))
            d["coords"], d["elements"] = d["coords"][:-k], d["elements"][:-k]
        elif kind == "add":
            d["coords"].append([draw(st.floats(0, 1)) for _ in range(3)])
            d["elements"].append(draw(element))
        elif kind == "off_line" and n:
            d["coords"][draw(st.integers(0, min(4, n - 1)))][draw(st.integers(0, 2))] += draw(st.floats(-0.6, 0.6))
        elif kind == "nasty" and n:
            d["coords"][draw(st.integers(0, n - 1))][draw(st.integers(0, 2))] = draw(nasty_float)
        elif kind == "lattice":
            d["lattice_mat"] = draw(lattices())
        elif kind == "swap" and n > 5:
            i, j = draw(st.integers(0, 4)), draw(st.integers(5, n - 1))
            d["elements"][i], d["elements"][j] = d["elements"][j], d["elements"][i]
        elif kind == "cartesian":
            d["cartesian"] = True
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.sampled_from(["lattice_mat", "coords", "elements"]))] = draw(json_value)
    return d


@fuzz_settings(800)
@given(band=bands(), n=n_images, validate=st.booleans(), tol=st.sampled_from([1e-3, 0.0, 1.0, NAN]),
       wrap=st.sampled_from(["atoms", "entry", "plain"]),
       name=st.one_of(st.sampled_from(["fuzz_1", "a\nb", "", "\t"]), st.text(max_size=8)))
@example(band=valid_band(), n=None, validate=True, tol=1e-3, wrap="atoms", name="fuzz_1")  # TypeError from int(None)
@example(band={"lattice_mat": CUBIC_2, "coords": [[0, 0, 0]], "elements": ["Li"]}, n=5, validate=False, tol=1e-3,
         wrap="entry", name="a\nb")  # message of two lines
def test_from_band_and_as_path(band: dict, n: Any, validate: bool, tol: float, wrap: str, name: str) -> None:
    path_case(MigrationPath.from_band, band, n, validate=validate, tol=tol, validated=validate)
    item = {"atoms": band, "sys_name": name} if wrap == "entry" else band
    path_case(as_path, item, n_images=5 if wrap == "plain" else n, validated=False)


PATH_DICT = json.dumps(MigrationPath.from_band(valid_band()).to_dict())


@fuzz_settings(300)
@given(key=st.sampled_from(["host", "ion", "initial_frac", "final_frac", "n_images", "image_convention", "format",
                            "version", "drop"]),
       value=st.one_of(json_value, st.lists(any_float, max_size=4), jarvis_dicts()),
       drop=st.sampled_from(["host", "ion", "initial_frac", "final_frac"]))
def test_path_from_dict(key: str, value: Any, drop: str) -> None:
    """``to_dict`` output with one key dropped or set to another JSON value (the documented input
    is JSON, so the dict goes through ``json`` first)."""
    d = json.loads(PATH_DICT)
    if key == "drop":
        del d[drop]
    else:
        d[key] = value
    path_case(MigrationPath.from_dict, json.loads(json.dumps(d)), validated=True)


@fuzz_settings(300)
@given(x=st.one_of(point, json_value))
def test_as_frac3(x: Any) -> None:
    a = attempt("paths", as_frac3, x, "point")
    if a is not None:
        assert a.shape == (3,) and a.dtype == float and np.isfinite(a).all()


# --------------------------------------------------------------------------- data sets

def band_record(i: int) -> dict:
    """A synthetic data-set entry (band format): a Li hop in rock salt of edge 5.5 + 0.01 i Å."""
    return {"sys_name": f"LiNaCl_{i}", "class": ["ROCKSALT", "SPINEL"][i % 2], "formula": "LiNa4Cl4",
            "target": 0.2 + 0.05 * i, "jid": f"JVASP-{i}", "atoms": valid_band(5.5 + 0.01 * i)}


def property_record(i: int) -> dict:
    """A synthetic property entry: CsCl of edge 4.1 + 0.01 i Å."""
    a = 4.1 + 0.01 * i
    return {"jid": f"JVASP-{i}", "target": -1.0 + 0.1 * i,
            "atoms": {"lattice_mat": [[a, 0, 0], [0, a, 0], [0, 0, a]], "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
                      "elements": ["Cs", "Cl"], "cartesian": False}}


BAND_RECORDS = json.dumps([band_record(i) for i in range(12)])
PROPERTY_RECORDS = json.dumps([property_record(i) for i in range(12)])
NASTY_TARGETS = [NAN, INF, -INF, "0.5", "", None, True, [0.5], {"v": 0.5}, 10**400, -(10**400), 1e308, 0]
ENTRY_KEYS = ["sys_name", "target", "atoms", "class", "jid"]
ATOMS_KEYS = ["lattice_mat", "coords", "elements", "cartesian"]


@st.composite
def dataset_records(draw: st.DrawFn) -> tuple[str, list]:
    """(format, records): a small synthetic set with a few entries mutated."""
    fmt = draw(st.sampled_from(["band", "band", "property"]))
    base = BAND_RECORDS if fmt == "band" else PROPERTY_RECORDS
    records: list[Any] = json.loads(base)[: draw(st.integers(1, 12))]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(records) - 1))
        rec = records[i]
        kind = draw(st.sampled_from(["target", "target", "drop_key", "set_key", "atoms_key", "atoms_drop",
                                     "elements", "duplicate", "not_dict", "lattice", "sys_name"]))
        if not isinstance(rec, dict):
            continue
        if kind == "target":
            rec["target"] = draw(st.one_of(st.sampled_from(NASTY_TARGETS), json_value))
        elif kind == "drop_key":
            rec.pop(draw(st.sampled_from(ENTRY_KEYS)), None)
        elif kind == "set_key":
            rec[draw(st.sampled_from(ENTRY_KEYS))] = draw(json_value)
        elif kind == "atoms_key" and isinstance(rec.get("atoms"), dict):
            rec["atoms"][draw(st.sampled_from(ATOMS_KEYS))] = draw(json_value)
        elif kind == "atoms_drop" and isinstance(rec.get("atoms"), dict):
            rec["atoms"].pop(draw(st.sampled_from(ATOMS_KEYS)), None)
        elif kind == "elements" and isinstance(rec.get("atoms"), dict) and rec["atoms"].get("elements"):
            el = rec["atoms"]["elements"]
            if isinstance(el, list):
                el[draw(st.integers(0, len(el) - 1))] = draw(element)
        elif kind == "duplicate":
            records.append(json.loads(json.dumps(rec)))
        elif kind == "not_dict":
            records[i] = draw(json_value)
        elif kind == "lattice" and isinstance(rec.get("atoms"), dict):
            rec["atoms"]["lattice_mat"] = draw(lattices())
        elif kind == "sys_name":
            rec["sys_name"] = draw(st.one_of(st.text(max_size=12), st.sampled_from(["", "LiNaCl_0", " ", "a\nb"])))
    return fmt, records


@st.composite
def dataset_files(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(name, file bytes, format of the records): mutated records, or a broken file."""
    fmt, records = draw(dataset_records())
    text = json.dumps(records).encode()
    kind = draw(st.sampled_from(["ok", "ok", "ok", "truncate", "wrong_top", "random", "gz_truncate", "gz_flip",
                                 "empty", "nested", "big_number"]))
    name = draw(st.sampled_from(["set.json", "set.json.gz"]))
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif kind == "wrong_top":
        text = json.dumps(draw(st.one_of(json_leaf, st.dictionaries(st.text(max_size=4), json_value, max_size=3),
                                         st.just({"entries": records})))).encode()
    elif kind == "random":
        text = draw(st.binary(max_size=200))
    elif kind == "empty":
        text = draw(st.sampled_from([b"", b"[]", b"   ", b"null"]))
    elif kind == "nested":
        text = b"[" * draw(st.sampled_from([10, 999, 5000])) + b"]" * draw(st.sampled_from([0, 10]))
    elif kind == "big_number":  # more digits than Python's int conversion takes, or beyond float range
        big = draw(st.sampled_from([b"9" * 5000, b"9" * 400, b"-1e999"]))
        text = text.replace(b'"target": ', b'"target": ' + big + b', "x": ', 1)
    raw = gzip.compress(text, mtime=0) if name.endswith(".gz") else text
    if kind == "gz_truncate":
        name, raw = "set.json.gz", gzip.compress(text, mtime=0)
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "gz_flip":
        name, raw = "set.json.gz", bytearray(gzip.compress(text, mtime=0))
        k = draw(st.integers(0, len(raw) - 1))
        raw[k] ^= draw(st.integers(1, 255))
        raw = bytes(raw)
    return name, raw, fmt


def band_set(edit: Callable[[list], object]) -> tuple[str, bytes, str]:
    """The synthetic band set with ``edit`` applied to its records, as a dataset_files() value."""
    records = json.loads(BAND_RECORDS)
    edit(records)
    return "set.json", json.dumps(records).encode(), "band"


def assert_sane_dataset(ds: Any, fmt: str, split: str | None) -> None:
    """A loaded set: finite numeric targets, well-formed atoms dicts, unique ids. (A split of a
    tiny set may be empty: the published split keeps classes of < 5 paths in training.)"""
    assert isinstance(ds, Dataset) and (len(ds) > 0 or split in ("train", "test"))
    assert len(set(ds.ids)) == len(ds)
    for e in ds:
        assert isinstance(e.target, float) and math.isfinite(e.target)
        lat = np.asarray(e.atoms["lattice_mat"], dtype=float)
        xyz = np.asarray(e.atoms["coords"], dtype=float)
        assert lat.shape == (3, 3) and np.isfinite(lat).all()
        assert xyz.ndim == 2 and xyz.shape[1] == 3 and len(xyz) > 0 and np.isfinite(xyz).all()
        assert len(e.atoms["elements"]) == len(xyz)
        if fmt == "band" and "ion" in e.meta:
            assert e.meta["ion"] == e.atoms["elements"][0]
            assert isinstance(e.meta["compound"], str)


@fuzz_settings(1000)
@given(f=dataset_files(), how=st.sampled_from(["path", "name+path"]),
       split=st.sampled_from([None, None, "all", "train", "test", "bogus"]), seed=st.integers(0, 3))
@example(f=("set.json", b"[" * 5000, "band"), how="path", split=None, seed=0)  # RecursionError
@example(f=("set.json", b"[" + b"9" * 5000 + b"]", "band"), how="path", split=None, seed=0)  # ValueError (int digits)
@example(f=band_set(lambda r: r[3].update(target=10**400)), how="path", split=None, seed=0)  # OverflowError
@example(f=band_set(lambda r: r[0]["atoms"]["elements"].__setitem__(7, "li")), how="path", split=None,
         seed=0)  # ValueError from pymatgen's Composition
@example(f=band_set(lambda r: r[1].update(sys_name="a\nb", target=None)), how="path", split=None,
         seed=0)  # message of two lines
def test_dataset_files(work: Path, f: tuple[str, bytes, str], how: str, split: str | None, seed: int) -> None:
    name, raw, fmt = f
    path = work / name
    path.write_bytes(raw)
    if how == "path":
        ds = attempt("datasets", hd.load, str(path), split, seed=seed, errors=DataError)
    else:  # a registered name read from an explicit file: its format is the registry's
        reg = "migration-barriers" if fmt == "band" else "fe"
        ds = attempt("datasets", hd.load, reg, split, path=path, seed=seed, errors=DataError)
    if ds is not None:
        assert_sane_dataset(ds, fmt, split)
