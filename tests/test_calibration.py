"""Calibrated uncertainty: the fit recovers known σ models, the shipped default reports a calibrated
σ and P(good conductor), and models without a calibration keep the raw ensemble spread."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import hopnet.inference as hp
from hopnet.cli import main
from hopnet.infra.errors import DataError, ModelFileError
from hopnet.models.folder import Prediction, shipped_models
from hopnet.models.calibration import (
    Calibration,
    coverage,
    fit_calibration,
    gaussian_crps,
    gaussian_nll,
    interval_metrics,
    prob_below,
)

ROOT = Path(__file__).resolve().parents[1]
LFP = ROOT / "examples" / "LiFePO4_olivine.cif"


def _synthetic(n: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (eV) drawn from N(0, a² + (b σ_ens)²) for σ_ens uniform in 0.001-0.06 eV."""
    rng = np.random.default_rng(seed)
    s_ens = rng.uniform(0.001, 0.06, n)
    r = rng.normal(0.0, np.sqrt(a**2 + (b * s_ens) ** 2))
    return r, s_ens


# ---------------------------------------------------------------- the fit
@pytest.mark.parametrize("objective", ["nll", "crps"])
def test_fit_recovers_known_sigma_model(objective: str) -> None:
    r, s_ens = _synthetic(20000, a=0.1, b=8.0, seed=1)
    cal = fit_calibration(r, {"ensemble_std": s_ens}, ("const", "ensemble_std"), objective)
    assert cal.weights["const"] == pytest.approx(0.1, rel=0.12)
    assert cal.weights["ensemble_std"] == pytest.approx(8.0, rel=0.05)
    assert cal.objective == objective


def test_feature_without_signal_gets_no_weight() -> None:
    r, s_ens = _synthetic(20000, a=0.1, b=8.0, seed=2)
    hop = np.random.default_rng(3).uniform(1.5, 9.0, len(r))  # Å, unrelated to the errors
    cal = fit_calibration(r, {"ensemble_std": s_ens, "hop_length": hop}, ("const", "ensemble_std", "hop_length"))
    # a hop-length term as large as 0.01 eV/Å would add ~0.05 eV at 5 Å
    assert cal.weights["hop_length"] < 0.01
    assert cal.weights["ensemble_std"] == pytest.approx(8.0, rel=0.06)


def test_calibrated_sigma_covers_fresh_synthetic_data() -> None:
    r, s_ens = _synthetic(20000, a=0.1, b=8.0, seed=4)
    cal = fit_calibration(r, {"ensemble_std": s_ens})
    r2, s2 = _synthetic(20000, a=0.1, b=8.0, seed=5)
    sigma = cal.sigma(s2)
    assert coverage(r2, sigma, 1) == pytest.approx(0.683, abs=0.015)
    assert coverage(r2, sigma, 2) == pytest.approx(0.954, abs=0.01)
    assert coverage(r2, s2, 1) < 0.2  # the raw spread is far too small
    m = interval_metrics(r2, sigma)
    assert m["nll"] < interval_metrics(r2, s2)["nll"] and m["crps_ev"] < interval_metrics(r2, s2)["crps_ev"]
    assert m["spearman_sigma_abs_r"] > 0.2


def test_scores_of_known_cases() -> None:
    # N(0, 1) at r = 0: NLL = log(2π)/2, CRPS = (√2 - 1)/√π
    assert gaussian_nll([0.0], [1.0]) == pytest.approx(0.5 * math.log(2 * math.pi))
    assert gaussian_crps([0.0], [1.0]) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))
    assert gaussian_crps([0.3], [1e-9]) == pytest.approx(0.3)  # σ → 0: the absolute error
    assert coverage([0.5, -0.5, 1.5], [1.0, 1.0, 1.0]) == pytest.approx(2 / 3)


def test_sigma_formula_and_round_trip() -> None:
    cal = Calibration({"const": 0.3, "ensemble_std": 4.0, "prediction": 0.5})
    s = cal.sigma(ensemble_std=[0.1, 0.0], prediction=[0.8, -1.0])  # negative barriers count as 0
    assert s == pytest.approx([math.sqrt(0.09 + 0.16 + 0.16), 0.3])
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    with pytest.raises(DataError, match="hop_length"):
        Calibration({"const": 0.1, "hop_length": 0.01}).sigma([0.1])


