"""Issue #7 guarantees: a SIGKILLed training run resumes to the same result, damaged files are
refused or rebuilt (never loaded into a prediction), file writes are atomic, model folders carry
a checked format version and graph-code version, and CPU results are deterministic."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hopnet.cli import main
from hopnet.infra.errors import ModelFileError
from hopnet.infra.integrity import (SEAL_SIZE, CorruptFileError, load_torch_sealed, read_sealed, save_torch_sealed,
                              seal, unseal)
from hopnet.models.folder import load_model
from test_barrier import synthetic_entries
from test_pretrain import write_prop

torch.set_num_threads(1)

# Runs the hopnet CLI with one extra Lightning callback that stands still at a given batch of a
# given epoch, after touching a marker file: the test then SIGKILLs the process there.
STALL_DRIVER = r"""
import sys, time
from pathlib import Path
import lightning as L
from hopnet.cli import main

marker, epoch, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

class Stall(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, b, batch_idx):
        if trainer.current_epoch == epoch and batch_idx == batch:
            marker.write_text(str(trainer.global_step))
            time.sleep(600)

_init = L.Trainer.__init__
def _with_stall(self, *args, callbacks=None, **kwargs):
    _init(self, *args, callbacks=[*(callbacks or []), Stall()], **kwargs)
L.Trainer.__init__ = _with_stall
sys.exit(main(sys.argv[4:]))
"""


def sigkill_mid_epoch(args: list[str], tmp_path: Path, epoch: int = 1, batch: int = 1) -> int:
    """Run ``hopnet ARGS`` in a subprocess, SIGKILL it at ``batch`` of ``epoch`` (0-based);
    returns the optimizer step it was killed at."""
    marker = tmp_path / f"stalled-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", STALL_DRIVER, str(marker), str(epoch), str(batch), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"run ended (rc {proc.returncode}) before the kill point: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("run did not reach the kill point in 240 s")
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return int(marker.read_text())


def _weights(model_dir: Path) -> list[dict]:
    return torch.load(model_dir / "weights.pt", weights_only=True)


def _assert_same_model(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    for sa, sb in zip(wa, wb):
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-7, msg=k)
    ma = json.loads((a / "metadata.json").read_text())["metrics"]
    mb = json.loads((b / "metadata.json").read_text())["metrics"]
    assert _close(ma, mb), (ma, mb)


def _close(a, b) -> bool:
    """Equal JSON values, floats to 1e-6 relative."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return a == b


def _epochs_logged(run: Path, version: int) -> list[int]:
    import csv

    with open(run / "logs" / f"version_{version}" / "metrics.csv") as fh:
        return sorted({int(r["epoch"]) for r in csv.DictReader(fh) if r.get("epoch")})


@pytest.fixture(scope="module")
def band_file(tmp_path_factory) -> Path:
    records = [{"jid": i, "sys_name": e.id, "class": "SYN", "formula": f"x{i % 4}", "target": e.target,
                "atoms": e.atoms} for i, e in enumerate(synthetic_entries(8))]
    path = tmp_path_factory.mktemp("bands") / "bands.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(records, fh)
    return path


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--small", "--epochs", "3", "--batch-size", "2", "--seed", "3",
            "--out", str(out), "--no-progress"]


# ----------------------------------------------------------------------- interrupted training
def test_sigkilled_train_resumes_to_the_uninterrupted_result(tmp_path, band_file):
    out = tmp_path / "killed"
    args = _train_args(band_file, out)
    step = sigkill_mid_epoch(args, tmp_path, epoch=1, batch=1)
    run = out / "runs" / "member-0"
    assert step > 1 and (run / "checkpoints" / "last.ckpt").is_file()
    assert not (out / "model").exists() and not (run / "final.pt").exists()  # nothing half-written
    assert main([*args, "--resume"]) == 0
    assert _epochs_logged(run, 1) == [1, 2]  # only the interrupted epoch was redone
    assert main(_train_args(band_file, tmp_path / "straight")) == 0
    _assert_same_model(out / "model", tmp_path / "straight" / "model")


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("props")
    write_prop(d / "pretrain" / "fe.json.gz", list(range(12)), lambda i: 0.1 * i - 0.5)
    return d


