"""The reseller JSON API: token auth, the same services as the admin, and
isolation (a reseller never reaches another reseller's clients)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from providers.models import ApiToken, CreditTransaction, ProviderAccount
from providers.services.api_tokens import api_token_create, api_token_revoke
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind
API = "/api/reseller"


def fresh(account) -> ProviderAccount:
    return ProviderAccount.objects.get(pk=account.pk)


@pytest.fixture
def tree(make_reseller, make_account):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = make_account(name="Alice Main", owners=[alice], balance=100, backend="ledgertest")
    alice_client = make_account(name="Alice Client", parent=alice_main, backend="ledgertest")
    bob_main = make_account(name="Bob Main", owners=[bob], balance=50, backend="ledgertest")
    bob_client = make_account(name="Bob Client", parent=bob_main, backend="ledgertest")
    return alice, bob, alice_main, alice_client, bob_main, bob_client


@pytest.fixture
def alice_api(client, tree):
    _, raw = api_token_create(user=tree[0], name="billing")

    class Api:
        def get(self, path, **params):
            return client.get(API + path, params, HTTP_AUTHORIZATION=f"Bearer {raw}")

        def post(self, path, body):
            return client.post(
                API + path,
                body,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )

    return Api()


def test_no_token_or_a_bad_or_revoked_token_is_401(client, tree):
    assert client.get(API + "/clients").status_code == 401
    assert client.get(API + "/clients", HTTP_AUTHORIZATION="Bearer smso_nope").status_code == 401
    token, raw = api_token_create(user=tree[0], name="old")
    assert client.get(API + "/clients", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    api_token_revoke(token=token)
    assert client.get(API + "/clients", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert ApiToken.objects.get(pk=token.pk).key_hash != raw  # only a hash is stored


def test_list_clients_and_balance_show_only_your_own(alice_api, tree):
    _, _, alice_main, _alice_client, bob_main, bob_client = tree
    clients = alice_api.get("/clients").json()
    assert [c["name"] for c in clients] == ["Alice Client"]
    main = alice_api.get(f"/accounts/{alice_main.pk}/balance").json()
    assert (main["balance"], main["available"]) == ("100.00", "100.00")
    for foreign in (bob_main, bob_client):
        assert alice_api.get(f"/accounts/{foreign.pk}/balance").status_code == 404


def test_top_up_a_client_once_per_idempotency_key(alice_api, tree):
    _, _, alice_main, alice_client, *_ = tree
    body = {"amount": "25.50", "idempotency_key": "invoice-77", "note": "paid"}
    first = alice_api.post(f"/clients/{alice_client.pk}/top-ups", body)
    again = alice_api.post(f"/clients/{alice_client.pk}/top-ups", body)
    assert first.status_code == again.status_code == 200
    assert first.json()["ledger_id"] == again.json()["ledger_id"]
    assert first.json()["moved"] == "25.50"
    assert first.json()["client"]["balance"] == "25.50"
    assert (fresh(alice_main).balance, fresh(alice_client).balance) == (D("74.50"), D("25.50"))
    assert CreditTransaction.objects.filter(kind=K.TRANSFER_OUT).count() == 1


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"amount": "1e30", "idempotency_key": "k1"}, 400, "too large"),
        ({"amount": "abc", "idempotency_key": "k2"}, 400, "must be a number"),
        ({"amount": "500", "idempotency_key": "k3"}, 400, "needs 500.00"),
        ({"amount": "5", "idempotency_key": " "}, 400, "idempotency_key is required"),
    ],
)
def test_bad_top_ups_are_clear_errors(alice_api, tree, body, status, text):
    response = alice_api.post(f"/clients/{tree[3].pk}/top-ups", body)
    assert response.status_code == status
    assert text in response.json()["detail"]
    assert fresh(tree[3]).balance == D("0")


def test_a_reseller_cannot_top_up_or_read_another_resellers_client(alice_api, tree):
    *_, bob_main, bob_client = tree
    body = {"amount": "1", "idempotency_key": "x"}
    assert alice_api.post(f"/clients/{bob_client.pk}/top-ups", body).status_code == 404
    assert alice_api.get(f"/clients/{bob_client.pk}/statement").status_code == 404
    assert alice_api.post(f"/clients/{bob_main.pk}/top-ups", body).status_code == 404
    assert (fresh(bob_main).balance, fresh(bob_client).balance) == (D("50"), D("0"))


def test_statement_over_the_api(alice_api, tree):
    alice_client = tree[3]
    alice_api.post(f"/clients/{alice_client.pk}/top-ups", {"amount": "9", "idempotency_key": "a"})
    body = alice_api.get(f"/clients/{alice_client.pk}/statement").json()
    assert (body["opening"], body["closing"]) == ("0.00", "9.00")
    assert [m["kind"] for m in body["movements"]] == ["transfer_in"]
    bad = alice_api.get(f"/clients/{alice_client.pk}/statement", start="2026-02-30")
    assert bad.status_code in (400, 422)


def test_the_management_command_prints_a_working_token(client, tree, capsys):
    call_command("api_token_create", "alice", "billing")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    assert client.get(API + "/clients", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
