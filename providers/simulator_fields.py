"""The simulator's knobs as account form fields.

The simulator keeps its knobs in the account's credentials JSON (see
:mod:`providers.backends.simulator`). Typing a JSON object there replaces
every stored knob, so changing one (``{"reply_rate": 0.3}``) silently lost
the others (its prices, failing numbers, mix, balance...). These fields show
each knob with its stored value and write back only the ones that were
edited: an edited field sets its knob, an emptied one removes it (the
simulator's default applies again), an untouched one leaves it as stored.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms

from providers.backends.base import ProviderError
from providers.backends.simulator import DEFAULT_MIX, OUTCOMES, parse_config

BACKEND = "simulator"
PREFIX = "sim__"
#: How far the mix may stray from 1 (shares typed with a few decimals).
MIX_TOLERANCE = 1e-6


def sim_field_name(knob: str) -> str:
    return f"{PREFIX}{knob}"


def mix_field_name(outcome: str) -> str:
    return f"{PREFIX}mix__{outcome}"


def _share(label: str, help_text: str = "") -> forms.FloatField:
    return forms.FloatField(
        label=label, required=False, min_value=0, max_value=1, help_text=help_text
    )


def _knob_fields() -> dict[str, forms.Field]:
    """Knob name -> form field (mix shares apart)."""
    return {
        "delivery_delay": forms.FloatField(
            label="Delivery delay (seconds)",
            required=False,
            min_value=0,
            help_text="From sending to the receipt; each message between half and one and a "
            "half times this. Default 5.",
        ),
        "reply_rate": _share("Reply rate", "Share of delivered messages answered. Default 0.05."),
        "stop_share": _share("STOP share", "Share of replies that are STOP. Default 0.2."),
        "error_rate": _share(
            "Error rate", "Share of send calls failing transiently (HTTP 503 alike). Default 0."
        ),
        "timeout_rate": _share(
            "Timeout rate", "Share of send calls accepted but answering a timeout. Default 0."
        ),
        "latency": forms.FloatField(
            label="Latency (seconds)",
            required=False,
            min_value=0,
            max_value=10,
            help_text="Time each call takes, at most 10. Default 0.",
        ),
        "rate_limited": forms.FloatField(
            label="Rate limited (seconds)",
            required=False,
            min_value=0,
            max_value=3600,
            help_text="When set, every call is refused like an HTTP 429 with this Retry-After.",
        ),
        "unavailable": forms.BooleanField(
            label="Unavailable", required=False, help_text="Every call fails (HTTP 503 alike)."
        ),
        "seed": forms.CharField(
            label="Seed",
            required=False,
            help_text="Outcomes, delays and replies depend only on it. Default 0.",
        ),
        "initial_balance": forms.DecimalField(
            label="Initial balance (credits)",
            required=False,
            min_value=Decimal(0),
            help_text="The simulated provider's balance before our first top-up. Default 0.",
        ),
        "fail_numbers": forms.CharField(
            label="Failing numbers",
            required=False,
            help_text="Numbers refused at send time, separated by commas or spaces.",
        ),
    }


def simulator_form_fields() -> dict[str, forms.Field]:
    """The form fields, named ``sim__<knob>`` and ``sim__mix__<outcome>``."""
    fields = {sim_field_name(knob): field for knob, field in _knob_fields().items()}
    for outcome in OUTCOMES:
        default = DEFAULT_MIX.get(outcome, 0)
        fields[mix_field_name(outcome)] = _share(
            f"Outcome mix: {outcome}",
            f"Share of messages ending {outcome}; the six shares add up to 1. Default {default}.",
        )
    for field in fields.values():
        field.widget.attrs["data-backend"] = BACKEND
    return fields


SIMULATOR_FIELD_NAMES = tuple(simulator_form_fields())


def _shown(knob: str, value: Any) -> Any:
    """A stored knob as its field shows it."""
    if knob == "fail_numbers" and isinstance(value, list | tuple):
        return ", ".join(str(n) for n in value)
    if knob == "seed":
        return str(value)  # a text field: 7 and "7" are the same seed shown
    return value


def initial_values(credentials: dict[str, Any]) -> dict[str, Any]:
    """Each field's initial value from the stored knobs (the mix shows its
    defaults when none is stored, so editing one share asks for the rest)."""
    initial: dict[str, Any] = {}
    for knob in _knob_fields():
        stored = credentials.get(knob)
        if knob == "initial_balance" and stored is None:
            stored = credentials.get("balance")  # the knob's old name
        if stored not in (None, ""):
            initial[sim_field_name(knob)] = _shown(knob, stored)
    mix = credentials.get("mix")
    if not isinstance(mix, dict):
        mix = DEFAULT_MIX
    for outcome in OUTCOMES:
        initial[mix_field_name(outcome)] = mix.get(outcome, 0)
    return initial


def _stored_form(knob: str, value: Any) -> Any:
    """A cleaned field value as the knob is stored in the credentials JSON."""
    if knob == "fail_numbers":
        return [n for n in value.replace(",", " ").split() if n]
    if isinstance(value, Decimal):
        return str(value)
    return value


def apply_edits(
    base: dict[str, Any], cleaned: dict[str, Any], changed: list[str]
) -> tuple[dict[str, Any], dict[str | None, str]]:
    """The knobs after the edited fields (``changed``) are applied to ``base``;
    returns them with errors (field name or ``None`` -> message)."""
    knobs = dict(base)
    errors: dict[str | None, str] = {}
    for knob in _knob_fields():
        name = sim_field_name(knob)
        if name not in changed:
            continue
        value = cleaned.get(name)
        if knob == "initial_balance":
            knobs.pop("balance", None)  # one name only, or the old one would linger
        if value is None or value == "" or (knob == "unavailable" and value is False):
            knobs.pop(knob, None)
        else:
            knobs[knob] = _stored_form(knob, value)
    mix_names = [mix_field_name(o) for o in OUTCOMES]
    if any(name in changed for name in mix_names):
        shares = {o: cleaned.get(mix_field_name(o)) or 0.0 for o in OUTCOMES}
        total = sum(shares.values())
        if abs(total - 1) > MIX_TOLERANCE:
            errors[mix_field_name("delivered")] = (
                f"The outcome mix adds up to {total:g}, not 1: adjust the shares so that "
                "together they make 1 (e.g. 0.9 delivered, 0.1 undelivered)."
            )
        else:
            knobs["mix"] = {o: s for o, s in shares.items() if s}
    if not errors:
        try:
            parse_config(knobs)
        except ProviderError as exc:
            errors[None] = str(exc)
    return knobs, errors


def describe(knobs: dict[str, Any]) -> str:
    return json.dumps(knobs, sort_keys=True)
