"""Read a spreadsheet file row by row, whatever its format and encoding.

:func:`open_table` takes a binary file (seekable: a temporary file) and
returns a :class:`Table`: the header and an iterator of ``(line, cells)``
where ``line`` is the line of the file the row starts on (as a spreadsheet
or text editor numbers it: the header is line 1) and ``cells`` a list of
strings. Nothing is read into memory beyond the current row (openpyxl's
read-only mode for XLSX).

CSV encodings: a byte-order mark decides (UTF-8, UTF-16); else UTF-8 when
the whole file decodes as UTF-8, else Windows-1252 when it decodes as that,
else Latin-1 (which decodes anything). The delimiter is the most frequent
of ``,`` ``;`` tab in the header line.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

XLSX_MAGIC = b"PK\x03\x04"
DELIMITERS = (",", ";", "\t")
_PROBE = 1 << 20


class UnreadableFile(ValueError):
    """The file cannot be read as a table; the message says why and what to do."""


@dataclass
class Table:
    format: str  # "csv" or "xlsx"
    encoding: str  # "" for XLSX
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    position: callable  # () -> bytes read so far (CSV) or an estimate (XLSX)
    # The text wrapper of a CSV file: closing it (as its garbage collection
    # would once the rows are read) would close the file under position().
    handle: object = None


def detect_encoding(raw: BinaryIO) -> str:
    """The encoding of a CSV file (see the module doc); ``raw`` is rewound."""
    raw.seek(0)
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "cp1252"):
        if _decodes(raw, encoding):
            return encoding
    return "latin-1"


def _decodes(raw: BinaryIO, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    raw.seek(0)
    try:
        while block := raw.read(_PROBE):
            decoder.decode(block)
        decoder.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False
    finally:
        raw.seek(0)


def open_table(raw: BinaryIO, *, encoding: str = "auto") -> Table:
    """Open ``raw`` (CSV or XLSX, told apart by content) as a :class:`Table`.

    Raises :class:`UnreadableFile` with a message for the user.
    """
    raw.seek(0)
    if raw.read(4) == XLSX_MAGIC:
        raw.seek(0)
        return _open_xlsx(raw)
    raw.seek(0)
    return _open_csv(raw, encoding)


def _open_csv(raw: BinaryIO, encoding: str) -> Table:
    if encoding in ("", "auto"):
        encoding = detect_encoding(raw)
    elif not _decodes(raw, encoding):
        raise UnreadableFile(
            f"The file is not valid {encoding}: choose another encoding, or "
            "“Detect”, and upload it again."
        )
    elif encoding == "utf-8":
        encoding = "utf-8-sig"  # a BOM is not part of the first column's name
    text = io.TextIOWrapper(raw, encoding=encoding, newline="")
    first = text.readline()
    if not first.strip():
        raise UnreadableFile(
            "The file is empty or its first line is blank: the first line must "
            "name the columns (phone, first_name, ...)."
        )
    if "\x00" in first:
        raise UnreadableFile(
            "The file looks like UTF-16 without a byte-order mark: choose the "
            "UTF-16 encoding and upload it again."
        )
    delimiter = max(DELIMITERS, key=first.count)
    header = next(csv.reader([first], delimiter=delimiter))

    def rows() -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(text, delimiter=delimiter)
        line_end = 1
        try:
            for cells in reader:
                start, line_end = line_end + 1, reader.line_num + 1
                yield start, cells
        except csv.Error as exc:
            raise UnreadableFile(
                f"Line {line_end + 1} cannot be read as CSV ({exc}). Check its quotes."
            ) from None

    return Table("csv", encoding, header, rows(), raw.tell, handle=text)


def _xlsx_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone typed as a number
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def _open_xlsx(raw: BinaryIO) -> Table:
    import zipfile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(raw, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise UnreadableFile(
            f"The file looks like an Excel workbook but cannot be opened ({exc}). "
            "Save it again as .xlsx, or as CSV."
        ) from None
    sheet = workbook.worksheets[0]
    total_rows = sheet.max_row or 0
    iterator = sheet.iter_rows(values_only=True)
    try:
        header = [_xlsx_cell(v) for v in next(iterator)]
    except StopIteration:
        raise UnreadableFile("The first sheet of the workbook is empty.") from None
    state = {"line": 1}

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for line, values in enumerate(iterator, start=2):
                state["line"] = line
                yield line, [_xlsx_cell(v) for v in values]
        finally:
            workbook.close()

    size = raw.seek(0, io.SEEK_END)

    def position() -> int:
        # openpyxl streams the sheet's XML: estimate by rows of the sheet.
        return int(size * state["line"] / total_rows) if total_rows else 0

    return Table("xlsx", "", header, rows(), position)
