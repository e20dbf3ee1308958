"""The import's fast paths give the answers of the plain ones: list names
read once per distinct cell, many rows a statement (sliced under SQLite's
parameter limit), upserts from a chunk table, undo records per chunk."""

from __future__ import annotations

import pytest

from contacts.importing import common
from contacts.importing.models import ImportChange, ImportJob
from contacts.importing.services import import_cancel
from contacts.models import Contact, ContactList, ListMembership
from tests.contacts.import_helpers import issues, run_import, stage

pytestmark = pytest.mark.django_db

S = ImportJob.Status


def test_an_unknown_list_named_on_several_rows_is_reported_on_each():
    ContactList.objects.create(name="VIP")
    job = stage(
        b"phone,lists\n0400123456,VPI\n0400123457,VIP\n0400123458,VPI\n0400123459,VIP;VPI\n"
    )
    assert job.status == S.INVALID
    assert [(line, column, value) for line, column, value, _ in issues(job)] == [
        (2, "lists", "VPI"),
        (4, "lists", "VPI"),
        (5, "lists", "VIP;VPI"),
    ]


def test_a_list_created_between_two_imports_is_found(monkeypatch):
    # The cell cache lives for one staging run, not longer.
    assert stage(b"phone,lists\n0400123456,New\n").status == S.INVALID
    ContactList.objects.create(name="New")
    assert stage(b"phone,lists\n0400123456,New\n").status == S.READY


def test_many_statements_a_chunk_give_the_same_contacts_lists_and_undo(monkeypatch):
    # A few rows a statement on SQLite (PostgreSQL COPYs: the setting is
    # unused there), chunks of 7: every row lands once, with its list, and
    # the undo takes everything back.
    monkeypatch.setattr(common, "SQLITE_PARAMETERS", 12)
    monkeypatch.setattr(common, "CHUNK_ROWS", 7)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 7)
    vip = ContactList.objects.create(name="VIP")
    news = ContactList.objects.create(name="News")
    kept = Contact.objects.create(phone="+61400123403", first_name="Kept", email="k@example.com")
    ListMembership.objects.create(contact=kept, contact_list=vip)
    rows = b"".join(
        b"04001234%02d,Name%d,VIP%s,%d\n" % (i, i, b";News" if i % 2 else b"", i) for i in range(20)
    )
    job = run_import(b"phone,first_name,lists,store\n" + rows, target_list=news)
    assert job.status == S.DONE, issues(job)
    assert (job.rows_total, job.rows_new, job.rows_applied) == (20, 19, 20)
    contacts = {c.phone: c for c in Contact.objects.all()}
    assert len(contacts) == 20
    for i in range(20):
        contact = contacts[f"+614001234{i:02d}"]
        assert contact.first_name == f"Name{i}" and contact.custom_fields == {"store": str(i)}
        assert set(contact.lists.values_list("name", flat=True)) == {"VIP", "News"}
    # The contact that existed keeps its e-mail (no email column in the file).
    assert contacts["+61400123403"].email == "k@example.com"
    changes = ImportChange.objects.filter(job=job)
    assert changes.count() == 20
    assert changes.get(contact_id=kept.pk).lists_added == str(news.pk)  # VIP it already had
    assert not changes.get(contact_id=kept.pk).created


def test_undo_after_chunked_apply_restores_everything(monkeypatch):
    from contacts.importing.applying import Applier
    from contacts.importing.services import import_apply, import_confirm

    monkeypatch.setattr(common, "SQLITE_PARAMETERS", 12)
    monkeypatch.setattr(common, "CHUNK_ROWS", 4)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 4)
    vip = ContactList.objects.create(name="VIP")
    old = Contact.objects.create(
        phone="+61400123401", first_name="Old", last_name="O", custom_fields={"k": "v", "a": 1}
    )
    before = {
        c.phone: (c.first_name, c.last_name, c.email, c.custom_fields)
        for c in Contact.objects.all()
    }
    rows = b"".join(b"04001234%02d,N%d,VIP,x\n" % (i, i) for i in range(10))
    job = stage(b"phone,first_name,lists,a\n" + rows)
    import_confirm(job=job, user=None)
    seen = []
    real_apply = Applier.apply

    def apply_then_check(self, chunk):
        real_apply(self, chunk)
        seen.append(len(chunk))
        if len(seen) == 2:
            # The old contact was in the first chunk: merged custom fields.
            old.refresh_from_db()
            assert old.custom_fields == {"k": "v", "a": "x"} and old.last_name == "O"
            import_cancel(job=job, user=None)

    monkeypatch.setattr(Applier, "apply", apply_then_check)
    job = import_apply(job_id=job.pk)
    assert job.status == S.CANCELLED and seen == [4, 4]
    after = {
        c.phone: (c.first_name, c.last_name, c.email, c.custom_fields)
        for c in Contact.objects.all()
    }
    assert after == before
    assert not ListMembership.objects.filter(contact_list=vip).exists()


def test_postgresql_reads_a_staged_chunk_by_index_not_by_sorting_the_job(monkeypatch):
    # Without fresh statistics PostgreSQL fetched every remaining staged row
    # of the job and sorted them, for every chunk (quadratic in the file).
    from django.db import connection

    from contacts.importing.applying import Applier

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    monkeypatch.setattr(common, "CHUNK_ROWS", 50)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 50)
    rows = b"".join(b"04%08d\n" % i for i in range(30000))
    job = stage(b"phone\n" + rows)
    assert job.status == S.READY, issues(job)
    plan = Applier(job).chunk(0).explain()
    assert "Sort" not in plan, plan


def test_postgresql_looks_existing_contacts_up_by_index_even_with_stale_statistics():
    # The contacts grow during an import while their statistics still say
    # "empty": the planner hashed the chunk and scanned every contact, for
    # every chunk. (Inside the test's transaction autovacuum cannot analyze
    # them: the statistics stay stale, as in a big import.)
    from django.db import connection

    from contacts.importing.applying import Applier
    from contacts.importing.models import ImportRow

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    Contact.objects.bulk_create(
        [Contact(phone=f"+6149{i:07d}") for i in range(40_000)], batch_size=5000
    )
    job = stage(b"phone\n" + b"".join(b"04%08d\n" % i for i in range(2000)))
    assert job.status == S.READY, issues(job)
    ids = ImportRow.objects.filter(job=job).order_by("id").values_list("id", flat=True)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + Applier(job).lookup_sql, [job.pk, ids[0], ids[1999]])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on contacts_contact" not in plan, plan
