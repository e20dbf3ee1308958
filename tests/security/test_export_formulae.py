"""Every export is formula-safe: cells a spreadsheet would evaluate (= + - @,
tab- or CR-led) are written as text, and a file we exported imports back."""

from __future__ import annotations

import csv
import io

import pytest
import tablib

from contacts.models import Contact, OptOut
from contacts.resources import ContactResource, OptOutResource

pytestmark = pytest.mark.django_db

NASTY = ["+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tcmd", "=1+1"]


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def _admin_export(client, model: str, fields: list[str]) -> list[dict[str, str]]:
    prefix = {"contact": "contactresource", "optout": "optoutresource"}[model]
    data = {"format": "0", "resource": "0"} | {f"{prefix}_{f}": "on" for f in fields}
    response = client.post(f"/admin/contacts/{model}/export/", data)
    assert response.status_code == 200
    return _rows(response.content)


@pytest.mark.parametrize("nasty", NASTY)
def test_contact_export_quotes_every_formula_cell(admin_client, nasty):
    Contact.objects.create(
        phone="+61400123456", first_name=nasty, last_name=nasty, custom_fields={"x": 1}
    )
    (row,) = _admin_export(admin_client, "contact", ["phone", "first_name", "last_name"])
    assert row["first_name"] == "'" + nasty
    assert row["last_name"] == "'" + nasty
    # A phone is text too: "+61…" would otherwise be read as a number (or a formula).
    assert row["phone"] == "'+61400123456"


@pytest.mark.parametrize("nasty", NASTY)
def test_optout_export_quotes_every_formula_cell(admin_client, nasty):
    OptOut.objects.create(phone="+61400123456", reason=nasty)
    (row,) = _admin_export(admin_client, "optout", ["phone", "reason"])
    assert row["reason"] == "'" + nasty


def test_plain_cells_are_unchanged(admin_client):
    Contact.objects.create(phone="+61400123456", first_name="Ann", last_name="O'Neil")
    (row,) = _admin_export(admin_client, "contact", ["first_name", "last_name"])
    assert (row["first_name"], row["last_name"]) == ("Ann", "O'Neil")


def test_an_exported_file_imports_back_unchanged():
    Contact.objects.create(phone="+61400123456", first_name="-2+3", last_name="@home")
    exported = ContactResource().export().csv
    Contact.objects.all().delete()
    result = ContactResource().import_data(
        tablib.Dataset().load(exported, format="csv"), dry_run=False
    )
    assert not result.has_errors() and not result.has_validation_errors()
    contact = Contact.objects.get()
    assert (contact.phone, contact.first_name, contact.last_name) == (
        "+61400123456",
        "-2+3",
        "@home",
    )


def test_exported_optouts_import_back():
    OptOut.objects.create(phone="+61400123456", reason="=asked")
    exported = OptOutResource().export().csv
    OptOut.objects.all().delete()
    result = OptOutResource().import_data(
        tablib.Dataset().load(exported, format="csv"), dry_run=False
    )
    assert not result.has_validation_errors()
    assert OptOut.objects.get().phone == "+61400123456"
