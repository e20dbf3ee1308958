"""Reseller self-service: a reseller runs its own clients (sub-accounts).

- :func:`client_save` creates or edits a client: name, default sender,
  active, low-balance threshold and who is warned, and its price (credits per
  segment and per country) within the floors staff set on the reseller
  account;
- :func:`credits_take_back` moves a client's unused credits back to its
  reseller;
- :func:`account_statement` is the statement of one account for a period.

Who may act: :func:`reseller_refusal` (staff who see every account, or an
owner of the reseller account with the reseller permissions). The admin and
the JSON API both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from providers.limits import check_sender
from providers.locking import lock_accounts, retry_on_conflict
from providers.models import CreditTransaction, ProviderAccount
from providers.services import ledger
from providers.services.amounts import ZERO, parse_amount, parse_country_rates, parse_rate
from providers.services.errors import CreditError, busy_error
from providers.services.topups import _topup_backend

Kind = CreditTransaction.Kind

#: What a reseller may set on its clients (everything else is staff's).
CLIENT_FIELDS = (
    "name",
    "default_sender",
    "is_active",
    "low_balance_threshold",
    "low_balance_emails",
    "credits_per_segment",
    "country_rates",
)


def reseller_accounts(user):
    """The reseller accounts ``user`` runs clients under (staff: every account
    that has no parent)."""
    top = ProviderAccount.objects.filter(parent__isnull=True)
    if user.is_superuser or user.has_perm("providers.view_all_accounts"):
        return top
    return top.filter(owners=user)


def clients_of(user):
    """The client accounts ``user`` may manage (sub-accounts of its reseller accounts)."""
    return ProviderAccount.objects.filter(parent__in=reseller_accounts(user).values("pk"))


def reseller_refusal(*, user, reseller: ProviderAccount) -> str | None:
    """Why ``user`` may not manage clients of ``reseller`` (None: may)."""
    if user is None or not user.is_active:
        return "Managing clients needs an active user."
    if reseller.parent_id is not None:
        return f"{reseller.name} is a sub-account, not a reseller account."
    if user.is_superuser or user.has_perm("providers.view_all_accounts"):
        return None
    if not user.has_perm("providers.top_up_account"):
        return f"{user} is not a reseller (the 'top up account' permission is missing)."
    if not reseller.owners.filter(pk=user.pk).exists():
        return f"{user} does not manage {reseller.name}."
    return None


def clean_price(
    *, reseller: ProviderAccount, credits_per_segment, country_rates
) -> tuple[Decimal, dict[str, str]]:
    """The client's price, checked against the reseller's floors
    (ValidationError with one message per field)."""
    errors: dict[str, list[str]] = {}
    rate = None
    try:
        rate = parse_rate(credits_per_segment, what="price per segment")
    except ValueError as exc:
        errors["credits_per_segment"] = [str(exc)]
    try:
        rates = parse_country_rates(country_rates)
    except ValidationError as exc:
        errors["country_rates"] = exc.messages
        rates = {}
    floor = reseller.min_credits_per_segment
    if rate is not None and rate < floor:
        errors.setdefault("credits_per_segment", []).append(
            f"The price per segment {rate} is below the lowest price staff set for "
            f"{reseller.name} ({floor})."
        )
    for country, value in rates.items():
        low = reseller.floor_for_region(country)
        if Decimal(value) < low:
            errors.setdefault("country_rates", []).append(
                f"The price for {country} ({value}) is below the lowest price staff set for "
                f"{reseller.name} ({low})."
            )
    if errors:
        raise ValidationError(errors)
    return rate, rates


def _clean_emails(value: str) -> str:
    emails = [e.strip() for e in (value or "").replace(";", ",").split(",") if e.strip()]
    bad = []
    for email in emails:
        try:
            validate_email(email)
        except ValidationError:
            bad.append(email)
    if bad:
        raise ValidationError(
            {
                "low_balance_emails": [
                    f"Not an e-mail address: {', '.join(bad)}. Separate addresses with commas."
                ]
            }
        )
    return ", ".join(dict.fromkeys(emails))


def client_clean(
    *, reseller: ProviderAccount, client: ProviderAccount | None = None, **fields
) -> dict:
    """The client's fields checked and normalised (``ValidationError`` per
    field): what :func:`client_save` writes. Forms call it to show the same
    errors. Unchanged fields are taken from ``client``."""
    unknown = set(fields) - set(CLIENT_FIELDS)
    if unknown:
        raise ValidationError(f"Resellers cannot set {', '.join(sorted(unknown))}.")
    current = {f: getattr(client, f) for f in CLIENT_FIELDS} if client else {}
    values = {
        "name": "",
        "default_sender": "",
        "is_active": True,
        "low_balance_threshold": ZERO,
        "low_balance_emails": "",
        "credits_per_segment": reseller.credits_per_segment,
        "country_rates": {},
        **current,
        **fields,
    }
    errors: dict[str, list[str]] = {}
    name = str(values["name"] or "").strip()
    if not name:
        errors["name"] = ["A client needs a name."]
    elif len(name) > 200:
        errors["name"] = ["The name is longer than 200 characters."]
    elif ProviderAccount.objects.filter(name=name).exclude(pk=getattr(client, "pk", None)).exists():
        errors["name"] = [f"An account named {name!r} exists already; choose another name."]
    sender = str(values["default_sender"] or "").strip()
    if sender and (problems := check_sender(reseller.backend, sender)):
        errors["default_sender"] = [str(p) for p in problems]
    threshold = values["low_balance_threshold"]
    if threshold in (None, "") or (not isinstance(threshold, str) and threshold == 0):
        threshold = ZERO
    else:
        try:
            threshold = parse_amount(threshold, what="low-balance threshold")
        except CreditError as exc:
            errors["low_balance_threshold"] = exc.messages
    emails = ""
    try:
        emails = _clean_emails(values["low_balance_emails"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    rate, rates = None, {}
    try:
        rate, rates = clean_price(
            reseller=reseller,
            credits_per_segment=values["credits_per_segment"],
            country_rates=values["country_rates"],
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "default_sender": sender,
        "is_active": bool(values["is_active"]),
        "low_balance_threshold": threshold,
        "low_balance_emails": emails,
        "credits_per_segment": rate,
        "country_rates": rates,
    }


def client_save(
    *,
    user,
    reseller: ProviderAccount,
    client: ProviderAccount | None = None,
    **fields,
) -> ProviderAccount:
    """Create (``client=None``) or edit a client of ``reseller``.

    ``fields`` are among :data:`CLIENT_FIELDS` (see :func:`client_clean`); a
    new client takes the reseller's backend (provider credentials are
    staff's business). Raises ``ValidationError`` (per field) or
    ``CreditError(code="forbidden")``. Never touches the credit fields.
    """
    if (reason := reseller_refusal(user=user, reseller=reseller)) is not None:
        raise CreditError(reason, code="forbidden")
    if client is not None and client.parent_id != reseller.pk:
        raise CreditError(f"{client.name} is not a client of {reseller.name}.", code="forbidden")
    clean = client_clean(reseller=reseller, client=client, **fields)
    if client is None:
        return ProviderAccount.objects.create(
            parent=reseller, backend=reseller.backend, base_url=reseller.base_url, **clean
        )
    ProviderAccount.objects.filter(pk=client.pk).update(**clean)
    client.refresh_from_db()
    return client


@retry_on_conflict(busy_error)
def credits_take_back(
    *,
    client: ProviderAccount,
    amount,
    user,
    note: str = "",
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Move unused credits of ``client`` back to its reseller account.

    At most what is available (reserved credits belong to running
    campaigns). Writes ``return_out`` on the client and ``return_in`` on the
    reseller and returns the client's row. Refused for a client whose
    provider holds its credits (its backend tops up at the provider): the
    provider has no way to take them back.
    """
    amount = parse_amount(amount)
    key = ledger.clean_key(idempotency_key)
    if client.parent_id is None:
        raise CreditError(f"{client.name} is not a client (it has no reseller).", code="forbidden")
    reseller = ProviderAccount.objects.get(pk=client.parent_id)
    if (reason := reseller_refusal(user=user, reseller=reseller)) is not None:
        raise CreditError(reason, code="forbidden")
    if _topup_backend(client, None) is not None:
        raise CreditError(
            f"The credits of {client.name} are held by its provider ({client.backend}), which "
            "cannot give them back: they cannot be returned to the reseller here.",
            code="provider",
        )

    def replayed():
        return ledger.replay(
            key,
            account_id=client.pk,
            kind=Kind.RETURN_OUT,
            amount=-amount,
            reserved_change=ZERO,
            counterparty_id=reseller.pk,
        )

    def apply():
        locked = lock_accounts([client.pk, reseller.pk])
        src, dst = locked[client.pk], locked[reseller.pk]
        if (row := replayed()) is not None:
            return row
        if src.parent_id != dst.pk:
            raise CreditError(f"{src.name} is no longer a client of {dst.name}.")
        if src.available < amount:
            raise ledger.shortfall(src, amount, f"to return to {dst.name}")
        return ledger.write_pair(
            src,
            dst,
            out_kind=Kind.RETURN_OUT,
            in_kind=Kind.RETURN_IN,
            amount=amount,
            user=user,
            note=note,
            idempotency_key=key,
        )

    return ledger.once(key, replayed, apply)