@pytest.mark.parametrize("block, match", [
    ([1, 2], "must be an object"),
    ({"method": "isotonic", "weights": {"const": 0.1}}, "unknown calibration method"),
    ({"weights": {"const": -0.1}}, "bad calibration block"),
    ({"weights": {"temperature": 1.0}}, "unknown calibration feature"),
    ({"objective": "nll"}, "no weights"),
])
def test_malformed_blocks_are_model_file_errors(block: object, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        Calibration.from_dict(block)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="objective"):
        fit_calibration([0.1] * 10, {"ensemble_std": [0.1] * 10}, objective="mse")
    with pytest.raises(DataError, match="too few"):
        fit_calibration([0.1, 0.2], {"ensemble_std": [0.1, 0.1]})
    with pytest.raises(DataError, match="unknown calibration feature"):
        fit_calibration([0.1] * 10, {"ensemble_std": [0.1] * 10}, ("const", "volume"))


def test_prob_below_is_a_monotone_probability() -> None:
    mean = np.linspace(-0.5, 2.0, 101)
    p = prob_below(mean, np.full_like(mean, 0.3), 0.65)
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p) < 0).all()
    assert prob_below([0.65], [0.3], 0.65)[0] == pytest.approx(0.5)
    assert prob_below([0.65 - 0.3], [0.3], 0.65)[0] == pytest.approx(0.8413, abs=1e-4)
    # wider σ pulls a confident call towards 1/2; σ = 0 is a step; NaN stays NaN
    assert prob_below([0.2], [0.5], 0.65)[0] < prob_below([0.2], [0.1], 0.65)[0]
    assert list(prob_below([0.2, 1.0], [0.0, 0.0], 0.65)) == [1.0, 0.0]
    assert np.isnan(prob_below([np.nan], [0.2], 0.65)[0]) and np.isnan(prob_below([0.2], [np.nan], 0.65)[0])


# ---------------------------------------------------------------- hopnet.inference
def test_shipped_default_reports_a_calibrated_sigma() -> None:
    meta = json.loads((shipped_models()["default"] / "metadata.json").read_text())
    cal = Calibration.from_dict(meta["calibration"])
    r = hp.predict(str(LFP), "Li", 0, 4)
    raw = hp.get_model("default").predict_paths([r.path])
    assert r.calibrated and r.ensemble_std == pytest.approx(float(raw.ensemble_std[0]), abs=1e-12)
    assert float(raw.std[0]) == pytest.approx(r.std, abs=1e-12)  # std: the calibrated σ, in both APIs
    assert r.ensemble_std < 0.05  # the members agree closely ...
    assert 0.1 < r.std < 1.0  # ... the calibrated error bar is of the size of the CV errors
    assert r.std == pytest.approx(float(cal.sigma(ensemble_std=[r.ensemble_std], prediction=[r.barrier])[0]))
    assert 0.0 <= r.p_good <= 1.0
    assert r.p_good == pytest.approx(float(prob_below([r.barrier], [r.std], 0.65)[0]))
    d = r.to_dict()
    assert d["std_ev"] == r.std and d["ensemble_std_ev"] == r.ensemble_std and d["p_good"] == r.p_good
    assert d["std_kind"] == "calibrated on grouped CV"
    # the block records how it was made and how it did on held-out folds
    held = meta["calibration"]["heldout"]["calibrated"]
    assert 0.6 < held["coverage_1sigma"] < 0.76 and held["nll"] < meta["calibration"]["heldout"]["raw_ensemble_std"]["nll"]


