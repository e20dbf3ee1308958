"""Opt-outs added and removed in the admin go through contacts.services, so
they are recorded (and logged) like every other opt-out."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from contacts.models import OptOut
from contacts.services import optout_add

pytestmark = pytest.mark.django_db

ADD = reverse("admin:contacts_optout_add")
CHANGELIST = reverse("admin:contacts_optout_changelist")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def test_adding_an_opt_out_is_manual_by_the_staff_user_and_logged(admin_client, superuser, caplog):
    caplog.set_level(logging.INFO, logger="contacts")
    response = admin_client.post(
        ADD,
        # A source in the POST is not taken: the admin only enters manual opt-outs.
        {"phone": "0400 123 456", "source": "keyword", "reason": "Asked by phone"},
    )
    assert response.status_code == 302
    optout = OptOut.objects.get()
    assert (optout.phone, optout.source, optout.reason, optout.created_by) == (
        "+61400123456",
        OptOut.Source.MANUAL,
        "Asked by phone",
        superuser,
    )
    assert any(
        "opt-out added: +61400123456 (source manual" in r.getMessage() for r in caplog.records
    )


def test_adding_a_number_already_opted_out_says_so_and_keeps_the_first(admin_client):
    optout_add(phone="+61400123456", source=OptOut.Source.KEYWORD, reason="STOP")
    response = admin_client.post(ADD, {"phone": "+61400123456", "reason": "again"})
    assert response.status_code == 200
    assert "phone" in response.context["adminform"].form.errors
    assert OptOut.objects.get().source == OptOut.Source.KEYWORD


def test_a_bad_number_is_refused_with_a_reason(admin_client):
    response = admin_client.post(ADD, {"phone": "not a number", "reason": ""})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["phone"]
    assert not OptOut.objects.exists()


def test_deleting_an_opt_out_opts_the_number_back_in_through_the_service(
    admin_client, superuser, caplog
):
    optout = optout_add(phone="+61400123456", source=OptOut.Source.KEYWORD)
    caplog.set_level(logging.INFO, logger="contacts")
    url = reverse("admin:contacts_optout_delete", args=[optout.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not OptOut.objects.exists()
    [line] = [r.getMessage() for r in caplog.records if "opt-out removed" in r.getMessage()]
    assert f"user {superuser.pk}" in line and "+61400123456" in line


def test_the_delete_action_removes_each_through_the_service(admin_client, caplog):
    pks = [
        optout_add(phone=phone, source=OptOut.Source.MANUAL).pk
        for phone in ("+61400123456", "+61400123457", "+61400123458")
    ]
    caplog.set_level(logging.INFO, logger="contacts")
    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": pks[:2], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(OptOut.objects.values_list("phone", flat=True)) == ["+61400123458"]
    removed = [r.getMessage() for r in caplog.records if "opt-out removed" in r.getMessage()]
    assert len(removed) == 2


def test_an_opt_out_cannot_be_edited_only_removed(admin_client):
    optout = optout_add(phone="+61400123456", source=OptOut.Source.KEYWORD, reason="STOP")
    url = reverse("admin:contacts_optout_change", args=[optout.pk])
    admin_client.post(url, {"phone": "+61400999999", "source": "manual", "reason": "edited"})
    optout.refresh_from_db()
    assert (optout.phone, optout.source, optout.reason) == (
        "+61400123456",
        OptOut.Source.KEYWORD,
        "STOP",
    )
