"""``hopnet datasets fetch`` and the recipe path of downloads: tiny recipes served by a local HTTP
mirror laid out like the upstream repositories (``<base>/<owner>/<repo>/main/<path>``)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import random
import re
import threading
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

import hopnet.datasets as hd
from hopnet.cli import main
from hopnet.datasets import download, registry
from hopnet.datasets.download import DownloadFailed, fetch_file
from hopnet.datasets.recipes import (
    META_COLUMNS,
    build_merge_by_jid,
    build_metadata_csv,
    fetch_dataset,
)
from hopnet.datasets.registry import TL_REPO, DatasetInfo, Recipe, Source
from hopnet.infra.errors import DataError

REPO = "someone/tiny-data"


# --- a mirror: a local HTTP server with Range support, request log and dropped connections ----------

class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        f = srv.root / self.path.lstrip("/")
        if not f.is_file():
            self.send_error(404, "File not found")
            return
        data, start = f.read_bytes(), 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.drop.pop(self.path, None)  # drop the connection after `cut` bytes, once
        self.wfile.write(body if cut is None else body[:cut])


class Mirror:
    """A served folder: ``root`` on disk, ``url`` to reach it, ``requests`` (path, Range header)."""

    def __init__(self, root: Path) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.root, self.server.requests, self.server.drop = root, [], {}
        self.server.honour_range = True
        self.root, self.url = root, f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.server.requests

    def put(self, path: str, data: bytes, repo: str = REPO) -> Source:
        """Serve ``data`` as ``path`` of ``repo``; the Source pinned to its sha256."""
        f = self.root / repo / "main" / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        return Source(repo, path, hashlib.sha256(data).hexdigest())

    def file(self, src: Source) -> Path:
        return self.root / src.repo / "main" / src.path


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "RETRY_PAUSE_S", 0.0)
    monkeypatch.delenv("HOPNET_DATA_URL", raising=False)
    m = Mirror(tmp_path / "www")
    yield m
    m.server.shutdown()
    m.server.server_close()


# --- tiny recipes -----------------------------------------------------------------------------------

def prop(jid, target: float) -> dict:
    """A property entry as published: extra keys, ``atoms`` first."""
    atoms = {"lattice_mat": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
             "elements": ["Na", "Cl"], "cartesian": False}
    return {"atoms": atoms, "formula": "NaCl", "jid": jid, "target": target}


def tiny_property_set(m: Mirror, name: str = "tiny") -> tuple[DatasetInfo, bytes]:
    """Three overlapping source files of a 6-entry set; the record and the expected merged bytes."""
    parts = {"a.json": [prop(10, 0.1), prop(2, 0.2)],
             "b.json": [prop(2, 0.2), prop(1, -0.5), prop(100, 1.0)],
             "c.json": [prop(3, 0.3), prop(10, 0.1), prop(20, -1.0)]}
    sources = tuple(m.put(f"DATA/{name}/{f}", json.dumps(v, indent=1).encode() + b"\n") for f, v in parts.items())
    by_jid = {e["jid"]: e for v in parts.values() for e in v}
    order = [1, 10, 100, 2, 20, 3]  # sorted by str(jid)
    merged = [{"jid": j, "target": by_jid[j]["target"], "atoms": by_jid[j]["atoms"]} for j in order]
    expected = json.dumps(merged).encode()
    info = DatasetInfo(name=name, description="tiny test set", task="property-regression",
                       relpath=f"pretrain/{name}.json.gz", units="none",
                       sha256=hashlib.sha256(expected).hexdigest(), n_entries=6,
                       sources=sources, build="merge-by-jid")
    return info, expected


def stray_files(folder: Path) -> list[str]:
    """Files under ``folder`` outside the staging folder, and any .part anywhere."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and (".fetch" not in p.parts or p.suffix == ".part"))


# --- the recipe path end to end ---------------------------------------------------------------------