def _copy_default(tmp_path: Path, calibration: object | None) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(shipped_models()["default"], folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta.pop("calibration", None)
    if calibration is not None:
        meta["calibration"] = calibration
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_model_without_calibration_keeps_the_raw_spread(tmp_path: Path) -> None:
    folder = _copy_default(tmp_path, None)
    plain = hp.predict(str(LFP), "Li", 0, 4, model=folder)
    calibrated = hp.predict(str(LFP), "Li", 0, 4)
    assert not plain.calibrated
    assert plain.barrier == calibrated.barrier  # same trees, same mean
    assert plain.std == plain.ensemble_std == calibrated.ensemble_std
    assert math.isnan(plain.p_good)
    d = plain.to_dict()
    assert d["p_good"] is None and d["std_kind"] == "ensemble spread" and d["std_ev"] == d["ensemble_std_ev"]


def test_malformed_calibration_block_fails_with_one_line(tmp_path: Path) -> None:
    folder = _copy_default(tmp_path, {"weights": {"const": "wide"}})
    with pytest.raises(ModelFileError, match="bad calibration block"):
        hp.predict(str(LFP), "Li", 0, 4, model=folder)


class _LinearModel:
    """E_m = 0.2 eV/Å × hop length, ensemble spread 0.01 eV, calibrated σ = sqrt(0.2² + (5 σ_ens)²)."""

    name = "linear"
    metadata: ClassVar[dict] = {"calibration": {"method": "variance-sum", "weights": {"const": 0.2, "ensemble_std": 5.0}}}

    def predict_paths(self, paths: list, batch_size: int | None = None) -> Prediction:
        lengths = np.array([p.hop_length for p in paths])
        return Prediction(mean=0.2 * lengths, std=np.full(len(paths), 0.01))


def test_p_good_falls_as_the_barrier_rises() -> None:
    s = Structure(Lattice.cubic(10.0), ["Li", "O"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    hops = [{"structure": s, "ion": "Li", "start": [0.0, 0.0, 0.0], "end": [x, 0.0, 0.0]}
            for x in (0.15, 0.25, 0.32, 0.4)]  # 1.5, 2.5, 3.2, 4.0 Å -> 0.3, 0.5, 0.64, 0.8 eV
    res = hp.predict_many(hops, model=_LinearModel())
    barriers = [r.barrier for r in res]
    p = [r.p_good for r in res]
    assert barriers == pytest.approx([0.3, 0.5, 0.64, 0.8])
    sigma = math.sqrt(0.2**2 + 0.05**2)
    assert [r.std for r in res] == pytest.approx([sigma] * 4)
    assert all(0.0 <= x <= 1.0 for x in p) and all(a > b for a, b in itertools.pairwise(p))
    assert p[0] == pytest.approx(0.5 * (1 + math.erf(0.35 / sigma / math.sqrt(2))))
    # a higher conductor threshold makes every hop more likely good
    higher = hp.predict_many(hops, model=_LinearModel(), threshold=1.0)
    assert all(h.p_good > r.p_good for h, r in zip(higher, res))


def test_cli_says_the_sigma_is_calibrated(capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(LFP), "--ion", "Li", "--from", "0", "--to", "4"]) == 0
    out = capsys.readouterr().out
    assert "± σ (calibrated on grouped CV; ensemble spread" in out and "P(E_m < 0.65 eV) = " in out
    assert main(["predict", str(LFP), "--ion", "Li", "--from", "0", "--to", "4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["std_ev"] > 0.1 and d["ensemble_std_ev"] < d["std_ev"] and 0.0 <= d["p_good"] <= 1.0


def test_cli_text_of_an_uncalibrated_model_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _copy_default(tmp_path, None)
    assert main(["predict", str(LFP), "--ion", "Li", "--from", "0", "--to", "4", "--model", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "calibrated" not in out and "P(E_m" not in out and " ± " in out


def test_shipped_block_refits_from_the_cv_records() -> None:
    """experiments/calibrate.py writes what its records give (skipped without results/default-cv)."""
    records = ROOT / "results" / "default-cv"
    if not list(records.glob("seed*_fold*.json")):
        pytest.skip("results/default-cv not present (experiments/default_model.py --cv-only makes it)")
    block = json.loads((shipped_models()["default"] / "metadata.json").read_text())["calibration"]
    preds = [p for f in sorted(records.glob("seed*_fold*.json")) for p in json.loads(f.read_text())["predictions"]]
    r = np.array([p["target"] - p["prediction"] for p in preds])
    feats = {"ensemble_std": np.array([p["std"] for p in preds]), "prediction": np.array([p["prediction"] for p in preds])}
    cal = fit_calibration(r, feats, tuple(block["weights"]), block["objective"])
    assert len(r) == block["data"]["n_predictions"]
    for k, w in block["weights"].items():
        assert cal.weights[k] == pytest.approx(w, rel=1e-4, abs=1e-6)
