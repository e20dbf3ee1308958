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
from contacts.models import Contact, ContactList, ListMembership

LIST_SEP = common.LIST_SEPARATOR
#: ``json.dumps(value, ensure_ascii=False)`` without building an encoder per call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


class Applier:
    """Applies the staged rows of one job, chunk by chunk.

    Per chunk, in one transaction: move the job's cursor (so two workers
    never apply the same chunk), read the chunk's existing contacts (joined
    on the server with the staged rows, no list of phones sent), upsert the
    contacts with one ``INSERT ... ON CONFLICT ... RETURNING`` (rows COPYed
    into a temporary table on PostgreSQL, multi-row VALUES on SQLite: see
    :class:`~contacts.importing.common.ChunkTable`), add the memberships
    the same way, and write the undo records.
    """

    #: The temporary tables of one chunk on PostgreSQL (see ChunkTable).
    CONTACTS = "smsoffice_import_contacts"
    MEMBERSHIPS = "smsoffice_import_memberships"

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.columns = [c for c in job.columns if c in ("first_name", "last_name", "email")]
        self.custom = "custom_fields" in job.columns
        self.target_list = job.target_list_id
        # Which of first name, last name, e-mail the file has (and updates).
        self.has = tuple(name in self.columns for name in ("first_name", "last_name", "email"))
        qn = connection.ops.quote_name
        table = qn(Contact._meta.db_table)
        columns = ["phone", *common.CONTACT_FIELDS]
        self.contact_rows = common.ChunkTable(
            self.CONTACTS, {c: Contact._meta.get_field(c) for c in columns}
        )
        updated = [*self.columns, *(["custom_fields"] if self.custom else []), "updated_at"]
        self.contact_head = (
            f"INSERT INTO {table} ({self.contact_rows.names}, {qn('created_at')}, "
            f"{qn('updated_at')})"
        )
        self.contact_tail = (
            f" ON CONFLICT ({qn('phone')}) DO UPDATE SET "
            + ", ".join(f"{qn(f)} = excluded.{qn(f)}" for f in updated)
            + f" RETURNING {qn('id')}, {qn('phone')}"
        )
        membership = ListMembership._meta
        self.membership_rows = common.ChunkTable(
            self.MEMBERSHIPS,
            {"contact_id": Contact._meta.pk, "contact_list_id": ContactList._meta.pk},
        )
        self.membership_head = (
            f"INSERT INTO {qn(membership.db_table)} ({qn('contact_id')}, "
            f"{qn('contact_list_id')}, {qn('added_at')})"
        )
        self.membership_tail = (
            f" ON CONFLICT ({qn('contact_list_id')}, {qn('contact_id')}) DO NOTHING "
            f"RETURNING {qn('contact_id')}, {qn('contact_list_id')}"
        )
        self.json_field = Contact._meta.get_field("custom_fields")
        staged = qn(ImportRow._meta.db_table)
        fields = ", ".join(
            f"c.{qn(c)}" for c in ("phone", "first_name", "last_name", "email", "custom_fields")
        )
        chunk = f"r.{qn('job_id')} = %s AND r.{qn('id')} BETWEEN %s AND %s"
        if connection.vendor == "postgresql":
            # One index probe per staged row, whatever the statistics say: a
            # contacts table that grew during the import still looks empty
            # to the planner, which then scanned all of it for every chunk.
            # (LIMIT 1 keeps the subquery from being flattened into a join
            # the planner may hash; phone is unique.)
            self.lookup_sql = (
                f"SELECT {fields} FROM {staged} r CROSS JOIN LATERAL (SELECT * FROM {table} "
                f"WHERE {table}.{qn('phone')} = r.{qn('phone')} LIMIT 1) c WHERE {chunk}"
            )
        else:
            self.lookup_sql = (
                f"SELECT {fields} FROM {staged} r JOIN {table} c "
                f"ON c.{qn('phone')} = r.{qn('phone')} WHERE {chunk}"
            )
        self.changes_table = qn(ImportChange._meta.db_table)

    def chunk(self, cursor_before: int):
        """The staged rows after ``cursor_before``: the next chunk, in id order."""
        return (
            ImportRow.objects.filter(job_id=self.job.pk, id__gt=cursor_before)
            .order_by("id")
            .values_list(
                "id", "phone", "first_name", "last_name", "email", "custom_fields", "list_ids"
            )[: common.chunk_rows()]
        )

    def next_chunk(self) -> bool:
        cursor_before = (
            ImportJob.objects.filter(pk=self.job.pk).values_list("apply_cursor", flat=True).get()
        )
        rows = list(self.chunk(cursor_before))
        if not rows:
            return False
        with transaction.atomic():
            # First, so two workers never apply the same chunk: the second
            # finds the cursor moved (PostgreSQL waits on the row lock).
            moved = ImportJob.objects.filter(pk=self.job.pk, apply_cursor=cursor_before).update(
                apply_cursor=rows[-1][0],
                rows_applied=F("rows_applied") + len(rows),
                updated_at=timezone.now(),
            )
            if not moved:
                raise common.Superseded
            self.apply(rows)
        return True

    def apply(self, rows: list[tuple]) -> None:
        """Apply ``rows`` (staged rows in id order: one whole chunk)."""
        to_json = _to_json
        with connection.cursor() as cursor:
            # The chunk's staged rows are the job's ids from the first to the
            # last: the server joins them with the contacts.
            cursor.execute(self.lookup_sql, [self.job.pk, rows[0][0], rows[-1][0]])
            # Custom fields stay JSON text (as the database returns them)
            # unless they have to be merged: most rows never parse them.
            existing = {
                phone: (first, last, email, custom if isinstance(custom, str) else to_json(custom))
                for phone, first, last, email, custom in cursor.fetchall()
            }
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        merge = self.custom
        contacts: list[tuple] = []
        previous: dict[str, str] = {}
        for _id, phone, first, last, email, custom_text, _lists in rows:
            before = existing.get(phone)
            if before is None:
                # A new contact: what the file says ("" for its absent columns).
                custom_json = custom_text if merge and custom_text else "{}"
                contacts.append((phone, first, last, email, custom_json))
                continue
            # What the undo restores: json.loads of it is the contact's fields.
            stored = before[3]
            previous[phone] = (
                f'{{"first_name": {to_json(before[0])}, "last_name": {to_json(before[1])}, '
                f'"email": {to_json(before[2])}, "custom_fields": {stored}}}'
            )
            # An existing contact: only the file's columns are updated (see
            # contact_tail); its custom fields are merged, the file's winning.
            if not (merge and custom_text):
                custom_json = stored  # not updated: its own value
            else:
                custom = self.json_field.from_db_value(stored, None, connection) or {}
                if not custom:
                    custom_json = custom_text  # already a JSON object: no need to parse it
                else:
                    custom_json = to_json({**custom, **json.loads(custom_text)})
            has_first, has_last, has_email = self.has
            contacts.append(
                (
                    phone,
                    first if has_first else before[0],
                    last if has_last else before[1],
                    email if has_email else before[2],
                    custom_json,
                )
            )
        with connection.cursor() as cursor:
            returned = self.contact_rows.insert(
                cursor, self.contact_head, contacts, [now, now], self.contact_tail
            )
            ids = {phone: contact_id for contact_id, phone in returned}
            wanted: list[tuple] = []
            target = self.target_list
            for _id, phone, *_rest, list_ids in rows:
                contact_id = ids[phone]
                if list_ids and LIST_SEP not in list_ids and not target:
                    wanted.append((contact_id, int(list_ids)))  # the usual: one list
                    continue
                targets = {int(i) for i in list_ids.split(LIST_SEP) if i}
                if target:
                    targets.add(target)
                wanted.extend((contact_id, list_id) for list_id in sorted(targets))
            added: dict[int, list[int]] = {}
            for contact_id, list_id in self.membership_rows.insert(
                cursor, self.membership_head, wanted, [now], self.membership_tail
            ):
                added.setdefault(contact_id, []).append(list_id)
            changes = []
            job_id = self.job.pk
            for _id, phone, *_rest in rows:
                contact_id = ids[phone]
                lists = added.get(contact_id)
                if not lists:
                    lists_added = ""
                elif len(lists) == 1:
                    lists_added = str(lists[0])
                else:
                    lists_added = LIST_SEP.join(str(i) for i in sorted(lists))
                changes.append(
                    (
                        job_id,
                        contact_id,
                        phone not in previous,
                        previous.get(phone, ""),
                        lists_added,
                    )
                )
            common.load_rows(
                cursor,
                self.changes_table,
                ["job_id", "contact_id", "created", "previous", "lists_added"],
                changes,
            )


def undo(job: ImportJob) -> None:
    """Undo every recorded change of ``job``, newest first, a chunk at a time."""
    fields = common.CONTACT_FIELDS
    common.refresh_statistics(ImportChange)  # read back a chunk at a time, newest first
    changes = ImportChange.objects.filter(job=job)
    while True:
        chunk = list(
            changes.order_by("-id").values_list(
                "id", "contact_id", "created", "previous", "lists_added"
            )[: common.chunk_rows()]
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
