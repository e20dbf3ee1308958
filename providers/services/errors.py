"""The one error every credit service raises for a movement it will not apply."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class CreditError(ValidationError):
    """A credit movement that cannot be applied (message says why and the numbers).

    ``code`` names the reason for callers that branch on it: ``amount``,
    ``insufficient_credit``, ``insufficient_reserved``, ``forbidden``,
    ``idempotency_conflict``, ``busy`` (lost a lock conflict; nothing written,
    try again), ``provider``, ``provider_unknown`` (the provider may have
    applied it; being checked), ...
    """


def busy_error(exc: BaseException) -> CreditError:
    """The refusal of a movement that kept losing lock conflicts."""
    return CreditError(
        "The credits could not be moved just now because other movements on the same "
        "accounts were in the way; nothing was written. Try again in a moment.",
        code="busy",
    )
