"""The preview of a checked import: its first staged rows as a table,
custom fields included, so people see what each contact will hold before
they confirm."""

from __future__ import annotations

import json
from dataclasses import dataclass

from contacts.importing.models import ImportJob, ImportRow

#: Rows shown on the job page (the rest are counted, not listed).
PREVIEW_ROWS = 20
#: The contact columns a file may have, in the order the table shows them.
CONTACT_COLUMNS = (
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("email", "Email"),
)


@dataclass(frozen=True, slots=True)
class ImportPreview:
    """``headers`` and ``rows`` line up: each row is its cells in header order
    (line and phone first, then the file's contact columns, then one column
    per custom field met in the shown rows, in the order first met)."""

    headers: list[str]
    rows: list[list[str]]
    more: int


def _custom(row: ImportRow) -> dict[str, object]:
    if not row.custom_fields:
        return {}
    try:
        value = json.loads(row.custom_fields)
    except json.JSONDecodeError:  # staged by us as JSON; never expected
        return {}
    return value if isinstance(value, dict) else {}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def import_preview(job: ImportJob, *, limit: int = PREVIEW_ROWS) -> ImportPreview | None:
    """The first ``limit`` staged rows of ``job``, or ``None`` when none is staged."""
    staged = list(ImportRow.objects.filter(job=job).order_by("id")[:limit])
    if not staged:
        return None
    columns = [(name, label) for name, label in CONTACT_COLUMNS if name in job.columns]
    customs = [_custom(row) for row in staged]
    keys: list[str] = []
    for custom in customs:
        keys.extend(key for key in custom if key not in keys)
    headers = ["Line", "Phone", *(label for _, label in columns), *keys]
    rows = [
        [
            str(row.line),
            row.phone,
            *(getattr(row, name) for name, _ in columns),
            *(_cell(custom.get(key)) for key in keys),
        ]
        for row, custom in zip(staged, customs, strict=True)
    ]
    total = ImportRow.objects.filter(job=job).count() if len(staged) == limit else len(staged)
    return ImportPreview(headers=headers, rows=rows, more=max(0, total - len(staged)))
