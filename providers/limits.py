"""What each provider accepts: body length and sender ID rules, from their docs.

Keyed by backend name (``ProviderAccount.backend``). A backend not listed
here (a custom one, or the simulator) gets :data:`DEFAULT_LIMITS`, which are
as generous as the most generous real provider we quote against (SMS
Everyone), so a campaign that quotes cleanly on the simulator is not
surprising on a real account, except for that provider's own rules.

Sources (``/work/shared/provider-docs`` excerpts):

- SMS Everyone: "The message body in a request can contain up to 2000
  characters"; originator errors -113 length, -114 invalid characters, -131
  unregistered origin; numbers are sent without ``+``.
- The SMS Works: "You can send messages of up to 1280 characters"; sender
  "alphanumeric and must be between 3 and 11 characters. No spaces or
  special characters ... Alternatively ... up to 15 numeric characters"
  (error 4003: 3 - 11 alphanumeric, 3 - 15 digits).
- FullSMS: "Messages containing only 3GPP 7bit compatible characters can
  contain up to 612 characters. Messages that cannot be encoded by 3GPP
  must contain up to 268 characters" (4 parts of 153 / 67, so counted in
  units); ``from`` is an E.164 number or an approved custom sender ID.
- TransmitSMS: 612 characters (4 parts of 153); ``from`` is optional (the
  shared number pool is used when it is empty).
- CALLR: body "Max length = 3200 characters"; ``from`` empty (shared
  shortcode), a dedicated shortcode, or alphanumeric up to 11 characters
  "a-zA-Z0-9, space, dash, underscore - must contain at least one alpha
  character".

Whether a sender ID is *registered / approved* at the provider cannot be
known locally; these checks only refuse what the provider would refuse by
its format rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from providers.sms import GSM7, PART_LIMIT, UCS2, SmsMeasure


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """Body and sender rules of one provider.

    ``max_characters`` is checked against code points, ``max_units`` (per
    encoding) against GSM-7 septets / UCS-2 units, for providers whose
    limit is a number of parts (612 = 4 x 153).
    """

    label: str
    max_characters: int | None = None
    max_units: Mapping[str, int] = field(default_factory=dict)
    sender_required: bool = False
    alpha_min: int = 1
    alpha_max: int = 11
    #: Characters allowed in an alphanumeric sender besides letters and digits.
    alpha_extra: str = ""
    numeric_min: int = 1
    numeric_max: int = 15
    sender_note: str = ""


LIMITS: dict[str, ProviderLimits] = {
    "smseveryone": ProviderLimits(
        label="SMS Everyone",
        max_characters=2000,
        sender_required=True,
        sender_note="It must also be an origin registered with SMS Everyone.",
    ),
    "thesmsworks": ProviderLimits(
        label="The SMS Works",
        max_characters=1280,
        sender_required=True,
        alpha_min=3,
        numeric_min=3,
    ),
    "fullsms": ProviderLimits(
        label="FullSMS",
        max_units={GSM7: 612, UCS2: 268},
        sender_required=True,
        sender_note="A custom sender ID must be approved in your FullSMS account.",
    ),
    "transmitsms": ProviderLimits(
        label="TransmitSMS",
        max_units={GSM7: 612},
        sender_required=False,
    ),
    "callr": ProviderLimits(
        label="CALLR",
        max_characters=3200,
        sender_required=False,
        alpha_extra=" -_",
        sender_note='Custom sender IDs may need approval by CALLR ("SMS" is always allowed).',
    ),
}

#: For the simulator and any backend without documented limits.
DEFAULT_LIMITS = ProviderLimits(label="This provider", max_characters=2000)


def limits_for(backend: str) -> ProviderLimits:
    """The rules of ``backend`` (a ``ProviderAccount.backend`` key)."""
    if backend in LIMITS:
        return LIMITS[backend]
    if backend == "simulator":
        return ProviderLimits(label="The simulator", max_characters=DEFAULT_LIMITS.max_characters)
    return DEFAULT_LIMITS


def body_too_long(limits: ProviderLimits, *, characters: int, encoding: str, units: int) -> bool:
    """Fast per-recipient test: does a message of this size break ``limits``?"""
    if limits.max_characters is not None and characters > limits.max_characters:
        return True
    max_units = limits.max_units.get(encoding)
    return max_units is not None and units > max_units


def body_errors(
    limits: ProviderLimits, *, characters: int, encoding: str, units: int, what: str = "The message"
) -> list[str]:
    """Messages explaining how a body of this size breaks ``limits`` (empty if fine)."""
    errors: list[str] = []
    if limits.max_characters is not None and characters > limits.max_characters:
        errors.append(
            f"{what} is {characters} characters; {limits.label} accepts at most "
            f"{limits.max_characters} characters per message. "
            f"Shorten it by {characters - limits.max_characters} characters."
        )
    max_units = limits.max_units.get(encoding)
    if max_units is not None and units > max_units:
        parts = max_units // PART_LIMIT[encoding]
        how = (
            "extension characters | ^ € { } [ ] ~ \\ count 2"
            if encoding == GSM7
            else "an emoji counts 2"
        )
        advice = f"Shorten it by {units - max_units}"
        if encoding == UCS2 and GSM7 in limits.max_units:
            advice += (
                f", or remove the characters that force UCS-2 "
                f"(then up to {limits.max_units[GSM7]} GSM-7 characters fit)"
            )
        errors.append(
            f"{what} needs {units} {encoding} units ({how}); {limits.label} accepts at most "
            f"{max_units} {encoding} units ({parts} SMS parts). {advice}."
        )
    return errors


def check_body(backend: str, measure: SmsMeasure) -> list[str]:
    """Errors for a measured body on ``backend``: empty, or over the provider's limit."""
    if measure.characters == 0:
        return ["The message is empty: write a text (or choose a template with one)."]
    return body_errors(
        limits_for(backend),
        characters=measure.characters,
        encoding=measure.encoding,
        units=measure.units,
    )