def test_merge_recipe_end_to_end(mirror, tmp_path, capsys):
    info, expected = tiny_property_set(mirror)
    dest = tmp_path / "data"
    report = fetch_dataset(info, dest, base_url=mirror.url)
    out = dest / "pretrain" / "tiny.json"
    assert report.written == [out] and out.read_bytes() == expected
    text = out.read_text()
    assert text.startswith('[{"jid": 1, "target": -0.5, "atoms": {') and not text.endswith("\n")
    assert sorted(p.name for p in dest.rglob("*")) == ["pretrain", "tiny.json"]  # staging removed
    err = capsys.readouterr().err
    assert "[1/3] a.json" in err and "[3/3] c.json" in err
    line = report.line()
    assert line.startswith("tiny: fetched 3 files (") and f"from {mirror.url}/{REPO}/main" in line
    assert str(out) in line and "sha256 verified" in line
    # the data-dir layout is tried first (404 here), then the sources
    assert mirror.requests[0] == ("/pretrain/tiny.json.gz", None)
    assert [p for p, _ in mirror.requests[1:]] == [f"/{REPO}/main/{s.path}" for s in info.sources]
    # a second fetch finds the verified copy and downloads nothing
    n = len(mirror.requests)
    again = fetch_dataset(info, dest, base_url=mirror.url, progress=False)
    assert again.present == [out] and again.written == [] and len(mirror.requests) == n


def test_load_downloads_through_the_recipe(mirror, tmp_path, monkeypatch):
    info, _ = tiny_property_set(mirror)
    monkeypatch.setitem(registry.REGISTRY, "tiny", info)
    monkeypatch.delenv("HOPNET_DATA_DIR", raising=False)
    monkeypatch.delenv("HOPNET_OFFLINE", raising=False)
    monkeypatch.setenv("HOPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOPNET_DATA_URL", mirror.url)
    ds = hd.load("tiny")
    assert ds.source == "download" and len(ds) == 6 and ds.sha256 == info.sha256
    assert ds.ids == ["1", "10", "100", "2", "20", "3"]
    assert hd.load("tiny").source == "cache"


