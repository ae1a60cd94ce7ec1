"""docs/tutorial.md cannot rot: its marked code blocks are run and their printed output checked.

A fenced ```bash or ```python block preceded by ``<!-- test: fast -->`` runs in every test run;
``<!-- test: slow -->`` blocks (fine-tuning from the shipped ``mpt``, ~10 s, offline) run in their
own test. The ```text block right after a runnable block is its expected
output: every line of it must appear in what the block printed (runs of spaces collapsed; a
``...`` line is skipped); add ``nocompare`` to the marker for output that depends on training.

Blocks run in order, in a temporary folder holding a copy of ``examples/`` (they write files such
as ``hops.csv``): a bash line ``hopnet ARGS`` runs ``hopnet.cli.main(ARGS)`` in this process, a
``python ARGS`` line runs a subprocess, anything else is refused; a python block is ``exec``-ed.
When a command's output changes on purpose, paste the new output into the tutorial.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*test:\s*([\w\s]+?)\s*-->\s*$")


@dataclass
class Block:
    """A fenced code block of the tutorial: language, code, the marker's words, the expected
    output (the ```text block right after it, if any) and the line it starts on."""

    lang: str
    code: str
    marks: frozenset[str]
    expected: str | None
    line: int


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` that carries a ``<!-- test: ... -->`` marker on the line
    before it, with the ```text block that follows it (blank lines between are allowed)."""
    lines = text.splitlines()
    raw: list[tuple[str, str, int, int]] = []  # (lang, code, first line index, index after the fence)
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"{TUTORIAL.name}:{i + 1}: unclosed code block")
        raw.append((m.group(1), "\n".join(lines[i + 1:j]), i, j + 1))
        i = j + 1
    out: list[Block] = []
    for k, (lang, code, start, _) in enumerate(raw):
        prev = next((lines[p] for p in range(start - 1, -1, -1) if lines[p].strip()), "")
        m = _MARKER.match(prev.strip())
        if m is None:
            continue
        expected = None
        if k + 1 < len(raw) and raw[k + 1][0] == "text":
            between = lines[raw[k][3]:raw[k + 1][2]]
            if not any(x.strip() for x in between):
                expected = raw[k + 1][1]
        out.append(Block(lang, code, frozenset(m.group(1).split()), expected, start + 1))
    return out


def _squash(s: str) -> str:
    return re.sub(r"[ \t]+", " ", s.strip())


def missing_lines(expected: str, actual: str) -> list[str]:
    """Lines of ``expected`` that are not in ``actual`` (spaces collapsed; ``...`` lines skipped)."""
    got = [_squash(x) for x in actual.splitlines()]
    want = [_squash(x) for x in expected.splitlines() if x.strip() and x.strip() != "..."]
    return [w for w in want if not any(w in g for g in got)]


def _run_bash(code: str, env: dict[str, str]) -> str:
    from hopnet.cli import main

    out = io.StringIO()
    for raw in code.splitlines():
        argv = shlex.split(raw, comments=True)
        if not argv:
            continue
        if argv[0] == "hopnet":
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    rc = main(argv[1:])
                except SystemExit as exc:  # argparse: --version, --help, usage errors
                    rc = exc.code if isinstance(exc.code, int) else 0
            assert rc == 0, f"`{raw}` exited {rc}:\n{out.getvalue()}"
        elif argv[0] == "python":
            proc = subprocess.run([sys.executable, *argv[1:]], check=False, capture_output=True, text=True, env=env)
            out.write(proc.stdout + proc.stderr)
            assert proc.returncode == 0, f"`{raw}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        else:
            raise AssertionError(f"tutorial command not runnable by this test: {raw}")
    return out.getvalue()


def _run_python(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(TUTORIAL), "exec"), {"__name__": "__tutorial__"})  # noqa: S102 - the tutorial's own code
    return out.getvalue()


def _run_blocks(blocks: list[Block], workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "examples", workdir / "examples")
    monkeypatch.chdir(workdir)
    env = dict(os.environ)
    failures = []
    for b in blocks:
        if b.lang == "bash":
            got = _run_bash(b.code, env)
        elif b.lang == "python":
            got = _run_python(b.code)
        else:
            raise AssertionError(f"{TUTORIAL.name}:{b.line}: cannot run a {b.lang!r} block")
        if b.expected is not None and "nocompare" not in b.marks:
            gone = missing_lines(b.expected, got)
            if gone:
                failures.append(f"{TUTORIAL.name}:{b.line}: output lines not printed:\n  "
                                + "\n  ".join(gone) + f"\n--- printed:\n{got}")
    assert not failures, "\n\n".join(failures)


def test_parse_blocks_markers_and_expected_output():
    text = "\n".join([  # noqa: FLY002 - one markdown line per item
        "intro", "<!-- test: fast -->", "```bash", "hopnet rate", "```", "```text", "out 1", "```",
        "```bash", "not marked", "```",
        "<!-- test: slow nocompare -->", "", "```python", "print(1)", "```", "", "```text", "1", "```",
        "<!-- test: fast -->", "```bash", "hopnet --version", "```", "prose", "```text", "not its output", "```",
    ])
    blocks = parse_blocks(text)
    assert [(b.lang, b.code, sorted(b.marks), b.expected) for b in blocks] == [
        ("bash", "hopnet rate", ["fast"], "out 1"),
        ("python", "print(1)", ["nocompare", "slow"], "1"),
        ("bash", "hopnet --version", ["fast"], None),
    ]
    assert missing_lines("a  b\n...\nc", "xx a b yy\n") == ["c"]


def test_tutorial_has_the_promised_sections():
    blocks = parse_blocks(TUTORIAL.read_text())
    fast = [b for b in blocks if "fast" in b.marks]
    code = "\n".join(b.code for b in fast)
    for needle in ("hopnet predict", "--from 0 --to 4", "--from-frac", "hopnet screen", "hop_network_plot",
                   "hopnet rate", "hopnet.predict("):
        assert needle in code, needle
    slow = "\n".join(b.code for b in blocks if "slow" in b.marks)
    assert "hopnet finetune --from mpt" in slow and "tutorial_data/demo_targets.csv" in slow
    assert all(b.expected is not None for b in fast)  # every fast block shows its real output


def test_tutorial_data_csv_reads():
    from hopnet.datasets.multiprop import read_structure_csv

    ds = read_structure_csv(ROOT / "examples" / "tutorial_data" / "demo_targets.csv")
    assert len(ds) == 15
    first = ds[0]
    assert first.id == "LiFePO4_olivine_m3.cif" and first.target == pytest.approx(9.497)


def test_tutorial_fast_blocks_run_and_print_what_the_tutorial_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    blocks = [b for b in parse_blocks(TUTORIAL.read_text()) if "fast" in b.marks]
    assert len(blocks) >= 8
    _run_blocks(blocks, tmp_path, monkeypatch)
    assert (tmp_path / "hops.csv").is_file() and (tmp_path / "olivine_network.png").is_file()


def test_tutorial_slow_blocks_finetune_from_shipped_mpt(tmp_path, monkeypatch):
    """The fine-tuning blocks (from the shipped ``mpt`` encoder, offline; ~10 s)."""
    blocks = [b for b in parse_blocks(TUTORIAL.read_text()) if "slow" in b.marks]
    monkeypatch.setenv("HOPNET_CACHE_DIR", str(tmp_path / "cache"))
    _run_blocks(blocks, tmp_path, monkeypatch)
    assert (tmp_path / "runs" / "finetune" / "model" / "config.json").is_file()