_ALNUM = re.compile(r"[A-Za-z0-9]")
_LETTER = re.compile(r"[A-Za-z]")


def check_sender(backend: str, sender: str) -> list[str]:
    """Errors for ``sender`` (the sender ID / originator) on ``backend``.

    A sender is numeric (digits, optionally with a leading ``+`` that the
    backend formats as the provider wants) or alphanumeric (ASCII letters
    and digits, with at least one letter). Empty means "the provider's
    default", which only some providers allow.
    """
    limits = limits_for(backend)
    sender = sender or ""
    if not sender.strip():
        if limits.sender_required:
            return [
                f"{limits.label} needs a sender ID: set one on the campaign or a default "
                f"sender on the provider account."
            ]
        return []
    if sender != sender.strip():
        return [f"The sender ID {sender!r} starts or ends with a space: remove it."]

    digits = sender[1:] if sender.startswith("+") else sender
    if digits.isascii() and digits.isdigit():
        if not limits.numeric_min <= len(digits) <= limits.numeric_max:
            return [
                f"The numeric sender {sender!r} has {len(digits)} digits; {limits.label} "
                f"accepts {_range(limits.numeric_min, limits.numeric_max)} digits."
            ]
        return []
    if sender.startswith("+"):
        return [f"The sender ID {sender!r} starts with + but is not a number: use digits only."]

    errors: list[str] = []
    bad = sorted({c for c in sender if not (_ALNUM.match(c) or c in limits.alpha_extra)})
    if bad:
        allowed = "letters A-Z and digits"
        if limits.alpha_extra:
            names = {" ": "space", "-": "dash", "_": "underscore"}
            allowed += ", " + ", ".join(names.get(c, c) for c in limits.alpha_extra)
        errors.append(
            f"The sender ID {sender!r} contains {', '.join(repr(c) for c in bad)}; "
            f"{limits.label} allows only {allowed}."
        )
    if not _LETTER.search(sender):
        errors.append(
            f"The sender ID {sender!r} needs at least one letter (or use a phone number)."
        )
    if not limits.alpha_min <= len(sender) <= limits.alpha_max:
        errors.append(
            f"The sender ID {sender!r} is {len(sender)} characters; {limits.label} accepts "
            f"{_range(limits.alpha_min, limits.alpha_max)} characters for an alphanumeric "
            f"sender."
        )
    if errors and limits.sender_note:
        errors[-1] += " " + limits.sender_note
    return errors


def _range(low: int, high: int) -> str:
    return f"up to {high}" if low <= 1 else f"{low} to {high}"
