"""Credit movements that may reach the provider: top-ups (credits coming in)
and transfers from a reseller account to one of its sub-accounts.

When the account's backend cannot ``topup``, the movement is one short
transaction in our ledger. When it can, the provider call is made with no
row lock held (see ``providers.locking``), in three steps:

1. **claim** (short transaction, accounts locked): check the movement, create
   a pending :class:`~providers.models.TopUpIntent` carrying the idempotency
   key (its unique index stops a second request with the same key, even on
   another account, before it reaches a provider) and, for a transfer,
   reserve the credits on the reseller account under ``topup:<intent>``;
2. **call** the provider, no transaction, no lock;
3. **settle** (short transaction, accounts locked): write the ledger rows and
   mark the intent ``applied``; or, on a refusal, release the reservation and
   mark it ``refused``; or, without a clear answer (timeout), mark it
   ``unknown`` and keep the reservation until someone who knows settles it.

An intent left ``pending`` by a crash, or ``confirmed`` but not recorded, is
picked up by ``providers.tasks.reconcile_topup_intents``; ``unknown`` ones are
listed for staff, who settle them with :func:`topup_intent_resolve` after
checking at the provider. Nothing is guessed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from providers.backends.base import Capability, ProviderError
from providers.locking import is_lock_conflict, lock_account, lock_accounts, retry_on_conflict
from providers.models import CreditTransaction, ProviderAccount, TopUpIntent
from providers.services import ledger
from providers.services.amounts import ZERO, check_fits, parse_amount
from providers.services.errors import CreditError, busy_error

if TYPE_CHECKING:
    from providers.backends.base import SmsBackend

logger = logging.getLogger("providers.credits")

Kind = CreditTransaction.Kind
State = TopUpIntent.State

#: A pending intent older than this was abandoned by a crash (the provider
#: call itself times out long before).
STALE_AFTER = timedelta(minutes=10)


class _ResellerClientTopUp:
    """A TransmitSMS reseller's client, topped up through the same claim →
    call → settle steps as a provider top-up (:mod:`providers.reseller_sync`
    does the calls: ``edit-client``, checked by ``get-client``)."""

    name = "transmitsms reseller client"

    def __init__(self, account: ProviderAccount, backend: SmsBackend | None) -> None:
        self.account = account
        self.backend = backend
        #: What reseller_sync answered, kept in the ledger row's provider_response.
        self.provider_response_extra: dict = {}

    def top_up(self, amount: Decimal) -> Decimal | None:
        from providers import reseller_sync

        answer = reseller_sync.client_top_up(
            account=self.account, amount=amount, backend=self.backend
        )
        self.provider_response_extra = dict(answer or {})
        balance = self.provider_response_extra.get("provider_balance")
        return None if balance in (None, "") else Decimal(str(balance))


def _topup_backend(account: ProviderAccount, backend: SmsBackend | None) -> SmsBackend | None:
    """The backend to top up at the provider, or None when it has no such thing.

    A sub-account mirrored as a TransmitSMS reseller client is topped up on
    that client (outside locks, like any provider top-up)."""
    from providers import reseller_sync
    from providers.backends import backend_class

    if reseller_sync.mirrors(account):
        return _ResellerClientTopUp(account, backend)  # type: ignore[return-value]
    if backend is None:
        try:
            capabilities = backend_class(account.backend).capabilities
        except (ImproperlyConfigured, ImportError) as exc:
            raise CreditError(
                f"Cannot load the backend {account.backend!r} of {account.name} ({exc}), so "
                "cannot tell whether the provider must be topped up too. Fix the account's "
                "backend or settings.SMS_BACKENDS.",
                code="backend",
            ) from None
        if Capability.TOPUP not in capabilities:
            return None
        return account.get_backend()
    return backend if Capability.TOPUP in backend.capabilities else None


def _maybe_processed(exc: ProviderError) -> bool:
    """The call may have reached the provider and been applied (timeout...)."""
    return bool(getattr(exc, "maybe_processed", False)) or str(exc.kind) in {
        "timeout",
        "protocol",
    }


# ------------------------------------------------------------------ intents


def _same_movement(intent: TopUpIntent, *, account, source, amount) -> None:
    if (
        intent.account_id != account.pk
        or intent.source_id != (source.pk if source else None)
        or intent.amount != amount
    ):
        raise CreditError(
            f"The idempotency key {intent.idempotency_key!r} was already used for another "
            f"movement (provider top-up #{intent.pk} of {intent.amount} on account "
            f"#{intent.account_id}). Use a new key for a new movement.",
            code="idempotency_conflict",
        )


def _outcome(intent: TopUpIntent) -> CreditTransaction:
    """The first outcome of an intent claimed before: its ledger row, or the
    error that says where it stands."""
    if intent.state == State.APPLIED:
        return intent.ledger_row
    if intent.state == State.REFUSED:
        raise CreditError(
            f"This top-up (#{intent.pk}) was already refused by the provider: {intent.error} "
            "Nothing was recorded here.",
            code="provider",
        )
    raise CreditError(
        f"This top-up of {intent.amount} credits (#{intent.pk}) is already under way: the "
        "credits may have been added; checking… It stays listed under Provider top-ups until "
        "it is settled. Do not top up again.",
        code="provider_unknown",
    )


def _claim(
    *,
    account: ProviderAccount,
    source: ProviderAccount | None,
    amount: Decimal,
    user,
    note: str,
    key: str | None,
    backend_name: str,
) -> TopUpIntent | CreditTransaction:
    """Step 1: a pending intent (and the reseller's credits held), or the
    first outcome when ``key`` was claimed before."""

    def existing():
        if key is None:
            return None
        intent = TopUpIntent.objects.filter(idempotency_key=key).select_related("ledger_row")
        intent = intent.first()
        if intent is None:
            return None
        _same_movement(intent, account=account, source=source, amount=amount)
        return _outcome(intent)

    if (row := existing()) is not None:
        return row
    try:
        with transaction.atomic():
            locked = lock_accounts([account.pk, *([source.pk] if source else [])])
            if (row := existing()) is not None:
                return row
            dst = locked[account.pk]
            check_fits(name=dst.name, balance=dst.balance, amount=amount)
            src = locked[source.pk] if source else None
            if src is not None:
                if dst.parent_id != src.pk:  # re-parented since the caller checked
                    raise CreditError(f"{dst.name} is no longer a sub-account of {src.name}.")
                if src.available < amount:
                    raise ledger.shortfall(src, amount, f"to transfer to {dst.name}")
            intent = TopUpIntent.objects.create(
                account=dst,
                source=src,
                amount=amount,
                idempotency_key=key,
                backend=backend_name,
                note=note,
                created_by=ledger.real_user(user),
            )
            if src is not None:
                ledger.write(
                    src,
                    kind=Kind.RESERVE,
                    reserved_change=amount,
                    user=user,
                    reference=intent.reference,
                    note=f"Held while the provider tops up {dst.name} (top-up #{intent.pk}).",
                )
            return intent
    except IntegrityError:
        # The same key claimed at the same moment (maybe on another account).
        if (row := existing()) is not None:
            return row
        raise


def _lock_intent(intent_id: int) -> tuple[TopUpIntent, dict[int, ProviderAccount]]:
    """Accounts first (lock order), then the intent row."""
    intent = TopUpIntent.objects.get(pk=intent_id)
    locked = lock_accounts([intent.account_id, *([intent.source_id] if intent.source_id else [])])
    intent = (
        TopUpIntent.objects.select_for_update(of=("self",))
        .select_related("ledger_row")
        .get(pk=intent_id)
    )
    return intent, locked


def _mark(intent: TopUpIntent, state: str, **fields) -> None:
    """Move an open intent on (a conditional UPDATE: a settled one is not touched)."""
    TopUpIntent.objects.filter(pk=intent.pk, state__in=TopUpIntent.OPEN).update(
        state=state, **fields
    )


def _settle(intent_id: int, *, user=None) -> CreditTransaction:
    """Step 3 for a confirmed intent: write its ledger rows, once."""
    with transaction.atomic():
        intent, locked = _lock_intent(intent_id)
        if intent.state == State.APPLIED:
            return intent.ledger_row
        if intent.state != State.CONFIRMED:
            raise CreditError(
                f"Top-up #{intent.pk} is {intent.get_state_display().lower()}, not confirmed "
                "by the provider: nothing recorded.",
                code="provider_unknown",
            )
        dst = locked[intent.account_id]
        who = intent.created_by if user is None else user
        if intent.source_id:
            src = locked[intent.source_id]
            ledger.write(
                src,
                kind=Kind.RELEASE,
                reserved_change=-intent.amount,
                reference=intent.reference,
                note=f"The provider topped up {dst.name} (top-up #{intent.pk}).",
            )
            row = ledger.write_pair(
                src,
                dst,
                out_kind=Kind.TRANSFER_OUT,
                in_kind=Kind.TRANSFER_IN,
                amount=intent.amount,
                user=who,
                note=intent.note,
                idempotency_key=intent.idempotency_key,
                reference=intent.reference,
                provider_response=intent.provider_response,
            )
        else:
            row = ledger.write(
                dst,
                kind=Kind.TOP_UP,
                amount=intent.amount,
                user=who,
                note=intent.note,
                idempotency_key=intent.idempotency_key,
                reference=intent.reference,
                provider_response=intent.provider_response,
            )
        TopUpIntent.objects.filter(pk=intent.pk).update(
            state=State.APPLIED,
            ledger_row=row,
            settled_at=timezone.now(),
            settled_by=ledger.real_user(user),
        )
        return row


def _refuse(intent_id: int, *, error: str, user=None) -> None:
    """Step 3 for a refused intent: give the reseller's held credits back."""
    with transaction.atomic():
        intent, locked = _lock_intent(intent_id)
        if intent.state not in (State.PENDING, State.UNKNOWN):
            return
        if intent.source_id:
            ledger.write(
                locked[intent.source_id],
                kind=Kind.RELEASE,
                reserved_change=-intent.amount,
                reference=intent.reference,
                note=f"The provider did not top up (top-up #{intent.pk}).",
            )
        TopUpIntent.objects.filter(pk=intent.pk).update(
            state=State.REFUSED,
            error=error,
            settled_at=timezone.now(),
            settled_by=ledger.real_user(user),
        )


def _settle_confirmed(intent: TopUpIntent, *, account_name: str) -> CreditTransaction:
    """Settle right after the provider said yes; a local failure leaves the
    intent ``confirmed`` for the reconcile task and says so loudly."""
    for attempt in range(3):
        try:
            return _settle(intent.pk)
        except OperationalError as exc:
            if not is_lock_conflict(exc) or attempt == 2:
                failure = exc
                break
        except Exception as exc:
            failure = exc
            break
    logger.critical(
        "PROVIDER TOPPED UP BUT NOT RECORDED: top-up #%s of %s credits on %s was accepted by "
        "the provider (%s) and then recording it failed (%r). It stays confirmed; "
        "providers.tasks.reconcile_topup_intents records it. Do not retry the top-up.",
        intent.pk,
        intent.amount,
        account_name,
        intent.provider_response,
        failure,
    )
    raise CreditError(
        f"The provider added {intent.amount} credits to {account_name} but recording it here "
        f"failed ({type(failure).__name__}). Do not retry: it is listed under Provider top-ups "
        f"(#{intent.pk}) and will be recorded by the reconcile task.",
        code="provider_applied_not_recorded",
    ) from failure


def _via_provider(
    *,
    account: ProviderAccount,
    source: ProviderAccount | None,
    amount: Decimal,
    user,
    note: str,
    key: str | None,
    backend: SmsBackend,
) -> CreditTransaction:
    claimed = _claim(
        account=account,
        source=source,
        amount=amount,
        user=user,
        note=note,
        key=key,
        backend_name=backend.name,
    )
    if isinstance(claimed, CreditTransaction):
        return claimed
    intent = claimed
    try:
        new_balance = backend.top_up(amount)  # step 2: no lock, no transaction of ours
    except ProviderError as exc:
        if _maybe_processed(exc):
            _mark(intent, State.UNKNOWN, error=str(exc)[:2000])
            raise CreditError(
                f"The provider did not confirm the top-up of {amount} credits to {account.name} "
                f"({exc}): they may have been added; checking… Nothing is recorded here until "
                f"it is known; it is listed under Provider top-ups (#{intent.pk}). Do not top "
                "up again.",
                code="provider_unknown",
            ) from exc
        _refuse(intent.pk, error=str(exc)[:2000], user=user)
        raise CreditError(
            f"The provider refused to add {amount} credits to {account.name}: {exc}. "
            "Nothing was recorded here.",
            code="provider",
        ) from exc
    except BaseException as exc:
        # Not a provider answer (a bug, an interrupt): we cannot tell whether
        # the provider applied it, so the intent waits for a person.
        _mark(intent, State.UNKNOWN, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    intent.provider_response = {
        **getattr(backend, "provider_response_extra", {}),
        "backend": backend.name,
        "credits_added": str(amount),
        "provider_balance": None if new_balance is None else str(new_balance),
    }
    _mark(intent, State.CONFIRMED, provider_response=intent.provider_response)
    intent.state = State.CONFIRMED
    return _settle_confirmed(intent, account_name=account.name)


# ------------------------------------------------------------------ services


@retry_on_conflict(busy_error)
def credits_top_up(
    *,
    account: ProviderAccount,
    amount,
    user=None,
    note: str = "",
    idempotency_key: str | None = None,
    backend: SmsBackend | None = None,
) -> CreditTransaction:
    """Add credits to ``account`` (e.g. after a payment). Applies once per key.

    ``user``: None for the system (seed data, payment hooks); a user needs
    ``providers.add_credits``. When the account's backend can ``topup``, the
    provider is topped up without holding locks (claim, call, settle: see the
    module docstring) and its answer stored in ``provider_response``; a
    provider refusal records nothing, an unclear answer raises
    ``CreditError(code="provider_unknown")`` and leaves an ``unknown``
    intent. ``backend`` replaces ``account.get_backend()`` (tests inject a
    MockTransport).
    """
    amount = parse_amount(amount)
    key = ledger.clean_key(idempotency_key)
    if user is not None and not ledger.user_may(user, "add_credits"):
        raise CreditError(
            f"{user} may not add credits; ask a user with the 'add credits' permission.",
            code="forbidden",
        )

    def replayed():
        return ledger.replay(
            key, account_id=account.pk, kind=Kind.TOP_UP, amount=amount, reserved_change=ZERO
        )

    if (row := replayed()) is not None:
        return row
    provider = _topup_backend(account, backend)
    if provider is not None:
        return _via_provider(
            account=account,
            source=None,
            amount=amount,
            user=user,
            note=note,
            key=key,
            backend=provider,
        )

    def apply():
        locked = lock_account(account.pk)
        if (row := replayed()) is not None:
            return row
        check_fits(name=locked.name, balance=locked.balance, amount=amount)
        return ledger.write(
            locked, kind=Kind.TOP_UP, amount=amount, user=user, note=note, idempotency_key=key
        )

    return ledger.once(key, replayed, apply)


def transfer_refusal(*, user, source: ProviderAccount, target: ProviderAccount) -> str | None:
    """Why ``user`` may not move credits from ``source`` to ``target`` (None: may).

    Credits only go from a reseller account down to one of its own
    sub-accounts. Staff who see every account may move them for any
    reseller; anyone else needs ``top_up_account`` and must own ``source``.
    """
    if source.pk == target.pk:
        return f"{source.name} cannot transfer credits to itself."
    if target.parent_id != source.pk:
        return (
            f"{target.name} is not a sub-account of {source.name}; credits only go from a "
            "reseller account to its own sub-accounts."
        )
    if user is None or not user.is_active:
        return "A transfer needs an active user."
    if user.is_superuser or user.has_perm("providers.view_all_accounts"):
        return None
    if not user.has_perm("providers.top_up_account"):
        return f"{user} may not top up accounts (the 'top up account' permission is missing)."
    if not source.owners.filter(pk=user.pk).exists():
        return f"{user} does not manage {source.name}."
    return None


@retry_on_conflict(busy_error)
def credits_transfer(
    *,
    source: ProviderAccount,
    target: ProviderAccount,
    amount,
    user,
    note: str = "",
    idempotency_key: str | None = None,
    backend: SmsBackend | None = None,
) -> CreditTransaction:
    """Move credits from a reseller account to one of its sub-accounts.

    Writes a ``transfer_out`` row on ``source`` and a ``transfer_in`` row on
    ``target`` (each naming the other as counterparty) and returns the
    ``transfer_out`` row. Refused when ``source`` has less available than
    ``amount`` ("has X available, needs Y") or ``user`` may not (see
    :func:`transfer_refusal`). When the target's backend can ``topup`` the
    provider-side sub-account is topped up outside the locks (claim, call,
    settle), the credits held on ``source`` meanwhile; ``backend`` is the
    target's backend (tests inject one).
    """
    amount = parse_amount(amount)
    key = ledger.clean_key(idempotency_key)
    if (reason := transfer_refusal(user=user, source=source, target=target)) is not None:
        raise CreditError(reason, code="forbidden")

    def replayed():
        return ledger.replay(
            key,
            account_id=source.pk,
            kind=Kind.TRANSFER_OUT,
            amount=-amount,
            reserved_change=ZERO,
            counterparty_id=target.pk,
        )

    if (row := replayed()) is not None:
        return row
    provider = _topup_backend(target, backend)
    if provider is not None:
        return _via_provider(
            account=target,
            source=source,
            amount=amount,
            user=user,
            note=note,
            key=key,
            backend=provider,
        )

    def apply():
        locked = lock_accounts([source.pk, target.pk])
        src, dst = locked[source.pk], locked[target.pk]
        if (row := replayed()) is not None:
            return row
        if dst.parent_id != src.pk:  # re-parented since the check above
            raise CreditError(f"{dst.name} is no longer a sub-account of {src.name}.")
        if src.available < amount:
            raise ledger.shortfall(src, amount, f"to transfer to {dst.name}")
        check_fits(name=dst.name, balance=dst.balance, amount=amount)
        return ledger.write_pair(
            src,
            dst,
            out_kind=Kind.TRANSFER_OUT,
            in_kind=Kind.TRANSFER_IN,
            amount=amount,
            user=user,
            note=note,
            idempotency_key=key,
        )

    return ledger.once(key, replayed, apply)


# --------------------------------------------------------- open intents


def topup_intent_resolve(*, intent: TopUpIntent, applied: bool, user, note: str = "") -> str:
    """A person settles an ``unknown`` (or stale ``pending``) intent after
    checking at the provider: ``applied`` records the ledger rows, otherwise
    the held credits go back. Needs ``providers.add_credits``. Returns what
    was done, for the page."""
    if not ledger.user_may(user, "add_credits"):
        raise CreditError(
            f"{user} may not settle provider top-ups (the 'add credits' permission is missing).",
            code="forbidden",
        )
    intent = TopUpIntent.objects.get(pk=intent.pk)
    if intent.state not in (State.UNKNOWN, State.PENDING):
        raise CreditError(
            f"Top-up #{intent.pk} is already {intent.get_state_display().lower()}.",
            code="settled",
        )
    text = (note or "").strip()
    if applied:
        response = {
            **(intent.provider_response or {}),
            "resolved_by": getattr(user, "username", str(user)),
            "resolved": "applied at the provider (checked by a person)",
            "note": text,
        }
        _mark(intent, State.CONFIRMED, provider_response=response)
        row = _settle(intent.pk, user=user)
        return f"Top-up #{intent.pk} recorded as applied (ledger #{row.pk})."
    _refuse(
        intent.pk,
        error=f"Not applied at the provider (checked by {user}). {text}".strip(),
        user=user,
    )
    return f"Top-up #{intent.pk} recorded as not applied; nothing was added."


def topup_intents_reconcile(*, now=None) -> dict[str, int]:
    """What the periodic task does: record ``confirmed`` intents (the provider
    said yes), and turn ``pending`` ones older than :data:`STALE_AFTER` (a
    crash between claim and answer) into ``unknown`` for a person. Returns
    counts ``{"recorded": n, "marked_unknown": n, "unknown": n}``."""
    now = now or timezone.now()
    recorded = 0
    for pk in TopUpIntent.objects.filter(state=State.CONFIRMED).values_list("pk", flat=True):
        try:
            _settle(pk)
            recorded += 1
        except Exception:
            logger.exception("Could not record confirmed top-up #%s", pk)
    stale = TopUpIntent.objects.filter(state=State.PENDING, created_at__lt=now - STALE_AFTER)
    marked = stale.update(
        state=State.UNKNOWN,
        error="Abandoned before the provider answered (crash or restart): check at the "
        "provider whether the credits were added, then settle it.",
    )
    unknown = TopUpIntent.objects.filter(state=State.UNKNOWN).count()
    if marked or unknown:
        logger.warning(
            "%d provider top-up(s) need a person to check at the provider (%d newly).",
            unknown,
            marked,
        )
    return {"recorded": recorded, "marked_unknown": marked, "unknown": unknown}