def test_corrupted_source_is_refused(mirror, tmp_path):
    info, _ = tiny_property_set(mirror)
    bad = info.sources[1]
    f = mirror.file(bad)
    data = bytearray(f.read_bytes())
    data[40] ^= 1
    f.write_bytes(bytes(data))
    dest = tmp_path / "data"
    with pytest.raises(DataError) as err:
        fetch_dataset(info, dest, base_url=mirror.url, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "b.json" in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg and bad.sha256 in msg
    assert stray_files(dest) == []  # no result, no partial file; verified a.json stays staged
    assert (dest / ".fetch" / "tiny" / "a.json").is_file()


def test_wrong_result_pin_writes_nothing(mirror, tmp_path):
    info, expected = tiny_property_set(mirror)
    info = DatasetInfo(**{**info.__dict__, "sha256": "0" * 64})
    dest = tmp_path / "data"
    with pytest.raises(DataError) as err:
        fetch_dataset(info, dest, base_url=mirror.url, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "pretrain/tiny.json.gz" in msg and "nothing written" in msg
    assert hashlib.sha256(expected).hexdigest() in msg and "0" * 64 in msg
    assert stray_files(dest) == []


def test_missing_source_404(mirror, tmp_path):
    info, _ = tiny_property_set(mirror)
    mirror.file(info.sources[2]).unlink()
    with pytest.raises(DownloadFailed) as err:
        fetch_dataset(info, tmp_path / "data", base_url=mirror.url, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "404" in msg and info.sources[2].url(mirror.url) in msg
    assert stray_files(tmp_path / "data") == []


# --- resuming -----------------------------------------------------------------------------------------

def test_interrupted_download_continues_with_range(mirror, tmp_path):
    src = mirror.put("big.bin", bytes(range(256)) * 40)  # 10240 bytes
    path = f"/{REPO}/main/big.bin"
    dest = tmp_path / "big.bin"
    mirror.server.drop[path] = 3000
    with pytest.raises(DownloadFailed, match="run again to resume") as err:
        fetch_file(src.url(mirror.url), dest, src.sha256, retries=0, progress=False)
    assert "3000 of 10240 bytes" in str(err.value)
    part = tmp_path / "big.bin.part"
    assert part.stat().st_size == 3000 and not dest.exists()
    assert fetch_file(src.url(mirror.url), dest, src.sha256, progress=False) == 10240
    assert mirror.requests[-1] == (path, "bytes=3000-")
    assert dest.read_bytes() == mirror.file(src).read_bytes() and not part.exists()


def test_interruption_resumed_within_one_fetch(mirror, tmp_path):
    info, expected = tiny_property_set(mirror)
    path = f"/{REPO}/main/{info.sources[1].path}"
    mirror.server.drop[path] = 50
    report = fetch_dataset(info, tmp_path / "data", base_url=mirror.url, progress=False)
    assert report.written[0].read_bytes() == expected
    assert [r for p, r in mirror.requests if p == path] == [None, "bytes=50-"]


def test_server_ignoring_range_restarts_the_file(mirror, tmp_path):
    mirror.server.honour_range = False
    src = mirror.put("x.json", b'{"a": 1}' * 100)
    dest = tmp_path / "x.json"
    (tmp_path / "x.json.part").write_bytes(b"garbage that is not a prefix")
    fetch_file(src.url(mirror.url), dest, src.sha256, progress=False)
    assert mirror.requests[-1][1] == "bytes=28-"  # asked to resume, got the whole file (200)
    assert dest.read_bytes() == mirror.file(src).read_bytes()


# --- the migration metadata table ----------------------------------------------------------------------

def _cell(ref: str, v, strings: list[str]) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        strings.append(v)
        return f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>'
    return f'<c r="{ref}"><v>{format(v, ".17g")}</v></c>'  # numbers as Excel stores them


def write_xlsx(sheets: dict[str, list[list]]) -> bytes:
    """A minimal xlsx file: the named sheets, strings shared, numbers as numeric cells."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    strings: list[str] = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        entries, rels = [], []
        for k, (name, rows) in enumerate(sheets.items(), 1):
            body = "".join(
                f'<row r="{i}">' + "".join(_cell(f"{chr(65 + j)}{i}", v, strings) for j, v in enumerate(row))
                + "</row>" for i, row in enumerate(rows, 1))
            zf.writestr(f"xl/worksheets/sheet{k}.xml", f"<worksheet {ns}><sheetData>{body}</sheetData></worksheet>")
            entries.append(f'<sheet name="{escape(name)}" sheetId="{k}" r:id="rId{k}"/>')
            rels.append(f'<Relationship Id="rId{k}" Target="worksheets/sheet{k}.xml" '
                        'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>')
        zf.writestr("xl/workbook.xml", f"<workbook {ns} {rns}><sheets>{''.join(entries)}</sheets></workbook>")
        zf.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/'
                    f'package/2006/relationships">{"".join(rels)}</Relationships>')
        sis = "".join(f'<si><t xml:space="preserve">{escape(s)}</t></si>' for s in strings)
        zf.writestr("xl/sharedStrings.xml", f'<sst {ns} count="{len(strings)}">{sis}</sst>')
    return buf.getvalue()


HEADER = ["CLASS", "COMPOSITION", "XC", "CRYSTAL SYSTEM", "SPACE GROUP", "PATH INFO", "SYS_NAME",
          "Em (eV)", "MACE relaxed (eV)", "MACE unrelaxed (eV)"]


def test_metadata_recipe_converts_the_xlsx(mirror, tmp_path):
    train = mirror.put("DATA/TRAIN.json", json.dumps([{"sys_name": "A_1", "target": 0.5},
                                                      {"sys_name": "B", "target": 1.0}]).encode())
    rows = [HEADER,
            ["OLIVINE", "LiFePO4", "GGA+U", "Orthorhombic", "Pnma ", "PATH 1", "A_1", 0.24, 0.759, None],
            ["SPINEL", "MgMn2O4", "SCAN", "Cubic", "Fd-3m", "1D", "test-only", 0.7, 0.5, 0.6],
            ["LAYERED", "x", "GGA", "Trigonal", "R-3m", "A-B", "B", 2.0, "N/A", 14.604]]
    table = mirror.put("TABLE.xlsx", write_xlsx({"README": [["notes"]], "COMPLETE-TABUATION": rows}))
    table = Source(table.repo, table.path, None)  # as in the registry: the converted table is pinned
    expected = (b"class,composition,xc,crystal_system,space_group,path_info,sys_name,em_ev,mace_relax_ev,"
                b"mace_norelax_ev\nOLIVINE,LiFePO4,GGA+U,Orthorhombic,Pnma ,PATH 1,A_1,0.24,0.759,\n"
                b"LAYERED,x,GGA,Trigonal,R-3m,A-B,B,2.0,,14.604\n")
    recipe = Recipe("migration/metadata_train.csv", hashlib.sha256(expected).hexdigest(), (train, table),
                    "metadata-csv")
    info = DatasetInfo(name="mig", description="tiny bands", task="migration-barrier",
                       relpath="migration/band_train.json.gz", units="eV", sha256=train.sha256,
                       n_entries=2, format="band", sources=(train,), extra_recipes=(recipe,))
    dest = tmp_path / "data"
    report = fetch_dataset(info, dest, base_url=mirror.url, progress=False)
    assert report.written == [dest / "migration" / "band_train.json", dest / "migration" / "metadata_train.csv"]
    assert (dest / "migration" / "metadata_train.csv").read_bytes() == expected
    with pytest.raises(DataError, match="no sheet 'COMPLETE-TABUATION'"):
        build_metadata_csv([b"[]", write_xlsx({"Sheet1": rows})], ["t.json", "TABLE.xlsx"])
    with pytest.raises(DataError, match="has 9 columns"):
        build_metadata_csv([b"[]", write_xlsx({"COMPLETE-TABUATION": [HEADER[:9]]})], ["t.json", "TABLE.xlsx"])


# --- the command line ---------------------------------------------------------------------------------

def test_cli_fetch(mirror, tmp_path, monkeypatch, capsys):
    tiny, _ = tiny_property_set(mirror, "tiny")
    other, _ = tiny_property_set(mirror, "other")
    for name in list(registry.REGISTRY):
        monkeypatch.delitem(registry.REGISTRY, name)
    monkeypatch.setitem(registry.REGISTRY, "tiny", tiny)
    monkeypatch.setitem(registry.REGISTRY, "other", other)
    monkeypatch.delenv("HOPNET_DATA_DIR", raising=False)
    dest = tmp_path / "out"
    assert main(["datasets", "fetch", "tiny", "--mirror", mirror.url, "--to", str(dest)]) == 0
    captured = capsys.readouterr()
    size = r"\(\d+(\.\d)? k?B\)"
    assert re.fullmatch(rf"tiny: fetched 3 files {size} from {re.escape(f'{mirror.url}/{REPO}/main')}; wrote "
                        rf"{re.escape(str(dest))}/pretrain/tiny\.json {size}; sha256 verified\n", captured.out)
    assert "[2/3] b.json" in captured.err
    # all: the present set is reported as such, the other fetched; --json
    assert main(["datasets", "fetch", "all", "--mirror", mirror.url, "--to", str(dest), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    rows = {r["name"]: r for r in json.loads(captured.out)}
    assert rows["tiny"]["present"] == [str(dest / "pretrain" / "tiny.json")] and rows["tiny"]["written"] == []
    assert rows["other"]["written"] == [str(dest / "pretrain" / "other.json")] and captured.err == ""
    # a failing set: one error line, the others still fetched, exit status 2
    mirror.file(other.sources[0]).unlink()
    assert main(["datasets", "fetch", "all", "--mirror", mirror.url, "--to", str(tmp_path / "o2"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("tiny: fetched 3 files")
    assert "hopnet: error: other: download of pretrain/other.json.gz failed" in captured.err
    assert main(["datasets", "fetch", "nope"]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err


def test_cli_fetch_reports_shared_copy(data_dir, capsys):
    if not (data_dir / "pretrain" / "ph.json.gz").is_file():
        pytest.skip("no shared ph set")
    assert main(["datasets", "fetch", "ph", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"ph: present in HOPNET_DATA_DIR: {data_dir}/pretrain/ph.json.gz")


# --- the real registry ----------------------------------------------------------------------------------

def test_real_recipes_are_well_formed():
    counts = {"fe": 26, "bg": 27, "gv": 26, "ph": 26, "dc": 26, "pz": 26, "ebg": 26}
    for info in registry.list_datasets():
        for recipe in info.recipes():
            assert recipe.sources and recipe.build in registry.BUILDS and len(recipe.sha256) == 64
            names = [s.name for s in recipe.sources]
            assert len(set(names)) == len(names), info.name  # staged side by side
            for s in recipe.sources:
                assert s.url().startswith(f"https://raw.githubusercontent.com/{s.repo}/main/")
                assert s.sha256 is None if s.name.endswith(".xlsx") else re.fullmatch("[0-9a-f]{64}", s.sha256)
        if info.name in counts:
            assert info.build == "merge-by-jid" and len(info.sources) == counts[info.name]
            assert all(s.repo == TL_REPO for s in info.sources)
            has_test = any(s.name == f"{info.name}_std_10_test.json" for s in info.sources)
            assert has_test == (info.name not in ("fe", "bg")) == ("test split" in info.description)
        else:
            assert info.build == "copy" and len(info.sources) == 1 and info.sources[0].sha256 == info.sha256
    mig = registry.REGISTRY["migration-barriers"]
    assert mig.extras == ("migration/metadata_train.csv",) and mig.extra_recipes[0].build == "metadata-csv"
    assert [s.name for s in mig.extra_recipes[0].sources] == ["RAW-Em-5-images-TRAIN.json", "TABULATION-GIT-HUB.xlsx"]


def test_source_pins_match_the_origins_doc(data_dir):
    doc = data_dir.parent / "docs" / "data-origins.md"
    if not doc.is_file():
        pytest.skip(f"{doc} not found")
    listed = {path: sha for sha, _n, path in re.findall(r"^([0-9a-f]{64})\s+(\d+)\s+(\S+)$", doc.read_text(), re.MULTILINE)}
    used = {s.path: s.sha256 for info in registry.list_datasets() if info.build == "merge-by-jid"
            for s in info.sources}
    assert used == listed and len(used) == 183


def test_merge_reproduces_the_shared_pin(data_dir):
    """The merge of overlapping, reshuffled pieces of the shared ph set (extra keys, other key
    order) gives back exactly the pinned bytes."""
    f = data_dir / "pretrain" / "ph.json.gz"
    if not f.is_file():
        pytest.skip(f"{f} not found")
    entries = json.loads(gzip.decompress(f.read_bytes()))
    rng = random.Random(0)
    pieces = [rng.sample(entries, 400) for _ in range(5)] + [entries[::2], entries[1::2]]
    blobs = [json.dumps([{"formula": "x", "atoms": e["atoms"], "target": e["target"], "jid": e["jid"]}
                         for e in p], indent=2).encode() for p in pieces]
    merged = build_merge_by_jid(blobs, [f"p{i}.json" for i in range(len(blobs))])
    assert hashlib.sha256(merged).hexdigest() == registry.REGISTRY["ph"].sha256


def xlsx_like_upstream(csv_file: Path) -> bytes:
    """An xlsx holding the rows of a metadata CSV plus rows of test paths, numbers as Excel stores them."""
    lines = csv_file.read_text().splitlines()
    assert lines[0].split(",") == list(META_COLUMNS)
    rows = [HEADER]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        rows.append([c or None for c in cells[:7]] + [float(c) if c else None for c in cells[7:]])
        if i % 10 == 0:  # a test path, left out by the conversion
            rows.append(["X", "Y", "GGA", "Cubic", "Pm-3m", "PATH 1", f"held-out-{i}", 1.5, 1.0, 2.0])
    return write_xlsx({"COMPLETE-TABUATION": rows})


@pytest.fixture
def shared_migration(data_dir) -> tuple[Path, Path]:
    csv_file, band = data_dir / "migration" / "metadata_train.csv", data_dir / "migration" / "band_train.json.gz"
    if not (csv_file.is_file() and band.is_file()):
        pytest.skip("shared migration files not found")
    return csv_file, band


def test_metadata_conversion_reproduces_the_shared_table(shared_migration):
    """The xlsx converts back to the shared CSV byte for byte, i.e. to the pin."""
    csv_file, band = shared_migration
    out = build_metadata_csv([gzip.decompress(band.read_bytes()), xlsx_like_upstream(csv_file)],
                             ["RAW-Em-5-images-TRAIN.json", "TABULATION-GIT-HUB.xlsx"])
    assert out == csv_file.read_bytes()
    assert hashlib.sha256(out).hexdigest() == registry.REGISTRY["migration-barriers"].extra_recipes[0].sha256


def test_real_migration_recipe_from_an_upstream_mirror(shared_migration, mirror, tmp_path, monkeypatch):
    """The registered migration-barriers record, served by a mirror of the upstream repository
    (the published TRAIN file is the shared file decompressed), ends in a data dir like the shared one."""
    csv_file, band = shared_migration
    info = registry.REGISTRY["migration-barriers"]
    train, table = info.extra_recipes[0].sources
    mirror.put(train.path, gzip.decompress(band.read_bytes()), repo=train.repo)
    mirror.put(table.path, xlsx_like_upstream(csv_file), repo=table.repo)
    monkeypatch.delenv("HOPNET_DATA_DIR", raising=False)
    dest = tmp_path / "data"
    assert main(["datasets", "fetch", "migration-barriers", "--mirror", mirror.url, "--to", str(dest), "--quiet"]) == 0
    assert (dest / "migration" / "metadata_train.csv").read_bytes() == csv_file.read_bytes()
    ds = hd.load("migration-barriers", data_dir=dest)
    assert ds.source == "HOPNET_DATA_DIR" and len(ds) == 559 and all("xc" in e.meta for e in ds)
    assert sum(1 for p, _ in mirror.requests if p.endswith("TRAIN.json")) == 1  # staged once, used twice
