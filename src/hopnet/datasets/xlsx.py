"""Just enough of the xlsx format to read the cell values of one sheet, without a dependency.

An xlsx file is a zip of XML parts: ``xl/workbook.xml`` names the sheets, its relationships
(``xl/_rels/workbook.xml.rels``) say which part holds each sheet, ``xl/sharedStrings.xml`` holds
the text of string cells, and a sheet part lists rows of cells (``<c r="B2" t="s"><v>3</v></c>``).
Values come back as ``str`` (text), ``float`` (numbers), ``bool`` or None (empty or error cells);
formulas give their cached value.
"""

from __future__ import annotations

import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile

from hopnet.infra.errors import DataError

_M = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
Cell = str | float | bool | None


def _column(ref: str) -> int:
    """0-based column of a cell reference such as ``AB12``."""
    letters = re.match(r"[A-Z]+", ref)
    if letters is None:
        raise ValueError(f"bad cell reference {ref!r}")
    n = 0
    for ch in letters.group():
        n = n * 26 + ord(ch) - 64
    return n - 1


def _text(node: ET.Element | None) -> str:
    """Text of a string item: its ``<t>``, or the ``<t>`` of each rich-text run (phonetic runs left out)."""
    if node is None:
        return ""
    return node.findtext(f"{_M}t", "") + "".join(r.findtext(f"{_M}t", "") for r in node.findall(f"{_M}r"))


def _sheet_part(zf: zipfile.ZipFile, sheet: str) -> str:
    """Zip member holding sheet ``sheet``."""
    book = ET.fromstring(zf.read("xl/workbook.xml"))
    ids = {s.get("name"): s.get(f"{_R}id") for s in book.iter(f"{_M}sheet")}
    if sheet not in ids:
        raise DataError(f"no sheet {sheet!r} (sheets: {', '.join(map(str, ids))})")
    rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    target = next((r.get("Target") for r in rels.iter(f"{_REL}Relationship") if r.get("Id") == ids[sheet]), None)
    if target is None:
        raise DataError(f"sheet {sheet!r} has no part in the workbook relationships")
    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")


def _value(c: ET.Element, strings: list[str]) -> Cell:
    kind, v = c.get("t", "n"), c.findtext(f"{_M}v")
    if kind == "inlineStr":
        return _text(c.find(f"{_M}is"))
    if v is None or kind == "e":  # empty, or an error such as #N/A
        return None
    if kind == "s":
        return strings[int(v)]
    if kind == "b":
        return v.strip() == "1"
    if kind in ("str", "d"):
        return v
    return float(v)


def read_sheet(data: bytes, sheet: str) -> list[list[Cell]]:
    """Rows of sheet ``sheet`` of the xlsx file ``data``, each a list of cell values by column
    (missing cells are None; empty rows are left out). :class:`DataError` if it is no xlsx."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            part = _sheet_part(zf, sheet)
            has_strings = "xl/sharedStrings.xml" in zf.namelist()
            shared = ET.fromstring(zf.read("xl/sharedStrings.xml")) if has_strings else None
            root = ET.fromstring(zf.read(part))
        strings = [_text(si) for si in shared.iter(f"{_M}si")] if shared is not None else []
        return [row for row in (_row(r, strings) for r in root.iter(f"{_M}row")) if row]
    except (zipfile.BadZipFile, KeyError, ET.ParseError, ValueError, IndexError) as exc:
        raise DataError(f"not a readable xlsx file ({exc})") from None


def _row(row: ET.Element, strings: list[str]) -> list[Cell]:
    """Cell values of one row by column; [] when every cell is empty."""
    cells: dict[int, Cell] = {}
    col = -1
    for c in row.findall(f"{_M}c"):
        ref = c.get("r")
        col = _column(ref) if ref else col + 1
        cells[col] = _value(c, strings)
    if all(v is None for v in cells.values()):
        return []
    return [cells.get(i) for i in range(max(cells) + 1)]
