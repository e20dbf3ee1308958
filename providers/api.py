"""The reseller JSON API (django-ninja): list clients, read a balance, top up
a client with an idempotency key, read a statement.

django-ninja rather than Django REST framework: four typed endpoints with
schema validation and an OpenAPI page (``/api/reseller/docs``) in one small
module, no serializer/viewset layers to learn for so little. Authentication
is a per-user bearer token (``Authorization: Bearer smso_…``, see
``providers.services.api_tokens``); every call goes through the same
services and the same scoping as the admin, so a reseller reaches only its
own accounts and clients (others answer 404).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from ninja import NinjaAPI, Schema
from ninja.security import HttpBearer

from providers.models import CreditTransaction, ProviderAccount
from providers.services import (
    CreditError,
    account_statement,
    clients_of,
    credits_transfer,
)
from providers.services.api_tokens import api_token_user


class TokenAuth(HttpBearer):
    def authenticate(self, request, token):
        user = api_token_user(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="smsoffice reseller API",
    version="1",
    urls_namespace="reseller_api",
    auth=TokenAuth(),
)


class Error(Schema):
    detail: str
    code: str = ""


class Account(Schema):
    id: int
    name: str
    reseller_id: int | None
    balance: Decimal
    reserved: Decimal
    available: Decimal
    credits_per_segment: Decimal
    country_rates: dict[str, str]
    low_balance_threshold: Decimal
    is_active: bool


class TopUpIn(Schema):
    amount: str  # text: the one amounts parser says what is wrong with it
    idempotency_key: str
    note: str = ""


class Movement(Schema):
    ledger_id: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    at: datetime
    reference: str
    note: str


class TopUpOut(Schema):
    ledger_id: int
    moved: Decimal
    at: datetime
    reseller_balance_after: Decimal
    client: Account


class StatementOut(Schema):
    account: Account
    start: datetime
    end: datetime
    opening: Decimal
    closing: Decimal
    movements: list[Movement]


def _account(a: ProviderAccount) -> dict:
    return {
        "id": a.pk,
        "name": a.name,
        "reseller_id": a.parent_id,
        "balance": a.balance,
        "reserved": a.reserved,
        "available": a.available,
        "credits_per_segment": a.credits_per_segment,
        "country_rates": a.country_rates or {},
        "low_balance_threshold": a.low_balance_threshold,
        "is_active": a.is_active,
    }


def _movement(row: CreditTransaction) -> dict:
    return {
        "ledger_id": row.pk,
        "kind": row.kind,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "at": row.created_at,
        "reference": row.reference,
        "note": row.note,
    }


def _client(user, client_id: int) -> ProviderAccount:
    client = clients_of(user).filter(pk=client_id).first()
    if client is None:
        raise Http404("No such client.")
    return client


@api.exception_handler(CreditError)
def _credit_error(request, exc: CreditError):
    status = 403 if exc.code == "forbidden" else 409 if exc.code == "busy" else 400
    return api.create_response(
        request, {"detail": " ".join(exc.messages), "code": exc.code or ""}, status=status
    )


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    return api.create_response(
        request, {"detail": " ".join(exc.messages), "code": "invalid"}, status=400
    )


@api.get("/clients", response=list[Account], summary="Your clients (sub-accounts)")
def list_clients(request):
    return [_account(a) for a in clients_of(request.user).order_by("name")]


@api.get(
    "/accounts/{account_id}/balance",
    response={200: Account, 404: Error},
    summary="Balance of one of your accounts or clients",
)
def balance(request, account_id: int):
    account = ProviderAccount.objects.visible_to(request.user).filter(pk=account_id).first()
    if account is None:
        raise Http404("No such account.")
    return _account(account)


@api.post(
    "/clients/{client_id}/top-ups",
    response={200: TopUpOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Move credits from your reseller account to a client (idempotent per key)",
)
def top_up_client(request, client_id: int, payload: TopUpIn):
    client = _client(request.user, client_id)
    key = payload.idempotency_key.strip()
    if not key or len(key) > 60:
        raise CreditError(
            "idempotency_key is required (1 to 60 characters): send the same key to retry "
            "safely, a new key for a new top-up.",
            code="idempotency_key",
        )
    assert client.parent is not None  # clients_of() returns sub-accounts only
    row = credits_transfer(
        source=client.parent,
        target=client,
        amount=payload.amount,
        user=request.user,
        note=payload.note,
        # Scoped per user: two resellers' keys never collide.
        idempotency_key=f"api:{request.user.pk}:{key}",
    )
    client.refresh_from_db()
    return {
        "ledger_id": row.pk,
        "moved": -row.amount,
        "at": row.created_at,
        "reseller_balance_after": row.balance_after,
        "client": _account(client),
    }


@api.get(
    "/clients/{client_id}/statement",
    response={200: StatementOut, 400: Error, 404: Error},
    summary="Opening balance, movements and closing balance for a period (end included)",
)
def statement(request, client_id: int, start: date | None = None, end: date | None = None):
    client = _client(request.user, client_id)
    today = timezone.localdate()
    start = start or today.replace(day=1)
    end = end or today
    tz = timezone.get_current_timezone()
    result = account_statement(
        account=client,
        start=datetime.combine(start, time.min, tzinfo=tz),
        end=datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
    )
    return {
        "account": _account(client),
        "start": result.start,
        "end": result.end,
        "opening": result.opening,
        "closing": result.closing,
        "movements": [_movement(r) for r in result.rows],
    }
