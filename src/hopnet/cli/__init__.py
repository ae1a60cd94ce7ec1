"""The ``hopnet`` command: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code.
Parsing never touches the network or the data.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from hopnet.infra.errors import HopnetError

# subcommand name -> module under hopnet.cli (imported lazily so `hopnet --help` is fast)
SUBCOMMANDS: dict[str, str] = {
    "datasets": "hopnet.cli.datasets_cmd",
    "train": "hopnet.cli.train_cmd",
    "evaluate": "hopnet.cli.evaluate_cmd",
    "neb": "hopnet.cli.neb_cmd",
    "import-neb": "hopnet.cli.import_neb_cmd",
    "reproduce": "hopnet.cli.reproduce_cmd",
    "models": "hopnet.cli.models_cmd",
    "predict": "hopnet.cli.predict_cmd",
    "rate": "hopnet.cli.rate_cmd",
    "pretrain": "hopnet.cli.pretrain_cmd",
    "finetune": "hopnet.cli.finetune_cmd",
    "screen": "hopnet.cli.screen_cmd",
}
#: commands that train networks: the CLI tunes the allocator for them (:mod:`hopnet.infra.runtime`);
#: the library never changes process-wide settings on its own
TRAINING_COMMANDS = frozenset({"train", "pretrain", "finetune", "reproduce"})
#: commands whose --config FILE.yaml holds flag values (``hopnet train``'s holds a run file)
FLAG_FILE_COMMANDS = frozenset({"pretrain", "finetune"})


def build_parser() -> argparse.ArgumentParser:
    from hopnet import __version__

    parser = argparse.ArgumentParser(
        prog="hopnet", description="Ionic migration barriers in solids with ALIGNN graph networks."
    )
    parser.add_argument("--version", action="version", version=f"hopnet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in SUBCOMMANDS.items():
        importlib.import_module(modname).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in FLAG_FILE_COMMANDS and args.config:  # its values become the flags' defaults
        from hopnet.cli.common import apply_flag_file

        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        try:
            apply_flag_file(sub, args.config)
        except HopnetError as exc:
            print(f"hopnet: error: {exc}", file=sys.stderr)
            return 2
        args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in TRAINING_COMMANDS:
        from hopnet.infra.runtime import tune_allocator

        tune_allocator()  # large bond-pair tensors: keep freed memory in the heap (HOPNET_TUNE_ALLOCATOR=0: off)
    try:
        return int(args.func(args) or 0)
    except HopnetError as exc:
        print(f"hopnet: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hopnet ... | head`: the reader left; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("hopnet: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file the command could not read or write: one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"hopnet: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
