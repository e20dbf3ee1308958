"""CSV import is all-or-nothing and says what is wrong with which row."""

from __future__ import annotations

import pytest
import tablib

from contacts.models import Contact, ContactList, OptOut
from contacts.resources import ContactResource, OptOutResource

pytestmark = pytest.mark.django_db


def _dataset(csv_text: str) -> tablib.Dataset:
    return tablib.Dataset().load(csv_text, format="csv")


def test_import_normalises_numbers_adds_lists_and_keeps_extra_columns():
    ContactList.objects.create(name="VIP")
    ContactList.objects.create(name="News")
    csv_text = (
        "phone,first_name,last_name,lists,store\n"
        "0400 123 456,Ann,Lee,VIP;News,Manly\n"
        "+44 7400 123190,Bob,,News,\n"
    )
    result = ContactResource().import_data(_dataset(csv_text), dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors()
    ann = Contact.objects.get(phone="+61400123456")
    assert (ann.first_name, ann.custom_fields) == ("Ann", {"store": "Manly"})
    assert set(ann.lists.values_list("name", flat=True)) == {"VIP", "News"}
    assert Contact.objects.get(phone="+447400123190").lists.get().name == "News"


def test_reimport_updates_by_e164_and_never_duplicates():
    Contact.objects.create(phone="+61400123456", first_name="Old")
    result = ContactResource().import_data(
        _dataset("phone,first_name\n+61 400 123 456,New\n"), dry_run=False
    )
    assert not result.has_validation_errors()
    assert Contact.objects.count() == 1
    assert Contact.objects.get().first_name == "New"


def test_a_file_with_bad_rows_writes_nothing_and_names_each_problem():
    ContactList.objects.create(name="VIP")
    csv_text = (
        "phone,first_name,lists\n0400 123 456,Good,VIP\n0400 12,Short,\n0400 123 457,Typo,VPI\n"
    )
    result = ContactResource().import_data(
        _dataset(csv_text), dry_run=False, use_transactions=True, raise_errors=False
    )
    assert result.has_validation_errors()
    problems = {
        invalid.number: " ".join(m for msgs in invalid.error_dict.values() for m in msgs)
        for invalid in result.invalid_rows
    }
    assert set(problems) == {2, 3}
    assert "'0400 12' is not a valid phone number" in problems[2]
    assert "Unknown contact list(s): VPI" in problems[3]
    assert Contact.objects.count() == 0  # the good row was not written either


def test_optout_import_marks_the_source_as_import():
    result = OptOutResource().import_data(
        _dataset("phone,reason,source\n0400 123 456,asked by email,manual\n"), dry_run=False
    )
    assert not result.has_validation_errors()
    optout = OptOut.objects.get()
    assert (optout.phone, optout.source) == ("+61400123456", "import")


def test_export_neutralises_spreadsheet_formulae(admin_client):
    Contact.objects.create(phone="+61400123456", first_name='=HYPERLINK("http://x")')
    response = admin_client.post(
        "/admin/contacts/contact/export/",
        {
            "format": "0",
            "resource": "0",
            "contactresource_phone": "on",
            "contactresource_first_name": "on",
        },
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "+61400123456" in body
    assert "=HYPERLINK" not in body.replace("'=HYPERLINK", "")


def test_admin_import_address_leads_to_the_bulk_import(admin_client):
    response = admin_client.get("/admin/contacts/contact/import/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/contacts/importjob/add/"


def test_optout_import_goes_through_the_service_and_records_the_user(admin_user, caplog):
    caplog.set_level("INFO", logger="contacts")
    result = OptOutResource().import_data(
        _dataset("phone,reason\n0400 123 456,asked\n"), dry_run=False, user=admin_user
    )
    assert not result.has_validation_errors()
    optout = OptOut.objects.get()
    assert (optout.source, optout.created_by) == ("import", admin_user)
    assert "opt-out added: +61400123456 (source import" in caplog.text
