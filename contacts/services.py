"""State changes of contacts: opt-outs (adding, opting back in, removing).

Opt-outs only grow: a STOP, a staff entry or an import opts a number out;
the only ways back are a START on the same provider account that received
the STOP that opted the number out (:func:`optout_opt_in`), or a person
removing it (:func:`optout_remove`). Every call, including a START that was
not allowed to lift anything, appends an :class:`OptOutEvent`, so the
history of a number survives the removal of its opt-out.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from contacts.models import OptOut, OptOutEvent
from contacts.phones import normalize_phone

logger = logging.getLogger("contacts")

Outcome = OptOutEvent.Outcome


def _user_or_none(user):
    return user if getattr(user, "pk", None) else None


def optout_add(
    *,
    phone: str,
    source: str,
    reason: str = "",
    source_reference: str = "",
    user=None,
    account_id: int | None = None,
) -> OptOut:
    """Opt ``phone`` out (any format; stored as E.164) and return its OptOut.

    A number already opted out keeps its first record (who, when, why), so
    a second STOP changes nothing but the history. ``account_id`` is the
    provider account a STOP reply came in on (only a START there may lift
    it). Safe under concurrent calls. Raises ``ValidationError`` for a number
    that is not one, and ``ValueError`` for an unknown ``source`` (see
    ``OptOut.Source``).
    """
    if source not in OptOut.Source.values:
        raise ValueError(
            f"Unknown opt-out source {source!r}; use one of {', '.join(OptOut.Source.values)}."
        )
    e164 = normalize_phone(phone)
    user = _user_or_none(user)
    event = {
        "phone": e164,
        "action": OptOutEvent.Action.OPT_OUT,
        "source": source,
        "reason": reason[:255],
        "source_reference": source_reference[:100],
        "account_id": account_id,
        "created_by": user,
    }
    existing = OptOut.objects.filter(phone=e164).first()
    if existing is None:
        try:
            with transaction.atomic():
                optout = OptOut.objects.create(
                    phone=e164,
                    source=source,
                    reason=reason[:255],
                    source_reference=source_reference[:100],
                    source_account_id=account_id,
                    created_by=user,
                )
                OptOutEvent.objects.create(**event, outcome=Outcome.OPTED_OUT)
        except IntegrityError:
            # Opted out by a concurrent request between our read and insert.
            existing = OptOut.objects.get(phone=e164)
        else:
            logger.info(
                "opt-out added: %s (source %s, reference %r, user %s)",
                e164,
                source,
                source_reference,
                getattr(user, "pk", None),
            )
            return optout
    OptOutEvent.objects.create(**event, outcome=Outcome.ALREADY)
    return existing


def optout_opt_in(*, phone: str, account_id: int, source_reference: str = "") -> bool:
    """A START from ``phone`` received on provider account ``account_id``.

    Lifts the number's opt-out only when it came from a STOP reply on that
    same account; an opt-out entered by staff, imported, reported by a
    provider, or from a STOP on another account stays. The request is
    recorded either way (with what it did). Returns whether it lifted one.
    """
    e164 = normalize_phone(phone)
    with transaction.atomic():
        optout = OptOut.objects.select_for_update().filter(phone=e164).first()
        if optout is None:
            outcome, reason = Outcome.NOT_OPTED_OUT, ""
        elif optout.source == OptOut.Source.KEYWORD and optout.source_account_id == account_id:
            outcome, reason = Outcome.LIFTED, f"Lifted the STOP of {optout.source_reference}"
            optout.delete()
        else:
            outcome = Outcome.KEPT
            reason = (
                f"Opted out by {optout.get_source_display().lower()}"
                + (f" ({optout.reason})" if optout.reason else "")
                + (
                    " on another account"
                    if optout.source == OptOut.Source.KEYWORD
                    else ": only staff can remove it"
                )
            )[:255]
        OptOutEvent.objects.create(
            phone=e164,
            action=OptOutEvent.Action.OPT_IN,
            outcome=outcome,
            source=OptOut.Source.KEYWORD,
            reason=reason,
            source_reference=source_reference[:100],
            account_id=account_id,
        )
    logger.info(
        "opt-in request: %s on account %s (reference %r): %s",
        e164,
        account_id,
        source_reference,
        outcome,
    )
    return outcome == Outcome.LIFTED


def optout_remove(*, phone: str, user, reason: str = "", source_reference: str = "") -> bool:
    """Staff opt ``phone`` back in: its OptOut goes, the history records who
    removed it, why, and what the opt-out was. Returns whether there was one."""
    e164 = normalize_phone(phone)
    user = _user_or_none(user)
    with transaction.atomic():
        optout = OptOut.objects.select_for_update().filter(phone=e164).first()
        if optout is None:
            return False
        was = f"was {optout.get_source_display().lower()}" + (
            f": {optout.reason}" if optout.reason else ""
        )
        optout.delete()
        OptOutEvent.objects.create(
            phone=e164,
            action=OptOutEvent.Action.REMOVED,
            outcome=Outcome.LIFTED,
            source=optout.source,
            reason=(f"{reason} ({was})" if reason else was)[:255],
            source_reference=source_reference[:100],
            account_id=optout.source_account_id,
            created_by=user,
        )
    logger.info(
        "opt-out removed: %s (was %s %r; reference %r, user %s)",
        e164,
        optout.source,
        optout.reason,
        source_reference,
        getattr(user, "pk", None),
    )
    return True
