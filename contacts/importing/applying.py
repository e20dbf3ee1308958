"""Applying: upsert the staged contacts and add their memberships, a chunk
per transaction together with what undoing it needs; and the undo."""

from __future__ import annotations

import json

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from contacts.importing import common
from contacts.importing.models import ImportChange, ImportJob, ImportRow
from contacts.models import Contact, ListMembership

#: Memberships per INSERT (3 parameters each; SQLite allows 32,766).
MEMBERSHIPS_PER_INSERT = 5000


class Applier:
    """Applies the staged rows of one job, chunk by chunk."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.columns = [c for c in job.columns if c in ("first_name", "last_name", "email")]
        self.custom = "custom_fields" in job.columns
        self.target_list = job.target_list_id
        qn = connection.ops.quote_name
        table = qn(Contact._meta.db_table)
        self.contact_columns = [
            "phone",
            "first_name",
            "last_name",
            "email",
            "custom_fields",
            "created_at",
            "updated_at",
        ]
        updated = [*self.columns, *(["custom_fields"] if self.custom else []), "updated_at"]
        self.contact_sql = (
            f"INSERT INTO {table} ({', '.join(qn(f) for f in self.contact_columns)}) {{source}} "
            f"ON CONFLICT ({qn('phone')}) DO UPDATE SET "
            + ", ".join(f"{qn(f)} = excluded.{qn(f)}" for f in updated)
            + f" RETURNING {qn('id')}, {qn('phone')}"
        )
        membership = qn(ListMembership._meta.db_table)
        self.membership_sql = (
            f"INSERT INTO {membership} ({qn('contact_id')}, {qn('contact_list_id')}, "
            f"{qn('added_at')}) {{source}} "
            f"ON CONFLICT ({qn('contact_list_id')}, {qn('contact_id')}) DO NOTHING "
            f"RETURNING {qn('contact_id')}, {qn('contact_list_id')}"
        )
        self.json_field = Contact._meta.get_field("custom_fields")
        self.lookup_sql = (
            f"SELECT {qn('phone')}, {qn('first_name')}, {qn('last_name')}, {qn('email')}, "
            f"{qn('custom_fields')} FROM {table} WHERE {qn('phone')} "
        )

    def next_chunk(self) -> bool:
        cursor_before = (
            ImportJob.objects.filter(pk=self.job.pk).values_list("apply_cursor", flat=True).get()
        )
        rows = list(
            ImportRow.objects.filter(job_id=self.job.pk, id__gt=cursor_before)
            .order_by("id")
            .values_list(
                "id", "phone", "first_name", "last_name", "email", "custom_fields", "list_ids"
            )[: common.CHUNK_ROWS]
        )
        if not rows:
            return False
        with transaction.atomic():
            # First, so two workers never apply the same chunk: the second
            # finds the cursor moved (PostgreSQL waits on the row lock).
            moved = ImportJob.objects.filter(pk=self.job.pk, apply_cursor=cursor_before).update(
                apply_cursor=rows[-1][0], updated_at=timezone.now()
            )
            if not moved:
                raise common.Superseded
            self.apply(rows)
        return True

    def apply(self, rows: list[tuple]) -> None:
        phones = [row[1] for row in rows]
        existing = {}
        with connection.cursor() as cursor:
            # Raw: the ORM's IN lookup prepares each of the 2,000 values in Python.
            if connection.vendor == "postgresql":
                cursor.execute(self.lookup_sql + "= ANY(%s)", [phones])
            else:
                cursor.execute(self.lookup_sql + f"IN ({', '.join(['%s'] * len(phones))})", phones)
            for phone, first, last, email, custom in cursor.fetchall():
                custom = self.json_field.from_db_value(custom, None, connection)
                existing[phone] = (first, last, email, custom)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        contacts: list[tuple] = []
        previous: dict[str, str] = {}
        for _id, phone, first, last, email, custom_text, _lists in rows:
            before = existing.get(phone)
            if before is None:
                values = {"first_name": "", "last_name": "", "email": "", "custom_fields": {}}
            else:
                values = dict(zip(common.CONTACT_FIELDS, before, strict=True))
                previous[phone] = json.dumps(values, ensure_ascii=False)
            file_values = {"first_name": first, "last_name": last, "email": email}
            for column in self.columns:
                values[column] = file_values[column]
            custom = values["custom_fields"] or {}
            if not (self.custom and custom_text):
                custom_json = json.dumps(custom, ensure_ascii=False) if custom else "{}"
            elif not custom:
                custom_json = custom_text  # already a JSON object: no need to parse it
            else:
                custom_json = json.dumps({**custom, **json.loads(custom_text)}, ensure_ascii=False)
            # JSON as text: SQLite stores it, PostgreSQL casts it to jsonb.
            contacts.append(
                (
                    phone,
                    values["first_name"],
                    values["last_name"],
                    values["email"],
                    custom_json,
                    now,
                    now,
                )
            )
        ids = {
            phone: contact_id
            for contact_id, phone in _returning(
                self.contact_sql, Contact, self.contact_columns, contacts
            )
        }
        wanted: list[tuple] = []
        for _id, phone, *_rest, list_ids in rows:
            targets = {int(i) for i in list_ids.split(common.LIST_SEPARATOR) if i}
            if self.target_list:
                targets.add(self.target_list)
            for list_id in sorted(targets):
                wanted.append((ids[phone], list_id, now))
        added: dict[int, list[int]] = {}
        columns = ["contact_id", "contact_list_id", "added_at"]
        for start in range(0, len(wanted), MEMBERSHIPS_PER_INSERT):
            part = wanted[start : start + MEMBERSHIPS_PER_INSERT]
            for contact_id, list_id in _returning(
                self.membership_sql, ListMembership, columns, part
            ):
                added.setdefault(contact_id, []).append(list_id)
        changes = [
            (
                self.job.pk,
                ids[phone],
                phone not in previous,
                previous.get(phone, ""),
                common.LIST_SEPARATOR.join(str(i) for i in sorted(added.get(ids[phone], ()))),
            )
            for _id, phone, *_rest in rows
        ]
        common.insert_rows(
            ImportChange, ["job_id", "contact_id", "created", "previous", "lists_added"], changes
        )
        ImportJob.objects.filter(pk=self.job.pk).update(rows_applied=F("rows_applied") + len(rows))


def _returning(template: str, model, columns: list[str], rows: list[tuple]) -> list[tuple]:
    """Run ``template`` with its ``{source}`` made of ``rows``; its RETURNING rows."""
    source, params = common.rows_source(model, columns, rows)
    with connection.cursor() as cursor:
        cursor.execute(template.format(source=source), params)
        return cursor.fetchall()


def undo(job: ImportJob) -> None:
    """Undo every recorded change of ``job``, newest first, a chunk at a time."""
    fields = common.CONTACT_FIELDS
    changes = ImportChange.objects.filter(job=job)
    while True:
        chunk = list(
            changes.order_by("-id").values_list(
                "id", "contact_id", "created", "previous", "lists_added"
            )[: common.CHUNK_ROWS]
        )
        if not chunk:
            return
        with transaction.atomic():
            created = [contact_id for _id, contact_id, was_new, _p, _l in chunk if was_new]
            restored = [
                Contact(pk=contact_id, **json.loads(previous))
                for _id, contact_id, was_new, previous, _l in chunk
                if not was_new and previous
            ]
            by_list: dict[int, list[int]] = {}
            for _id, contact_id, was_new, _p, lists_added in chunk:
                if not was_new:
                    for list_id in filter(None, lists_added.split(common.LIST_SEPARATOR)):
                        by_list.setdefault(int(list_id), []).append(contact_id)
            for list_id, contact_ids in by_list.items():
                ListMembership.objects.filter(
                    contact_list_id=list_id, contact_id__in=contact_ids
                ).delete()
            if restored:
                Contact.objects.bulk_update(restored, fields, batch_size=500)
            if created:
                Contact.objects.filter(pk__in=created).delete()
            ImportChange.objects.filter(pk__in=[c[0] for c in chunk]).delete()
            ImportJob.objects.filter(pk=job.pk).update(
                rows_applied=Greatest(F("rows_applied") - len(chunk), 0),
                apply_cursor=0,
            )
