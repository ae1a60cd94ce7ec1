"""``hopnet rate``: what a migration barrier means for a battery particle (see :mod:`hopnet.physics`).

    hopnet rate --barrier 0.5 [--hop 3.0] [--temperature 300] [--size 100nm] [--c-rate 0.5]

Prints the diffusivity D = a²ν/6 · exp(−E_m/kT), the time t = g·L²/D to cross the particle, the
(dis)charge time 1/C h, and the threshold barrier at which the two are equal.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def register(subparsers: Any) -> None:
    from hopnet import physics as ph

    p = subparsers.add_parser(
        "rate", help="diffusivity, diffusion time and threshold barrier for a particle size and C-rate",
        description="From a migration barrier to a battery: D = D0 exp(-E_m/kT) with D0 = a^2 nu / 6, "
                    "the time t = g L^2 / D for the ion to cross a particle of size L, and the threshold "
                    "barrier for which t equals the (dis)charge time 1/C hours.",
    )
    p.add_argument("--barrier", type=float, default=None, metavar="EV",
                   help="migration barrier E_m in eV (omit for the threshold only)")
    p.add_argument("--hop", type=float, default=ph.DEFAULT_HOP_LENGTH_A, metavar="Å",
                   help=f"hop length a in Å (default {ph.DEFAULT_HOP_LENGTH_A})")
    p.add_argument("--temperature", type=float, default=ph.DEFAULT_TEMPERATURE_K, metavar="K",
                   help=f"temperature in K (default {ph.DEFAULT_TEMPERATURE_K:g})")
    p.add_argument("--size", default=f"{ph.DEFAULT_PARTICLE_SIZE_NM:g}nm", metavar="L",
                   help="particle size, e.g. 100nm, 1um (bare numbers are nm; default 100nm)")
    p.add_argument("--c-rate", type=float, default=ph.DEFAULT_C_RATE, metavar="C",
                   help=f"(dis)charge rate in 1/h, 0.5 = C/2 (default {ph.DEFAULT_C_RATE})")
    p.add_argument("--attempt-frequency", type=float, default=ph.DEFAULT_ATTEMPT_FREQUENCY_HZ, metavar="HZ",
                   help=f"attempt frequency nu in Hz (default {ph.DEFAULT_ATTEMPT_FREQUENCY_HZ:g})")
    p.add_argument("--geometry-factor", type=float, default=ph.DEFAULT_GEOMETRY_FACTOR, metavar="G",
                   help="g in t = g L^2 / D (default 1; 1/6 for the 3-D mean-square displacement)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("years", 3.15576e7), ("days", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def run(args: argparse.Namespace) -> int:
    from hopnet import physics as ph

    rep = ph.rate_report(
        args.barrier, temperature=args.temperature, hop_length=args.hop, particle_size_nm=ph.parse_size(args.size),
        c_rate=args.c_rate, attempt_frequency=args.attempt_frequency, geometry_factor=args.geometry_factor,
    )
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
        return 0
    print(f"T = {rep.temperature_k:g} K, hop a = {rep.hop_length_a:g} Å, nu = {rep.attempt_frequency_hz:.3g} Hz: "
          f"D0 = a²ν/6 = {rep.prefactor_cm2_s:.3g} cm²/s; {1000 * ph.barrier_per_decade(rep.temperature_k):.1f} meV "
          f"per decade of D")
    print(f"particle L = {rep.particle_size_nm:g} nm, C-rate {rep.c_rate:g} -> (dis)charge time "
          f"{_duration(rep.charge_time_s)}")
    if rep.barrier_ev is not None:
        verdict = "fast enough" if rep.fast_enough else "too slow"
        print(f"E_m = {rep.barrier_ev:g} eV: D = {rep.diffusivity_cm2_s:.3g} cm²/s, time to cross the particle "
              f"t = {rep.geometry_factor:g}·L²/D = {_duration(rep.diffusion_time_s)} -> {verdict}")
    print(f"threshold barrier: {rep.threshold_ev:.3f} eV")
    return 0
