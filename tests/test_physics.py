"""hopnet.physics: the textbook facts behind the threshold barrier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hopnet import physics as ph
from hopnet.infra.errors import HopnetError
from hopnet.metrics import DEFAULT_THRESHOLD_EV


def test_prefactor_is_a2_nu_over_6() -> None:
    # a = 3 Å = 3e-8 cm, nu = 1e13 Hz: 9e-16 * 1e13 / 6 = 1.5e-3 cm^2/s
    assert ph.prefactor(3.0, 1e13) == pytest.approx(1.5e-3, rel=1e-12)
    assert ph.prefactor(6.0, 1e13) == pytest.approx(4 * ph.prefactor(3.0, 1e13))
    assert ph.prefactor(3.0, 2e13) == pytest.approx(2 * ph.prefactor(3.0, 1e13))


def test_arrhenius_and_vectorised() -> None:
    kt = ph.BOLTZMANN_EV_PER_K * 300.0
    assert ph.diffusivity(0.0) == pytest.approx(ph.prefactor())
    assert ph.diffusivity(0.5) == pytest.approx(1.5e-3 * math.exp(-0.5 / kt), rel=1e-12)
    d = ph.diffusivity(np.array([0.2, 0.4, 0.6]))
    assert isinstance(d, np.ndarray) and d.shape == (3,)
    assert np.all(np.diff(d) < 0)


def test_59_5_mev_per_decade_at_300k() -> None:
    per_decade = ph.barrier_per_decade(300.0)
    assert per_decade == pytest.approx(0.0595, abs=0.0002)  # 59.53 meV
    assert ph.diffusivity(0.40) / ph.diffusivity(0.40 + per_decade) == pytest.approx(10.0, rel=1e-9)
    # a decade of D is worth less barrier when it is colder
    assert ph.barrier_per_decade(250.0) < per_decade


def test_ten_times_particle_size_costs_119_mev() -> None:
    small = ph.threshold_barrier(particle_size_nm=100.0)
    large = ph.threshold_barrier(particle_size_nm=1000.0)
    assert small - large == pytest.approx(0.1191, abs=0.0005)
    assert small - large == pytest.approx(2 * ph.barrier_per_decade(300.0), rel=1e-12)
    # at the threshold, the crossing time equals the charge time
    d = ph.diffusivity(small)
    assert ph.diffusion_time(d, 100.0) == pytest.approx(ph.charge_time(0.5), rel=1e-9)


def test_published_threshold_for_nano_particles_at_c2_300k() -> None:
    thr = ph.threshold_barrier(particle_size_nm=100.0, c_rate=0.5, temperature=300.0)
    assert thr == pytest.approx(0.657, abs=0.001)
    assert abs(thr - DEFAULT_THRESHOLD_EV) < 0.01
    # the documented tolerance holds over typical hop lengths
    for a in (2.5, 3.0, 3.5, 4.0):
        assert abs(ph.threshold_barrier(hop_length=a) - DEFAULT_THRESHOLD_EV) <= ph.THRESHOLD_TOLERANCE_EV


def test_charge_time_and_geometry_factor() -> None:
    assert ph.charge_time(0.5) == 7200.0
    assert ph.charge_time(2.0) == 1800.0
    # 1 um at D = 1e-10 cm^2/s: (1e-4 cm)^2 / 1e-10 = 100 s; g = 1/6 -> 16.7 s
    assert ph.diffusion_time(1e-10, 1000.0) == pytest.approx(100.0)
    assert ph.diffusion_time(1e-10, 1000.0, geometry_factor=1 / 6) == pytest.approx(100.0 / 6)
    # faster charging (10x C-rate) needs one decade more D
    assert ph.threshold_barrier(c_rate=0.5) - ph.threshold_barrier(c_rate=5.0) == pytest.approx(
        ph.barrier_per_decade(300.0), rel=1e-12)


def test_parse_size() -> None:
    assert ph.parse_size("100nm") == 100.0
    assert ph.parse_size("1um") == 1000.0
    assert ph.parse_size("1 µm") == 1000.0
    assert ph.parse_size("0.5mm") == 5e5
    assert ph.parse_size("50") == 50.0
    assert ph.parse_size(20) == 20.0
    for bad in ("abc", "10 parsecs", "-5nm", "0nm", ""):
        with pytest.raises(HopnetError):
            ph.parse_size(bad)


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"temperature": -10}, {"c_rate": 0},
                                     {"hop_length": float("nan")}, {"particle_size_nm": -1}])
def test_bad_inputs_raise_one_line(kwargs: dict) -> None:
    with pytest.raises(HopnetError) as info:
        ph.threshold_barrier(**kwargs)
    assert "\n" not in str(info.value)


def test_rate_report() -> None:
    rep = ph.rate_report(0.5)
    assert rep.fast_enough is True
    assert rep.diffusion_time_s == pytest.approx(ph.diffusion_time(ph.diffusivity(0.5), 100.0))
    assert ph.rate_report(0.8).fast_enough is False
    only = ph.rate_report(None)
    assert only.fast_enough is None and only.diffusivity_cm2_s is None
    assert only.to_dict()["threshold_ev"] == pytest.approx(rep.threshold_ev)
    # an absurd barrier underflows D to 0: the crossing takes forever, not an error
    assert ph.rate_report(50.0).diffusion_time_s == math.inf
