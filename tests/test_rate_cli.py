"""``hopnet rate`` prints D, the crossing time and the threshold."""

from __future__ import annotations

import json

import pytest

from hopnet.cli import main


def test_rate_text(capsys: pytest.CaptureFixture) -> None:
    assert main(["rate", "--barrier", "0.5", "--hop", "3.0", "--temperature", "300", "--size", "100nm",
                 "--c-rate", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "D = 5.98e-12 cm²/s" in out
    assert "threshold barrier: 0.657 eV" in out
    assert "fast enough" in out
    assert "59.5 meV per decade" in out


def test_rate_json_and_size_units(capsys: pytest.CaptureFixture) -> None:
    assert main(["rate", "--barrier", "0.7", "--size", "1um", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["particle_size_nm"] == 1000.0
    assert d["threshold_ev"] == pytest.approx(0.657 - 0.119, abs=0.001)
    assert d["fast_enough"] is False
    assert d["charge_time_s"] == 7200.0


def test_rate_threshold_only(capsys: pytest.CaptureFixture) -> None:
    assert main(["rate", "--c-rate", "5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["barrier_ev"] is None and d["diffusivity_cm2_s"] is None
    assert d["threshold_ev"] == pytest.approx(0.657 - 0.0595, abs=0.001)


@pytest.mark.parametrize("argv, words", [
    (["--size", "10 parsecs"], "particle size"),
    (["--temperature", "-5"], "temperature"),
    (["--c-rate", "0"], "C-rate"),
])
def test_rate_bad_input(argv: list[str], words: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["rate", "--barrier", "0.5", *argv]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hopnet: error:") and words in lines[0]
