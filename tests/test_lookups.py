"""``__anyof``: the same rows as ``__in``, as one array parameter on PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, Message
from contacts.models import OptOut

pytestmark = pytest.mark.django_db


@pytest.fixture
def messages(make_account):
    campaign = Campaign.objects.create(name="C", account=make_account(), body="Hi")
    token = uuid.uuid4()
    rows = Message.objects.bulk_create(
        Message(
            campaign=campaign,
            phone=f"+6140000{i:04d}",
            body="Hi",
            credits=Decimal("1"),
            provider_ref=f"ref-{i}" if i % 2 else "",
            claim_token=token if i < 3 else None,
        )
        for i in range(10)
    )
    return rows, token


def test_anyof_matches_exactly_what_in_matches(messages):
    rows, token = messages
    ids = [rows[1].pk, rows[4].pk, rows[4].pk, 10**12]  # a duplicate and an unknown id
    refs = ["ref-1", "ref-3", "nope"]
    cases = [
        ("pk", ids),
        ("id", ids),
        ("provider_ref", refs),
        ("phone", [rows[0].phone, rows[9].phone]),
        ("claim_token", [token, uuid.uuid4()]),
        ("pk", []),
        ("pk", [None, rows[2].pk]),
        ("pk", frozenset(ids)),
        ("provider_ref", frozenset(refs)),
        ("pk", frozenset()),
    ]
    for field, values in cases:
        expected = set(
            Message.objects.filter(**{f"{field}__in": values}).values_list("pk", flat=True)
        )
        got = set(
            Message.objects.filter(**{f"{field}__anyof": values}).values_list("pk", flat=True)
        )
        assert got == expected, (field, values)
    # In updates too, and on another model.
    OptOut.objects.create(phone=rows[0].phone)
    assert list(
        OptOut.objects.filter(phone__anyof=[rows[0].phone, rows[1].phone]).values_list(
            "phone", flat=True
        )
    ) == [rows[0].phone]
    assert Message.objects.filter(pk__anyof=[rows[5].pk, rows[6].pk]).update(status="sent") == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="one array parameter on PostgreSQL")
def test_anyof_sends_one_array_parameter_on_postgresql(messages):
    rows, _ = messages
    with CaptureQueriesContext(connection) as queries:
        list(Message.objects.filter(pk__anyof=[r.pk for r in rows]).values_list("pk"))
    sql = queries.captured_queries[0]["sql"]
    assert "= ANY(CAST(" in sql and "bigint[]" in sql and " IN (" not in sql


#: Text an array literal must keep as it is.
TRICKY = ['a"b', "c\\d", "x,y", "{z}", "o'k", "NULL", " spaced ", "Zoë 😀", '\\"', ""]


def test_anyof_matches_tricky_text_exactly(messages):
    rows, _ = messages
    for row, ref in zip(rows, TRICKY, strict=True):
        Message.objects.filter(pk=row.pk).update(provider_ref=ref)
    for values in (TRICKY, TRICKY[:3], ["NULL"], ['"'], ["\\"], ["nope", "x,y"]):
        expected = set(Message.objects.filter(provider_ref__in=values).values_list("pk", flat=True))
        got = set(
            Message.objects.filter(provider_ref__anyof=frozenset(values)).values_list(
                "pk", flat=True
            )
        )
        assert got == expected, values


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's array literals")
def test_array_literal_round_trips_through_postgresql():
    from smsoffice.lookups import array_literal

    with connection.cursor() as cursor:
        for values, db_type in (
            (TRICKY, "varchar(100)"),
            ([1, 2, 10**12], "bigint"),
            ([], "bigint"),
        ):
            cursor.execute(f"SELECT CAST(%s AS {db_type}[])", [array_literal(values)])
            assert cursor.fetchone()[0] == values
