"""State changes of contacts: opt-outs (adding and removing a number)."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from contacts.models import OptOut
from contacts.phones import normalize_phone

logger = logging.getLogger("contacts")


def optout_add(
    *,
    phone: str,
    source: str,
    reason: str = "",
    source_reference: str = "",
    user=None,
) -> OptOut:
    """Opt ``phone`` out (any format; stored as E.164) and return its OptOut.

    A number already opted out keeps its first record (who, when, why), so
    a second STOP changes nothing. Safe under concurrent calls. Raises
    ``ValidationError`` for a number that is not one, and ``ValueError`` for
    an unknown ``source`` (see ``OptOut.Source``).
    """
    if source not in OptOut.Source.values:
        raise ValueError(
            f"Unknown opt-out source {source!r}; use one of {', '.join(OptOut.Source.values)}."
        )
    e164 = normalize_phone(phone)
    existing = OptOut.objects.filter(phone=e164).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            optout = OptOut.objects.create(
                phone=e164,
                source=source,
                reason=reason[:255],
                source_reference=source_reference[:100],
                created_by=user if getattr(user, "pk", None) else None,
            )
    except IntegrityError:
        # Opted out by a concurrent request between our read and insert.
        return OptOut.objects.get(phone=e164)
    logger.info(
        "opt-out added: %s (source %s, reference %r, user %s)",
        e164,
        source,
        source_reference,
        getattr(user, "pk", None),
    )
    return optout


def optout_remove(*, phone: str, source_reference: str = "", user=None) -> bool:
    """Opt ``phone`` back in: delete its OptOut. Returns whether there was one.

    The removal is logged with what asked for it (``source_reference``, e.g.
    the inbound message that said START, or the staff ``user``).
    """
    e164 = normalize_phone(phone)
    with transaction.atomic():
        removed = list(
            OptOut.objects.select_for_update().filter(phone=e164).values_list("source", "reason")
        )
        OptOut.objects.filter(phone=e164).delete()
    if removed:
        logger.info(
            "opt-out removed: %s (was %s %r; reference %r, user %s)",
            e164,
            removed[0][0],
            removed[0][1],
            source_reference,
            getattr(user, "pk", None),
        )
    return bool(removed)