def test_sigkilled_pretrain_resumes_to_the_uninterrupted_result(tmp_path, prop_dir):
    def args(out: Path) -> list[str]:
        return ["pretrain", "--properties", "fe", "--data-dir", str(prop_dir), "--out", str(out), "--small",
                "--epochs", "3", "--batch-size", "3", "--cache-dir", "none", "--no-progress",
                "--val-fraction", "0.25", "--seed", "5"]

    out = tmp_path / "killed"
    sigkill_mid_epoch(args(out), tmp_path, epoch=2, batch=1)
    assert not (out / "model").exists()
    assert main([*args(out), "--resume"]) == 0
    assert _epochs_logged(out / "runs" / "member-0", 1) == [2]
    assert main(args(tmp_path / "straight")) == 0
    _assert_same_model(out / "model", tmp_path / "straight" / "model")


def test_damaged_checkpoint_is_refused_with_one_line(tmp_path, band_file, capsys):
    out = tmp_path / "run"
    args = [*_train_args(band_file, out), "--epochs", "1"]
    assert main(args) == 0
    run = out / "runs" / "member-0"
    (run / "final.pt").unlink()  # as if killed after the checkpoint of the last epoch
    last = run / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*args, "--resume"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.ckpt is corrupt (sha256 mismatch)" in err[0] and "delete it" in err[0]
    last.write_bytes(bytes(data[: len(data) // 3]))  # truncated
    assert main([*args, "--resume"]) != 0
    assert "is truncated" in capsys.readouterr().err


def test_damaged_finished_marker_reruns_from_the_checkpoint(tmp_path, band_file, caplog):
    out = tmp_path / "run"
    args = [*_train_args(band_file, out), "--epochs", "2"]
    assert main(args) == 0
    first = _weights(out / "model")
    final = out / "runs" / "member-0" / "final.pt"
    final.write_bytes(final.read_bytes()[:-5])
    assert main([*args, "--resume"]) == 0
    assert "continuing the run from its last checkpoint" in caplog.text
    second = _weights(out / "model")
    assert all(torch.equal(first[0][k], second[0][k]) for k in first[0])


# ----------------------------------------------------------------------------- sealed files
def test_seal_detects_every_truncation_and_any_flipped_byte(tmp_path):
    payload = bytes(range(256)) * 3
    data = seal(payload)
    assert len(data) == len(payload) + SEAL_SIZE and unseal(data, "x") == payload
    for cut in range(len(data)):
        with pytest.raises(CorruptFileError):
            unseal(data[:cut], "x")
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(data), 50):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(CorruptFileError) as exc:
            unseal(bytes(bad), "thing")
        assert str(exc.value).startswith("thing ") and "\n" not in str(exc.value)
    # a sealed torch file still opens with plain torch.load (the trailer is ignored)
    save_torch_sealed({"a": torch.arange(5)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["a"], torch.arange(5))
    assert torch.equal(load_torch_sealed(tmp_path / "t.pt")["a"], torch.arange(5))
    with pytest.raises(FileNotFoundError):
        read_sealed(tmp_path / "absent.pt")


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from hopnet.infra import provenance

    target = tmp_path / "result.json"
    provenance.atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(provenance.os, "replace", boom)
    with pytest.raises(OSError):
        provenance.atomic_write_text(target, "new content")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_temporaries_of_killed_writers_are_cleaned_up(tmp_path):
    from hopnet.models.folder import write_model_dir
    from hopnet.infra.provenance import atomic_write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        target = tmp_path / "report.json"
        stale = [tmp_path / f".report.json.{dead.pid}.tmp", tmp_path / f".report.json.{dead.pid}.3.tmp"]
        live = tmp_path / f".report.json.{alive.pid}.tmp"  # a concurrent writer: kept
        other = tmp_path / ".report.json.notes"  # not a temporary of ours: kept
        for f in (*stale, live, other):
            f.write_text("partial")
        atomic_write_text(target, "{}")
        assert target.read_text() == "{}" and live.exists() and other.exists()
        assert not any(f.exists() for f in stale)
        half = tmp_path / f".model.{dead.pid}.abc123"  # a model folder whose writer was killed
        half.mkdir()
        (half / "weights.pt").write_bytes(b"half")
        write_model_dir(tmp_path / "model", {"kind": "classical"}, {}, lambda d: (d / "x.bin").write_bytes(b"1"))
        assert not half.exists() and (tmp_path / "model" / "x.bin").is_file()
    finally:
        alive.kill()
        alive.wait()


def test_results_file_survives_a_write_cut_short(tmp_path, caplog):
    from hopnet.infra.errors import DataError
    from hopnet.infra.provenance import append_jsonl, read_jsonl

    f = tmp_path / "rows.jsonl"
    append_jsonl(f, {"key": "a", "mae": 0.1})
    append_jsonl(f, {"key": "b", "mae": np.float32(0.25)})
    with open(f, "a") as fh:  # a run killed in the middle of its third line
        fh.write('{"key": "c", "ma')
    assert [r["key"] for r in read_jsonl(f)] == ["a", "b"] and "truncated last line" in caplog.text
    append_jsonl(f, {"key": "c", "mae": 0.3})  # the fragment is cut off before appending
    assert [r["key"] for r in read_jsonl(f)] == ["a", "b", "c"]
    assert f.read_text().count("\n") == 3
    f.write_text('{"key": "a"}\nnot json\n{"key": "c"}\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_jsonl(f)


def test_damaged_graph_cache_file_is_rebuilt_not_loaded(tmp_path, caplog):
    from hopnet.graphs import GraphCache, GraphConfig, build_graph

    s = synthetic_entries(1)[0].atoms
    cache = GraphCache(tmp_path / "cache")
    g = cache.get_or_build(s, GraphConfig(), n_mobile=5)
    files = list((tmp_path / "cache").rglob("*.pt"))
    assert len(files) == 1
    data = bytearray(files[0].read_bytes())
    # flip a bit inside a stored float of the bond lengths: a plain torch.load would accept it
    data[len(data) // 2] ^= 0x10
    files[0].write_bytes(bytes(data))
    again = cache.get_or_build(s, GraphConfig(), n_mobile=5)
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    fresh = build_graph(s, GraphConfig(), n_mobile=5)
    for f in ("edge_len", "lg_cos", "edge_index", "x"):
        assert torch.equal(getattr(again, f), getattr(fresh, f)) and torch.equal(getattr(g, f), getattr(fresh, f))
    assert load_torch_sealed(files[0])  # the rebuilt file is whole again


# ----------------------------------------------------------------------------- model folders
@pytest.fixture(scope="module")
def small_model(tmp_path_factory, band_file) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert main([*_train_args(band_file, out), "--epochs", "1"]) == 0
    return out / "model"


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def test_model_folder_records_format_checksums_and_graph_code(small_model):
    from hopnet.models.folder import FORMAT_VERSION, graph_code
    from hopnet.infra.integrity import sha256_file

    meta = json.loads((small_model / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["checksums"] == {"weights.pt": sha256_file(small_model / "weights.pt")}
    assert meta["graph_code"] == graph_code()
    for name in ("default", "mpt"):  # shipped weights are checked too
        load_model(name)


@pytest.mark.parametrize("damage, words", [
    ("flip", "weights.pt is corrupt or was changed after saving"),
    ("truncate", "weights.pt is corrupt or was changed after saving"),
    ("graph_code", "trained on graphs format 0 with element table"),
    ("no_checksums", "has no checksums"),
    ("format", "model format version 3, this hopnet reads versions 1, 2"),
])
def test_damaged_or_incompatible_model_is_refused_by_cli(small_model, tmp_path, capsys, damage, words):
    folder = _copy(small_model, tmp_path)
    meta = json.loads((folder / "metadata.json").read_text())
    weights = folder / "weights.pt"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "graph_code":
        meta["graph_code"]["graph_format"] = 0
    elif damage == "no_checksums":
        del meta["checksums"]
    elif damage == "format":
        meta["format_version"] = 3
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=words):
        load_model(folder)
    capsys.readouterr()
    band = tmp_path / "band.json"
    band.write_text(json.dumps(synthetic_entries(1)[0].atoms))
    out = tmp_path / "pred.json"
    assert main(["predict", str(band), "--model", str(folder), "--output", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and not out.exists()
    assert main(["models", "check", str(folder)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert main(["models", "check", str(small_model)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"ok ({small_model})")


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_data_identical_predictions(tmp_path, band_file, small_model):
    from hopnet.datasets import load

    entries = list(load(band_file))
    again = tmp_path / "again"
    assert main([*_train_args(band_file, again), "--epochs", "1"]) == 0
    a = load_model(small_model).predict_paths(entries)
    b = load_model(again / "model").predict_paths(entries)
    assert np.array_equal(a.mean, b.mean)  # bit-identical on the CPU
    assert np.array_equal(a.mean, load_model(small_model).predict_paths(entries).mean)
    # classical models too
    for name in ("c1", "c2"):
        assert main(["train", "--data", str(band_file), "--model", "classical", "--seed", "1", "--ensemble", "2",
                     "--out", str(tmp_path / name), "--no-progress"]) == 0
    c1 = load_model(tmp_path / "c1").predict_paths(entries)
    c2 = load_model(tmp_path / "c2").predict_paths(entries)
    assert np.array_equal(c1.mean, c2.mean) and np.array_equal(c1.std, c2.std)
