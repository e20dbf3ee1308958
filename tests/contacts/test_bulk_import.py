"""The bulk contact import: formats, encodings, the row report, all or nothing."""

from __future__ import annotations

import codecs

import pytest
from django.core.exceptions import ValidationError

from contacts.importing import common, services
from contacts.importing.applying import Applier
from contacts.importing.models import (
    ImportChange,
    ImportFileChunk,
    ImportIssue,
    ImportJob,
    ImportRow,
)
from contacts.importing.services import import_apply, import_cancel, import_confirm
from contacts.importing.staging import Stager
from contacts.models import Contact, ContactList, ListMembership
from tests.contacts.import_helpers import issues, run_import, stage, upload, xlsx

pytestmark = pytest.mark.django_db

S = ImportJob.Status


def _contacts() -> dict[str, tuple]:
    return {
        c.phone: (c.first_name, c.last_name, c.email, c.custom_fields)
        for c in Contact.objects.all()
    }


def _lists(phone: str) -> set[str]:
    return set(ContactList.objects.filter(contacts__phone=phone).values_list("name", flat=True))


def test_csv_import_normalises_phones_adds_lists_and_keeps_extra_columns():
    ContactList.objects.create(name="VIP")
    ContactList.objects.create(name="News")
    job = run_import(
        b"phone,first_name,last_name,lists,store\n"
        b"0400 123 456,Ann,Lee,VIP;News,Manly\n"
        b"+44 7400 123190,Bob,,News,\n"
    )
    assert job.status == S.DONE, issues(job)
    assert (job.rows_total, job.rows_new, job.rows_applied) == (2, 2, 2)
    assert _contacts()["+61400123456"] == ("Ann", "Lee", "", {"store": "Manly"})
    assert _lists("+61400123456") == {"VIP", "News"}
    assert _lists("+447400123190") == {"News"}
    # Nothing of the job's scaffolding is left once the worker cleaned up.
    services.import_clean(job_id=job.pk)
    assert not ImportRow.objects.exists() and not ImportChange.objects.exists()
    assert not ImportFileChunk.objects.exists()


def test_reimport_updates_by_e164_merges_custom_fields_and_leaves_absent_columns():
    Contact.objects.create(
        phone="+61400123456", first_name="Old", email="ann@example.com", custom_fields={"a": "1"}
    )
    job = run_import(b"phone,first_name,store\n+61 400 123 456,New,Manly\n")
    assert job.status == S.DONE
    assert (job.rows_new, job.rows_total) == (0, 1)
    assert Contact.objects.count() == 1
    assert _contacts()["+61400123456"] == (
        "New",
        "",
        "ann@example.com",  # no email column: kept
        {"a": "1", "store": "Manly"},
    )


def test_target_list_adds_everyone():
    target = ContactList.objects.create(name="Imported")
    job = run_import(b"phone\n0400123456\n0400123457\n", target_list=target)
    assert job.status == S.DONE
    assert set(target.contacts.values_list("phone", flat=True)) == {"+61400123456", "+61400123457"}


def test_xlsx_file_is_read_including_numbers_typed_as_numbers():
    content = xlsx(
        [
            ["Phone", "First name", "Surname", "Store"],
            [61400123456, "Ann", "Lee", "Manly"],
            ["0400 123 457", "Zoë", None, 42],
        ]
    )
    job = run_import(content, name="contacts.xlsx")
    assert job.status == S.DONE, issues(job)
    assert job.detected_encoding == "XLSX"
    assert _contacts() == {
        "+61400123456": ("Ann", "Lee", "", {"Store": "Manly"}),
        "+61400123457": ("Zoë", "", "", {"Store": "42"}),  # header names kept as written
    }


def test_xlsx_issues_carry_the_sheet_row_number():
    job = stage(xlsx([["phone"], ["0400123456"], ["nope"]]), name="c.xlsx")
    assert job.status == S.INVALID
    assert [(line, column, value) for line, column, value, _ in issues(job)] == [
        (3, "phone", "nope")
    ]


def test_latin1_file_is_detected():
    content = "phone,first_name,last_name\n0400123456,Zoë,Müller\n".encode("latin-1")
    job = run_import(content)
    assert job.status == S.DONE, issues(job)
    assert job.detected_encoding in ("cp1252", "latin-1")
    assert _contacts()["+61400123456"][:2] == ("Zoë", "Müller")


