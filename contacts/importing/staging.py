"""Staging: read a table, check every row, write the good rows to the
staging table and the problems as issues, a chunk per short transaction;
then find the duplicates within the file with one grouped query."""

from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import Count, Min
from django.utils import timezone

from contacts.importing import common
from contacts.importing.models import ImportIssue, ImportJob, ImportRow
from contacts.importing.reader import Table
from contacts.models import ContactList
from contacts.phones import PhoneNormalizer

PHONE_ALIASES = {"phone", "mobile", "phone_number", "mobile_number", "number", "msisdn", "cell"}
COLUMN_ALIASES = {
    "firstname": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "e-mail": "email",
    "email_address": "email",
    "list": "lists",
}
TEXT_LIMITS = {"first_name": 100, "last_name": 100, "email": 254}
STAGED_COLUMNS = (
    "job_id",
    "line",
    "phone",
    "first_name",
    "last_name",
    "email",
    "custom_fields",
    "list_ids",
)
STAGED_TABLE = connection.ops.quote_name(ImportRow._meta.db_table)
KNOWN_COLUMNS = {"phone", "first_name", "last_name", "email", "lists", "custom_fields"}


#: ``json.dumps(value, ensure_ascii=False)`` without building an encoder per call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode

# The common shape of an e-mail address, plain ASCII: a strict subset of what
# Django's ``validate_email`` accepts (its dot-atom local part; host labels of
# letters, digits and inner hyphens, 1 to 63 long; a top-level domain of 2 to
# 63 letters), matched with one precompiled regex.
_PLAIN_EMAIL = re.compile(
    r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+(?:\.[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def is_email(value: str) -> bool:
    """Whether Django's ``validate_email`` accepts ``value``: the same answer
    for every string (tests/contacts/test_import_email_check.py compares them).

    A value of the plain shape above is accepted at once; anything else
    (quoted local parts, IDN hosts, IP literals, ``localhost``, errors) is
    left to Django's validator, whose lazily compiled regexes cost several
    times more per call.
    """
    if len(value) <= 320 and _PLAIN_EMAIL.fullmatch(value) is not None:
        return True
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def _canonical_column(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    if key in PHONE_ALIASES:
        return "phone"
    return COLUMN_ALIASES.get(key, key)


class Stager:
    """Stages the rows of one table (one instance per run)."""

    def __init__(self, job: ImportJob, table: Table) -> None:
        self.job = job
        self.job_id = job.pk  # once: the model's pk property costs a call per row
        self.table = table
        self.normalize = PhoneNormalizer(job.region or None)
        self.list_ids: dict[str, int | None] = {}
        self.list_cells: dict[str, tuple[str, list[str]]] = {}
        self.rows: list[tuple] = []
        self.issues: list[ImportIssue] = []
        self.rows_read = 0
        self.issues_total = 0

    def issue(self, line: int, column: str, value: str, reason: str) -> None:
        self.issues.append(
            ImportIssue(
                job_id=self.job.pk,
                line=line,
                column=column[:100],
                value=(value or "")[:255],
                reason=reason[:500],
            )
        )

    def header(self) -> bool:
        """Map the header; False (with issues) when it cannot be used."""
        names = [_canonical_column(h) for h in self.table.header]
        seen: dict[str, int] = {}
        for position, name in enumerate(names):
            if name and name in seen:
                self.issue(
                    1,
                    self.table.header[position],
                    "",
                    f"The column “{name}” appears twice (columns {seen[name] + 1} and "
                    f"{position + 1}): keep one.",
                )
            seen.setdefault(name, position)
        if "phone" not in seen:
            self.issue(
                1,
                "",
                ", ".join(self.table.header)[:255],
                "No phone column: the first line must name the columns, and one of them "
                "must be “phone” (or mobile, number).",
            )
        self.names = names
        self.phone_at = seen.get("phone")
        self.known = {
            name: seen[name]
            for name in ("first_name", "last_name", "email", "lists", "custom_fields")
            if name in seen
        }
        self.extra = [
            (position, self.table.header[position].strip())
            for position, name in enumerate(names)
            if name and name not in KNOWN_COLUMNS and seen[name] == position
        ]
        self.width = len(names)
        columns = [name for name in ("first_name", "last_name", "email") if name in seen]
        if self.extra or "custom_fields" in seen:
            columns.append("custom_fields")
        ImportJob.objects.filter(pk=self.job.pk).update(columns=columns)
        self.job.columns = columns
        return not self.issues

    def run(self) -> None:
        if not self.header():
            self.flush(force=True)
            return
        # What row() needs, once per file rather than once per row.
        self.texts = [
            (name, self.known[name], limit)
            for name, limit in TEXT_LIMITS.items()
            if name in self.known
        ]
        self.custom_at = self.known.get("custom_fields")
        self.lists_at = self.known.get("lists")
        chunk = common.chunk_rows()
        for line, cells in self.table.rows:
            self.row(line, cells)
            if len(self.rows) + len(self.issues) >= chunk:
                self.flush()
        self.flush(force=True)

    def row(self, line: int, cells: list[str]) -> None:
        """Check one row: a staged row when it is good, issues otherwise.

        The hot loop of an import (every row of the file): plain tuples and
        locals, each check in the order a person reads the row.
        """
        if not any(cells):
            return  # a blank line
        self.rows_read += 1
        ok = True
        count = len(cells)
        width = self.width
        if count > width and any(cells[width:]):
            ok = False
            self.issue(
                line,
                "",
                ",".join(cells[width:]),
                f"This row has {count} cells but the header names {width} columns: "
                "a value probably contains the separator; put it in quotes.",
            )
        raw_phone = cells[self.phone_at].strip() if self.phone_at < count else ""
        try:
            phone = self.normalize(raw_phone)
        except ValidationError as exc:
            ok = False
            phone = ""
            self.issue(line, self.table.header[self.phone_at], raw_phone, exc.messages[0])
        values = {"first_name": "", "last_name": "", "email": ""}
        for name, at, limit in self.texts:
            value = cells[at].strip() if at < count else ""
            if len(value) > limit:
                ok = False
                self.issue(line, name, value, f"Longer than {limit} characters.")
            elif name == "email" and value and not is_email(value):
                ok = False
                self.issue(line, name, value, "Not an email address.")
            values[name] = value
        custom: dict[str, str] = {}
        at = self.custom_at
        if at is not None and at < count and cells[at].strip():
            try:
                parsed = json.loads(cells[at])
            except json.JSONDecodeError as exc:
                parsed = None
                ok = False
                self.issue(line, "custom_fields", cells[at], f"Not JSON: {exc.msg}.")
            if isinstance(parsed, dict):
                custom.update(parsed)
            elif parsed is not None:
                ok = False
                self.issue(line, "custom_fields", cells[at], 'Must be a JSON object: {"a": "b"}.')
        for position, name in self.extra:
            if position < count and cells[position] != "":
                custom[name] = cells[position]
        at = self.lists_at
        list_ids = self.lists(line, cells[at]) if at is not None and at < count else ""
        if list_ids is None:
            ok = False
        if ok:
            self.rows.append(
                (
                    self.job_id,
                    line,
                    phone,
                    values["first_name"],
                    values["last_name"],
                    values["email"],
                    _to_json(custom) if custom else "",
                    list_ids,
                )
            )

    def lists(self, line: int, cell: str) -> str | None:
        """The list ids of a ``lists`` cell, as staged (``"3;7"``), or None
        (with an issue) when it names a list that does not exist.

        Answers are kept per distinct cell text: a file names a few lists
        on many rows.
        """
        answer = self.list_cells.get(cell)
        if answer is None:
            answer = self.list_cells[cell] = self._lists(cell)
        ids, missing = answer
        if missing:
            self.issue(
                line,
                "lists",
                cell,
                f"Unknown contact list(s): {', '.join(missing)}. Create them under Contact "
                "lists first, or correct the spelling.",
            )
            return None
        return ids

    def _lists(self, cell: str) -> tuple[str, list[str]]:
        names = [n.strip() for n in cell.split(common.LIST_SEPARATOR) if n.strip()]
        unknown = [n for n in names if n not in self.list_ids]
        if unknown:
            found = dict(ContactList.objects.filter(name__in=unknown).values_list("name", "id"))
            for name in unknown:
                self.list_ids[name] = found.get(name)
        missing = [n for n in names if self.list_ids[n] is None]
        ids = sorted({self.list_ids[n] for n in names if self.list_ids[n] is not None})
        return common.LIST_SEPARATOR.join(str(i) for i in ids), missing

    def flush(self, *, force: bool = False) -> None:
        if not (self.rows or self.issues or force):
            return
        with transaction.atomic():
            if common.cancel_requested(self.job.pk):
                raise common.Cancelled
            with connection.cursor() as cursor:
                common.load_rows(cursor, STAGED_TABLE, [*STAGED_COLUMNS], self.rows)
            common.add_issues(self.job, self.issues)
            self.issues_total += len(self.issues)
            ImportJob.objects.filter(pk=self.job.pk).update(
                bytes_read=self.table.position(),
                rows_read=self.rows_read,
                issues_total=self.issues_total,
                updated_at=timezone.now(),
            )
        self.rows, self.issues = [], []


def report_duplicates(job: ImportJob) -> None:
    """An issue for every row whose phone an earlier row of the file has."""
    groups = (
        ImportRow.objects.filter(job=job)
        .values("phone")
        .annotate(n=Count("id"), first=Min("line"))
        .filter(n__gt=1)
        .order_by()
    )
    batch: dict[str, int] = {}

    def flush() -> None:
        issues = [
            ImportIssue(
                job=job,
                line=line,
                column="phone",
                value=phone,
                reason=f"{phone} is already on line {batch[phone]}: a number may appear once "
                "in a file. Merge the rows or remove one.",
            )
            for phone, line in ImportRow.objects.filter(job=job, phone__in=list(batch))
            .values_list("phone", "line")
            .order_by("line")
            if line != batch[phone]
        ]
        common.add_issues(job, issues)
        batch.clear()

    for group in groups.iterator(chunk_size=common.chunk_rows()):
        batch[group["phone"]] = group["first"]
        if len(batch) >= 500:
            flush()
    if batch:
        flush()