# ---------------------------------------------------------------- statement


@dataclass(frozen=True)
class Statement:
    """One account's credits over ``[start, end)``: opening + movements = closing."""

    account: ProviderAccount
    start: datetime
    end: datetime
    opening: Decimal
    closing: Decimal
    rows: list[CreditTransaction]
    totals: dict[str, Decimal]  # balance change by kind label

    @property
    def movements(self) -> Decimal:
        return self.closing - self.opening


def account_statement(*, account: ProviderAccount, start: datetime, end: datetime) -> Statement:
    """Opening balance (after the last row before ``start``), the rows of the
    period in ledger order, the closing balance and totals by kind."""
    if end <= start:
        raise ValidationError("The end of the period must be after its start.")
    rows = CreditTransaction.objects.filter(account=account)
    before = rows.filter(created_at__lt=start).order_by("-id").first()
    opening = before.balance_after if before else ZERO
    period = list(
        rows.filter(created_at__gte=start, created_at__lt=end)
        .select_related("counterparty", "created_by")
        .order_by("id")
    )
    closing = period[-1].balance_after if period else opening
    totals: dict[str, Decimal] = {}
    for row in period:
        if row.amount:
            label = row.get_kind_display()
            totals[label] = totals.get(label, ZERO) + row.amount
    return Statement(
        account=account,
        start=start,
        end=end,
        opening=opening,
        closing=closing,
        rows=period,
        totals=totals,
    )