def test_windows_1252_euro_sign_and_semicolon_separator():
    content = "phone;first_name;note\n0400123456;Chloé;10 €\n".encode("cp1252")
    job = run_import(content)
    assert job.status == S.DONE, issues(job)
    assert _contacts()["+61400123456"] == ("Chloé", "", "", {"note": "10 €"})


def test_utf16_file_with_bom_is_detected_tab_separated_as_excel_saves_it():
    text = "phone\tfirst_name\n0400123456\tŁódź\n0400123457\t李\n"
    job = run_import(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert job.status == S.DONE, issues(job)
    assert job.detected_encoding == "utf-16"
    assert _contacts()["+61400123456"][0] == "Łódź"
    assert _contacts()["+61400123457"][0] == "李"


def test_utf8_bom_is_not_part_of_the_first_column_name():
    job = run_import(codecs.BOM_UTF8 + "phone,first_name\n0400123456,Zoë\n".encode())
    assert job.status == S.DONE, issues(job)
    assert _contacts()["+61400123456"][0] == "Zoë"


def test_a_chosen_encoding_that_does_not_fit_says_so():
    job = stage("phone,first_name\n0400123456,李\n".encode("utf-16"), encoding="utf-8")
    assert job.status == S.INVALID
    ((line, _column, _value, reason),) = issues(job)
    assert line == 1 and "not valid utf-8" in reason and "choose another encoding" in reason


def test_a_file_over_the_size_limit_is_refused_with_a_clear_error(settings):
    settings.CONTACT_IMPORT_MAX_BYTES = 100
    with pytest.raises(ValidationError) as exc:
        services.import_create(upload=upload(b"phone\n" + b"0400123456\n" * 20), user=None)
    assert "the largest accepted is 100 bytes" in exc.value.messages[0]
    assert "Split it" in exc.value.messages[0]
    assert not ImportJob.objects.exists()


def test_duplicates_within_a_file_are_reported_and_nothing_is_imported():
    job = stage(
        b"phone,first_name\n0400123456,Ann\n0400123457,Bob\n+61 400 123 456,Annie\n0400123456,A\n"
    )
    assert job.status == S.INVALID
    report = issues(job)
    assert [(line, column, value) for line, column, value, _ in report] == [
        (4, "phone", "+61400123456"),
        (5, "phone", "+61400123456"),
    ]
    assert "already on line 2" in report[0][3]
    assert not Contact.objects.exists()
    assert not ImportRow.objects.exists()  # staged rows dropped


def test_bad_rows_are_reported_with_file_lines_column_value_and_reason():
    ContactList.objects.create(name="VIP")
    content = (
        b"phone,first_name,email,lists,custom_fields\n"
        b'0400123456,"Two\nlines",,VIP,\n'  # lines 2-3
        b"0400 12,Short,,,\n"  # line 4
        b"0400123458,Typo,,VPI,\n"  # line 5
        b"0400123459,Mail,not-an-email,,\n"  # line 6
        b"\n"  # line 7: blank, ignored
        b'0400123460,Json,,,"{""a"": 1"\n'  # line 8
        b",Nobody,,,\n"  # line 9
    )
    job = stage(content)
    assert job.status == S.INVALID
    report = issues(job)
    assert [(line, column) for line, column, _value, _reason in report] == [
        (4, "phone"),
        (5, "lists"),
        (6, "email"),
        (8, "custom_fields"),
        (9, "phone"),
    ]
    assert report[0][2] == "0400 12" and "not a valid phone number" in report[0][3]
    assert "Unknown contact list(s): VPI" in report[1][3]
    assert report[4][3] == "A phone number is required."
    assert job.issues_total == 5 and job.rows_read == 6
    assert "nothing was imported" in job.status_detail
    assert not Contact.objects.exists()


def test_a_file_without_a_phone_column_is_refused():
    job = stage(b"name,email\nAnn,a@example.com\n")
    assert job.status == S.INVALID
    assert "No phone column" in issues(job)[0][3]


def test_cancel_before_confirming_leaves_nothing():
    job = stage(b"phone\n0400123456\n")
    assert job.status == S.READY
    job = import_cancel(job=job, user=None)
    assert job.status == S.CANCELLED
    services.import_clean(job_id=job.pk)
    assert not Contact.objects.exists() and not ImportRow.objects.exists()
    with pytest.raises(ValidationError):
        import_confirm(job=job, user=None)


def test_cancel_while_reading_leaves_nothing(monkeypatch):
    monkeypatch.setattr(common, "CHUNK_ROWS", 2)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 2)
    job = services.import_create(
        upload=upload(b"phone\n" + b"".join(b"04001234%02d\n" % i for i in range(10))), user=None
    )
    flushes = []
    real_flush = Stager.flush

    def flush_then_cancel(self, *, force=False):
        flushes.append(1)
        if len(flushes) == 2:
            import_cancel(job=job, user=None)
        return real_flush(self, force=force)

    monkeypatch.setattr(Stager, "flush", flush_then_cancel)
    job = services.import_stage(job_id=job.pk)
    assert job.status == S.CANCELLED
    assert not ImportRow.objects.exists() and not ImportFileChunk.objects.exists()
    assert not Contact.objects.exists()


