"""Our reseller sub-accounts mirrored as TransmitSMS reseller clients.

When a reseller's account is a TransmitSMS *reseller* account (its
credentials say ``"reseller": true``), each of its TransmitSMS sub-accounts
here is a client there (``add-client``/``get-client``/``get-clients``/
``edit-client``/``get-transactions``):

- A sub-account topped up here (a transfer from the reseller, or a top-up) is
  topped up there first, through :func:`top_up_mirror`, which the credit
  services call from their provider top-up step (under the account lock,
  before any ledger row: the same place and the same rules as any provider
  top-up). A refusal records nothing; a repeat with the same idempotency key
  is answered from the ledger and never reaches the provider again.
- The client is created there on its first top-up if the sub-account has no
  ``client_id`` yet (:func:`reseller_client_ensure`). ``add-client`` answering
  ``KEY_EXISTS`` (the e-mail is taken) links the existing client with that
  e-mail instead of failing, so a repeated creation creates nothing twice.
- The excerpt documents the reseller calls but not their fields (unverified):
  the credit is passed to ``edit-client`` as ``credit`` (credentials
  ``credit_field`` of the reseller account changes the name), and the top-up
  counts as done only when ``get-client`` shows the client's balance grown by
  exactly that amount. Anything else is refused ("nothing was recorded
  here") and, when the balance moved by another amount, reported as drift
  to check, never guessed.

Providers never import campaigns; this module touches ProviderAccount and
the TransmitSMS backend only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.backends.base import ErrorKind, ProviderError
from providers.models import ProviderAccount

logger = logging.getLogger("providers.reseller_sync")

BACKEND = "transmitsms"
TRUE = {"1", "true", "yes", "on"}


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except (InvalidOperation, ValueError):
        return None


def mirrors(account: ProviderAccount) -> bool:
    """Whether ``account`` is a TransmitSMS sub-account of a TransmitSMS
    reseller account, so its credits are mirrored on a reseller client."""
    parent = account.parent
    if account.backend != BACKEND or parent is None or parent.backend != BACKEND:
        return False
    flag = (parent.credentials or {}).get("reseller")
    return flag is True or str(flag).strip().lower() in TRUE


def reseller_backend(account: ProviderAccount, backend=None):
    """The backend that speaks for the reseller of ``account`` (its parent's
    credentials). ``backend``: one to use instead (tests inject a transport)."""
    from providers.backends.transmitsms import TransmitSmsBackend

    if isinstance(backend, TransmitSmsBackend):
        return backend
    assert account.parent is not None  # mirrors() checked it is a reseller's client
    return account.parent.get_backend()


def _client_id(answer: Mapping[str, Any]) -> str:
    for key in ("client_id", "id"):
        if answer.get(key) not in (None, ""):
            return str(answer[key]).strip()
    client = answer.get("client")
    return _client_id(client) if isinstance(client, Mapping) else ""


def _clients(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = answer.get("clients")
    return [c for c in items if isinstance(c, Mapping)] if isinstance(items, list) else []


def _find_by_email(reseller, email: str) -> str:
    """The id of the reseller's client with ``email`` (every page of get-clients)."""
    page = 1
    while True:
        answer = reseller.get_clients(page=page)
        for client in _clients(answer):
            if str(client.get("email", "")).strip().lower() == email.lower():
                return _client_id(client)
        pages = answer.get("page") if isinstance(answer.get("page"), Mapping) else {}
        if page >= int(_decimal(pages.get("count")) or 1):
            return ""
        page += 1


