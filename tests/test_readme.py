"""Every ``hopnet`` command in README.md runs as written (and those of docs/ parse).

Each command line of the README's ``bash`` blocks is split like a shell would (globs expanded
from the repository root), every file it reads must exist in the repository, and the whole
command must parse. The quick ones are then run, in order, in a scratch folder that sees the
repository's ``examples/`` (their outputs go there); the slow ones (GNN training, the full
comparison, pre-training, fine-tuning: minutes to hours) are only parsed here -- their code paths
have their own tests.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path

import pytest

from hopnet.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: (subcommand, first argument or None) run only as a parse: minutes to hours of CPU
SLOW = {("train", "--variant"), ("reproduce", None), ("pretrain", None), ("finetune", None)}
READS = (".cif", ".yaml", ".csv", ".json", ".gz")
WRITE_FLAGS = {"--csv", "--json", "--plot", "--network", "--output", "--out"}


def readme_commands(path: Path = README, pattern: str = r"```bash\n(.*?)```") -> list[list[str]]:
    text = path.read_text()
    out = []
    for block in re.findall(pattern, text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if not re.match(r"^(\w+=\S+\s+)*(\S*/)?hopnet\s", line):
                continue
            words = shlex.split(line)
            while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
                words = words[1:]
            if words and Path(words[0]).name == "hopnet":
                out.append(_expand(words[1:]))
    return out


def _expand(args: list[str]) -> list[str]:
    out = []
    for a in args:
        hits = sorted(glob.glob(str(ROOT / a))) if glob.has_magic(a) else []
        out.extend(str(Path(h).relative_to(ROOT)) for h in hits) if hits else out.append(a)
    return out


def _slow(argv: list[str]) -> bool:
    return (argv[0], None) in SLOW or (argv[0], argv[1] if len(argv) > 1 else None) in SLOW


COMMANDS = readme_commands()
#: the commands in the other docs (the tutorial has its own test, which runs its blocks)
DOC_COMMANDS = [c for doc in sorted((ROOT / "docs").glob("*.md")) if doc.name != "tutorial.md"
                for c in readme_commands(doc, r"```[a-z]*\n(.*?)```")]


def test_readme_has_the_commands():
    names = {c[0] for c in COMMANDS}
    assert {"predict", "screen", "rate", "evaluate", "train", "neb", "models", "datasets", "reproduce",
            "pretrain", "finetune"} <= names


@pytest.mark.parametrize("argv", COMMANDS + DOC_COMMANDS, ids=lambda a: " ".join(a)[:60])
def test_command_parses_and_its_files_exist(argv):
    build_parser().parse_args(argv)  # a bad flag exits here
    reads = READS + (".extxyz",) if argv in COMMANDS else READS  # docs make their NEB files first
    for flag, value in zip([""] + argv[:-1], argv):
        if "$" in value:  # a shell variable: the user's own file
            continue
        if value.endswith(reads) and flag not in WRITE_FLAGS:
            assert (ROOT / value).is_file(), f"README names {value}, which the repository does not ship"


def test_quick_commands_run_as_written(tmp_path, monkeypatch, capsys):
    if not os.environ.get("HOPNET_DATA_DIR"):
        pytest.skip("HOPNET_DATA_DIR is not set (CI sets it)")
    pytest.importorskip("chgnet")
    import torch

    torch.set_num_threads(1)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.setenv("HOPNET_DATA_DIR", str(Path(os.environ["HOPNET_DATA_DIR"]).resolve()))
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in COMMANDS:
        if _slow(argv):
            continue
        rc = main(list(argv))
        out = capsys.readouterr()
        assert rc == 0, f"hopnet {' '.join(argv)} -> {rc}\n{out.err[-2000:]}"
        ran.append(argv[0])
    assert {"predict", "screen", "rate", "evaluate", "train", "models", "neb", "import-neb", "datasets"} <= set(ran)
    for f in ("hops.csv", "net.png", "report.json", "parity.png", "my_model/config.json", "runs/from_yaml/config.json",
              "my_paths.json"):
        assert (tmp_path / f).is_file(), f


@pytest.mark.parametrize("command", ["train", "finetune", "evaluate", "pretrain"])
def test_every_training_flag_says_its_default(command):
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = (action.help or "").lower()
        assert "default" in text or "required" in text, f"hopnet {command} {action.option_strings}: {action.help!r}"


def docs_python_commands() -> list[tuple[str, list[str]]]:
    """``python SCRIPT.py args`` written anywhere in README.md and docs/ (code blocks or inline),
    optional ``[...]`` parts and comments dropped."""
    found = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r"python ((?:benchmarks|experiments|examples)/[\w/]+\.py)([^`\n#]*)", doc.read_text()):
            args = re.sub(r"\[[^\]]*\]", "", m.group(2)).replace("\\", " ").split()
            found.append((m.group(1), args))
    return found


@pytest.mark.parametrize("script, args", docs_python_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_docs_python_commands_name_real_scripts_and_flags(script, args):
    """Every script the docs tell you to run exists, and every --flag they give it is one its
    --help lists (scripts without argparse are only checked to exist)."""
    import subprocess
    import sys

    path = ROOT / script
    assert path.is_file(), f"docs name {script}, which the repository does not ship"
    if "argparse" not in path.read_text():
        return
    sub = [args[0]] if args and re.fullmatch(r"[a-z]+", args[0]) else []  # a subcommand, e.g. `summary`
    out = subprocess.run([sys.executable, str(path), *sub, "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-1000:]
    for flag in (a.split("=")[0] for a in args if a.startswith("--")):
        assert flag in out.stdout, f"{script} {' '.join(sub)}: docs use {flag}, --help does not list it"


def test_reliability_page_names_real_tests():
    """Every test docs/reliability.md cites as proof exists."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    names = set(re.findall(r"::(test_\w+)", text))
    defined = {m for f in (ROOT / "tests").glob("test_*.py") for m in re.findall(r"^def (test_\w+)", f.read_text(), re.M)}
    assert names and not sorted(names - defined)