def test_cancel_while_applying_undoes_everything(monkeypatch):
    vip = ContactList.objects.create(name="VIP")
    old = Contact.objects.create(phone="+61400123400", first_name="Old", custom_fields={"k": "v"})
    ListMembership.objects.create(contact=old, contact_list=vip)
    before = _contacts()
    memberships = set(ListMembership.objects.values_list("contact_id", "contact_list_id"))
    monkeypatch.setattr(common, "CHUNK_ROWS", 3)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 3)
    rows = b"".join(b"04001234%02d,New,VIP,x\n" % i for i in range(10))
    job = stage(b"phone,first_name,lists,extra\n" + rows)
    assert job.status == S.READY and job.rows_new == 9
    import_confirm(job=job, user=None)
    chunks = []
    real_apply = Applier.apply

    def apply_then_cancel(self, rows):
        real_apply(self, rows)
        chunks.append(len(rows))
        if len(chunks) == 2:
            import_cancel(job=job, user=None)

    monkeypatch.setattr(Applier, "apply", apply_then_cancel)
    job = import_apply(job_id=job.pk)
    assert chunks == [3, 3]  # two chunks went in before the cancel was seen
    assert job.status == S.CANCELLED
    assert _contacts() == before
    assert set(ListMembership.objects.values_list("contact_id", "contact_list_id")) == memberships


def test_an_error_while_applying_undoes_what_was_applied(monkeypatch):
    monkeypatch.setattr(common, "CHUNK_ROWS", 2)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 2)
    job = stage(b"phone\n0400123456\n0400123457\n0400123458\n")
    import_confirm(job=job, user=None)
    real_apply = Applier.apply
    calls = []

    def apply_then_fail(self, rows):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real_apply(self, rows)

    monkeypatch.setattr(Applier, "apply", apply_then_fail)
    job = import_apply(job_id=job.pk)
    assert job.status == S.FAILED and "disk full" in job.status_detail
    assert not Contact.objects.exists()


def test_apply_resumes_after_a_time_slice_without_applying_twice(monkeypatch):
    monkeypatch.setattr(common, "CHUNK_ROWS", 2)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 2)
    monkeypatch.setattr(services, "_enqueue", lambda task, job_id: None)
    job = stage(b"phone\n0400123456\n0400123457\n0400123458\n")
    import_confirm(job=job, user=None)
    job = import_apply(job_id=job.pk, time_slice=-1)  # stops before the first chunk
    assert job.status == S.APPLYING and job.rows_applied == 0
    job = import_apply(job_id=job.pk)
    assert job.status == S.DONE and job.rows_applied == 3
    assert Contact.objects.count() == 3
    assert ImportChange.objects.filter(job=job).count() == 3


def test_issue_report_is_capped_per_chunk_not_held_in_memory(monkeypatch):
    monkeypatch.setattr(common, "CHUNK_ROWS", 5)
    monkeypatch.setattr(common, "CHUNK_ROWS_POSTGRESQL", 5)
    job = stage(b"phone\n" + b"bad\n" * 23)
    assert job.status == S.INVALID
    assert ImportIssue.objects.filter(job=job).count() == job.issues_total == 23


def test_a_job_whose_worker_stopped_can_still_be_cancelled():
    job = services.import_create(upload=upload(b"phone\n0400123456\n"), user=None)
    old = job.updated_at - services.STALE_AFTER * 2
    ImportJob.objects.filter(pk=job.pk).update(status=S.STAGING, updated_at=old)
    job = import_cancel(job=job, user=None)
    assert job.status == S.CANCELLED
    assert "worker had stopped" in job.status_detail