def reseller_client_ensure(*, account: ProviderAccount, backend=None) -> str:
    """The TransmitSMS client id of sub-account ``account``, creating the client
    (``add-client``) when it has none, and storing the id (and the client's
    API key and secret when the answer carries them) in its credentials.

    Needs ``client_email`` in the sub-account's credentials to create one
    (``client_name``, ``client_msisdn``, ``client_password`` optional).
    Raises :class:`ProviderError` when the client cannot be created or found.
    """
    credentials = dict(account.credentials or {})
    existing = str(credentials.get("client_id") or "").strip()
    if existing:
        return existing
    email = str(credentials.get("client_email") or "").strip()
    if not email:
        raise ProviderError(
            f"{account.name} has no TransmitSMS client yet and no 'client_email' in its "
            "credentials to create one; add the e-mail of the client (or its 'client_id').",
            permanent=True,
            kind=ErrorKind.VALIDATION,
        )
    reseller = reseller_backend(account, backend)
    fields = {
        "name": str(credentials.get("client_name") or account.name),
        "email": email,
        "msisdn": str(credentials.get("client_msisdn") or "").lstrip("+"),
        "password": str(credentials.get("client_password") or ""),
    }
    try:
        answer = reseller.add_client(**{k: v for k, v in fields.items() if v})
        client_id = _client_id(answer)
    except ProviderError as exc:
        if exc.code != "KEY_EXISTS":
            raise
        # Created before (by us, or by hand): link it, create nothing twice.
        answer, client_id = {}, _find_by_email(reseller, email)
    if not client_id:
        raise ProviderError(
            f"TransmitSMS did not give the id of the client {email}; look it up in the "
            "reseller account and enter it as 'client_id'.",
            kind=ErrorKind.PROTOCOL,
            maybe_processed=True,
        )
    credentials["client_id"] = client_id
    for ours, theirs in (("api_key", "apikey"), ("api_key", "api_key"), ("secret", "secret")):
        if answer.get(theirs) and not credentials.get(ours):
            credentials[ours] = str(answer[theirs])
    account.credentials = credentials
    account.save(update_fields=["credentials", "updated_at"])
    logger.info("%s linked to TransmitSMS client %s.", account.name, client_id)
    return client_id


def client_balance(reseller, client_id: str) -> Decimal:
    answer = reseller.get_client(client_id)
    balance = _decimal(answer.get("balance"))
    if balance is None and isinstance(answer.get("client"), Mapping):
        balance = _decimal(answer["client"].get("balance"))
    if balance is None:
        raise ProviderError(
            f"TransmitSMS get-client {client_id} answered without a balance.",
            kind=ErrorKind.PROTOCOL,
        )
    return balance


def client_top_up(*, account: ProviderAccount, amount: Decimal, backend=None) -> dict:
    """Add ``amount`` to the TransmitSMS client of ``account`` and check that
    its balance grew by exactly that; returns the answer kept in the ledger
    row's ``provider_response``. Raises :class:`ProviderError` otherwise
    (``maybe_processed`` when the balance moved by another amount)."""
    reseller = reseller_backend(account, backend)
    client_id = reseller_client_ensure(account=account, backend=reseller)
    before = client_balance(reseller, client_id)
    assert account.parent is not None  # mirrors() checked it is a reseller's client
    field = str((account.parent.credentials or {}).get("credit_field") or "credit")
    reseller.edit_client(client_id, **{field: str(amount)})
    after = client_balance(reseller, client_id)
    if after - before != amount:
        moved = after - before
        raise ProviderError(
            f"TransmitSMS client {client_id}: the balance went from {before} to {after} "
            f"({moved:+}) instead of growing by {amount}."
            + (" Nothing was added there." if moved == 0 else " Check it at TransmitSMS."),
            # Unmoved: the call did not add credits (the field is not what
            # this account's API takes); moved otherwise: a person checks.
            kind=ErrorKind.PROTOCOL if moved else ErrorKind.UNSUPPORTED,
            maybe_processed=moved != 0,
        )
    return {
        "backend": BACKEND,
        "reseller_client": client_id,
        "credits_added": str(amount),
        "provider_balance": str(after),
    }


def top_up_mirror(account: ProviderAccount, amount: Decimal, backend=None) -> dict | None:
    """The credit services' hook: ``None`` when ``account`` is not a mirrored
    reseller client (the usual provider top-up applies), else top up its
    client (:func:`client_top_up`) and return the provider response. A
    provider failure propagates as :class:`ProviderError`."""
    if not mirrors(account):
        return None
    return client_top_up(account=account, amount=amount, backend=backend)


def client_transactions(*, account: ProviderAccount, backend=None, page: int = 1) -> list[dict]:
    """``get-transactions`` of the client of ``account`` (for a person checking
    drift against our ledger)."""
    reseller = reseller_backend(account, backend)
    client_id = reseller_client_ensure(account=account, backend=reseller)
    answer = reseller.get_transactions(client_id, page=page)
    items = answer.get("transactions")
    return [dict(t) for t in items if isinstance(t, Mapping)] if isinstance(items, list) else []
