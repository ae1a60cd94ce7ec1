"""``hopnet import-neb``: a user's own NEB calculations (VASP NEB folders, ASE .traj/.extxyz files
of the images) as a band-format data-set file that train, finetune and evaluate read with --data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hopnet.infra.errors import HopnetError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import-neb", help="turn your own NEB calculations into a data-set file (--data FILE)",
        description="Read NEB runs -- VASP NEB folders (00 .. NN with POSCAR/CONTCAR and OUTCAR) or "
                    "ASE files of the images with energies (.traj, .extxyz) -- find the one moving ion, "
                    "check the host, and write one band entry per run (barrier = max E - E initial) "
                    "to a .json/.json.gz file that `hopnet train/finetune/evaluate --data FILE` read.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="VASP NEB folder or ASE file of the images")
    p.add_argument("--out", required=True, metavar="FILE.json[.gz]", help="data-set file to write (required)")
    p.add_argument("--ion", default=None, help="the species that must be the moving atom (default: any)")
    p.add_argument("--xc", default=None, help="functional stored as xc, e.g. GGA+U (default: none)")
    p.add_argument("--source", default=None, help="where the numbers come from, stored as source (default: none)")
    p.add_argument("--class", dest="cls", default=None, metavar="CLASS",
                   help="structural class, e.g. OLIVINE (default: none)")
    p.add_argument("--name", default=None,
                   help="sys_name of the entry, with one SOURCE (default: the folder or file name)")
    p.add_argument("--end-energies", nargs=2, type=float, default=None, metavar=("E_INITIAL", "E_FINAL"),
                   help="total energies (eV) of the end images, with one SOURCE: for end folders without "
                        "OUTCAR; they replace what the files say (default: read from the files)")
    p.add_argument("--images", type=int, default=None,
                   help="images per band in an ASE file holding a whole NEB run (default: found "
                        "where the fixed initial image repeats; the last band is taken)")
    p.add_argument("--host-tol", type=float, default=0.5, metavar="Å",
                   help="how far a host atom may move in any image (default 0.5 Å)")
    p.add_argument("--json", action="store_true", help="print each entry's summary as a JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hopnet.cli.common import check_output_file
    from hopnet.importing import import_neb, write_dataset

    check_output_file(args.out, "--out")
    if not str(args.out).endswith((".json", ".json.gz")):
        raise HopnetError(f"--out {args.out}: the data-set file must end in .json or .json.gz")
    if args.name is not None and len(args.sources) != 1:
        raise HopnetError("--name applies to one SOURCE")
    if args.images is not None and args.images < 3:
        raise HopnetError(f"--images must be at least 3, got {args.images}")
    records = import_neb(args.sources, args.ion, xc=args.xc, source=args.source, cls=args.cls,
                         names=None if args.name is None else [args.name], end_energies=args.end_energies,
                         images=args.images, host_tol=args.host_tol)
    write_dataset(records, args.out)
    for r in records:
        ion = r["atoms"]["elements"][0]
        row = {"sys_name": r["sys_name"], "ion": ion, "barrier": r["target"], "reverse_barrier": r["reverse_barrier"],
               "hop_length": r["hop_length"], "n_source_images": r["n_source_images"]}
        print(json.dumps(row) if args.json else
              f"{r['sys_name']}: {ion} hop of {r['hop_length']:.2f} Å, barrier {r['target']:.3f} eV "
              f"(reverse {r['reverse_barrier']:.3f} eV) from {r['n_source_images']} images")
    if not args.json:
        print(f"wrote {len(records)} path(s) to {args.out}")
    return 0
