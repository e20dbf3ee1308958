"""Spreadsheet-formula-safe cells for every CSV/XLSX export (one helper).

A cell that a spreadsheet would read as a formula (OWASP "CSV injection")
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (also their
full-width forms, which some spreadsheets fold). Such a cell is written with a
leading apostrophe, which spreadsheets show as text and do not evaluate. Only
text is touched: numbers, dates and ``None`` are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def safe_cell(value: Any) -> Any:
    """``value`` as it may be written to a spreadsheet cell."""
    if isinstance(value, str) and value and value[0] in FORMULA_STARTS:
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """Every cell of a row through :func:`safe_cell`."""
    return [safe_cell(value) for value in values]
