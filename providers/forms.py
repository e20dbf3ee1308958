"""Forms of provider accounts: credentials asked per backend, sender choices.

Each backend declares the credentials it needs
(:attr:`~providers.backends.base.SmsBackend.credential_fields`); the account
form has one field per backend and credential, named
``credential__<backend>__<name>``, and uses those of the chosen backend
(a small script shows only those). Secrets are write-only: never rendered,
left empty to keep what is stored. The raw JSON field stays for extra keys
(and backends that declare nothing); what it holds is replaced by it, then
the per-field values are applied on top.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.html import format_html

from providers.backends import backend_class
from providers.backends.base import CredentialField, SenderOption, SmsBackend
from providers.limits import check_sender
from providers.models import ProviderAccount
from providers.senders import AccountSenders, account_senders
from providers.services import parse_country_rates
from providers.simulator_fields import (
    BACKEND as SIMULATOR,
)
from providers.simulator_fields import (
    SIMULATOR_FIELD_NAMES,
    apply_edits,
    initial_values,
    mix_field_name,
    simulator_form_fields,
)

PREFIX = "credential__"


def credential_field_name(backend: str, name: str) -> str:
    return f"{PREFIX}{backend}__{name}"


def _backends() -> list[tuple[str, type[SmsBackend]]]:
    found = []
    for key in settings.SMS_BACKENDS:
        try:
            found.append((key, backend_class(key)))
        except (ImproperlyConfigured, ImportError):
            continue
    return found


def credential_form_fields() -> dict[str, forms.Field]:
    """One optional form field per backend and declared credential."""
    fields: dict[str, forms.Field] = {}
    for key, cls in _backends():
        for spec in cls.credential_fields:
            widget: forms.Widget
            if spec.secret:
                widget = forms.PasswordInput(
                    render_value=False, attrs={"autocomplete": "new-password"}
                )
            else:
                widget = forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})
            widget.attrs["data-backend"] = key
            fields[credential_field_name(key, spec.name)] = forms.CharField(
                label=f"{cls.label or key}: {spec.label}",
                required=False,
                strip=True,
                widget=widget,
                help_text=spec.help_text,
            )
    return fields


#: The names of the per-backend credential fields, for the admin's fieldsets.
CREDENTIAL_FIELD_NAMES = tuple(credential_form_fields())


class DatalistInput(forms.TextInput):
    """A text input with suggestions (an HTML ``<datalist>``): pick or type."""

    template_name = "providers/widgets/datalist_input.html"

    def __init__(self, *, options: list[SenderOption], list_id: str, attrs=None):
        super().__init__({**(attrs or {}), "list": list_id})
        self.options = options
        self.list_id = list_id

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["datalist"] = {"id": self.list_id, "options": self.options}
        return context


def attach_sender_choices(field: forms.Field, senders: AccountSenders, *, list_id: str) -> None:
    """Offer the provider's senders on ``field`` and say what they are, or
    why the provider's list is missing."""
    if senders.known and not senders.options:
        return
    if senders.known:
        field.widget = DatalistInput(
            options=senders.options, list_id=list_id, attrs=field.widget.attrs
        )
        note = f"{senders.describe()} (from the provider)."
        field.help_text = f"Senders this account may use: {note} {field.help_text or ''}".strip()
    elif senders.error:
        field.help_text = f"{senders.error} {field.help_text or ''}".strip()


def sender_refused(senders: AccountSenders, sender: str, backend: str) -> str:
    """The error for a ``sender`` the provider is known to refuse, or ""."""
    if not senders.refuses(sender):
        return ""
    label = backend_class(backend).label or backend
    return (
        f"{label} does not list {sender!r} among this account's senders, so it would refuse "
        f"to send from it. Choose one of: {senders.describe()} (or have it approved at "
        f"{label} first)."
    )


class BaseProviderAccountForm(forms.ModelForm):
    """The account form; see the module docstring for credentials."""

    credentials_input = forms.CharField(
        label="Credentials (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text='Advanced: a JSON object, e.g. {"username": "…", "password": "…"}, '
        "replacing every stored credential (the fields above then apply on top). Leave empty "
        "to keep the stored credentials; they are never displayed.",
    )

    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Leave empty for the provider's default.",
    )

    class Meta:
        model = ProviderAccount
        exclude = ["credentials", "balance", "reserved"]  # noqa: DJ006 - hide secrets

    class Media:
        js = ["providers/credential_fields.js"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = dict(self.instance.credentials or {}) if self.instance.pk else {}
        keys = sorted(stored)
        if keys and "credentials_input" in self.fields:
            # The admin renders help text as HTML: key names are escaped here,
            # as whoever saved the credentials chose them.
            self.fields["credentials_input"].help_text = format_html(
                "Stored: {} (values hidden). {}",
                ", ".join(str(key) for key in keys),
                self.fields["credentials_input"].help_text,
            )
        if "min_credits_per_segment" in self.fields:
            self.fields["min_credits_per_segment"].required = False
        for key, cls in _backends():
            same = self.instance.pk and self.instance.backend == key
            for spec in cls.credential_fields:
                name = credential_field_name(key, spec.name)
                if name not in self.fields:
                    continue
                field = self.fields[name]
                if spec.secret:
                    if same and stored.get(spec.name):
                        field.help_text = (
                            "Stored (hidden): leave empty to keep it. " + field.help_text
                        )
                elif same and stored.get(spec.name) not in (None, ""):
                    field.initial = str(stored[spec.name])
        sim_stored = stored if self.instance.pk and self.instance.backend == SIMULATOR else {}
        for name, value in initial_values(sim_stored).items():
            if name in self.fields:
                self.fields[name].initial = value
        if "default_sender" in self.fields and self.instance.pk:
            attach_sender_choices(
                self.fields["default_sender"],
                account_senders(self.instance),
                list_id="default-sender-choices",
            )

    # ---------------------------------------------------------------- clean
    def clean_credentials_input(self):
        raw = self.cleaned_data["credentials_input"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Credentials must be a JSON object: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Credentials must be a JSON object like {"key": "value"}.')
        return value

    def clean_country_rates(self):
        return parse_country_rates(self.cleaned_data.get("country_rates"))

    def clean_min_country_rates(self):
        return parse_country_rates(self.cleaned_data.get("min_country_rates"))

    def clean_min_credits_per_segment(self):
        return self.cleaned_data.get("min_credits_per_segment") or Decimal("0")

    def clean_provider_time_zone(self):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        zone = (self.cleaned_data.get("provider_time_zone") or "").strip()
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise forms.ValidationError(
                    f"{zone!r} is not a time zone name; use one such as Australia/Sydney or UTC."
                ) from None
        return zone

    def _backend(self) -> str:
        if "backend" in self.fields:
            return self.cleaned_data.get("backend") or ""
        return self.instance.backend

    def _credentials_after(self, backend: str) -> dict[str, Any] | None:
        """The credentials this form would store, or ``None`` when it keeps
        the stored ones untouched."""
        raw = self.cleaned_data.get("credentials_input")
        entered = {}
        try:
            specs: tuple[CredentialField, ...] = backend_class(backend).credential_fields
        except (ImproperlyConfigured, ImportError):
            specs = ()
        for spec in specs:
            value = self.cleaned_data.get(credential_field_name(backend, spec.name))
            if value:
                entered[spec.name] = value
        switched = bool(self.instance.pk) and backend != self.instance.backend
        stored = {} if switched else dict(self.instance.credentials or {})
        # A shown (non-secret) field emptied on purpose removes the value.
        removed = [
            spec.name
            for spec in specs
            if not spec.secret
            and credential_field_name(backend, spec.name) in self.data
            and not self.cleaned_data.get(credential_field_name(backend, spec.name))
            and spec.name in stored
        ]
        if raw is None and not entered and not removed and not switched:
            return None
        # Another provider's credentials mean nothing to this one.
        base = dict(raw) if raw is not None else stored
        for name in removed:
            base.pop(name, None)
        base.update(entered)
        return base

    def clean(self):
        cleaned = super().clean()
        backend = self._backend()
        if backend:
            credentials = self._credentials_after(backend)
            if backend == SIMULATOR:
                credentials = self._simulator_knobs_after(credentials)
            self._new_credentials = credentials
            self._check_required(backend, credentials)
        # An empty default is allowed: campaigns may set their own sender (the
        # quote refuses a campaign that ends up with none where one is needed).
        sender = cleaned.get("default_sender")
        if sender and backend:
            errors = check_sender(backend, sender)
            for error in errors:
                self.add_error("default_sender", error)
            if not errors and self.instance.pk and backend == self.instance.backend:
                refused = sender_refused(account_senders(self.instance), sender, backend)
                if refused:
                    self.add_error("default_sender", refused)
        return cleaned

    def _simulator_knobs_after(self, credentials: dict[str, Any] | None) -> dict[str, Any] | None:
        """The simulator's knobs with its edited fields applied on top of
        ``credentials`` (or of the stored knobs): only what was edited changes.
        The fields count only when the page showed them (a post without them
        edits nothing)."""
        if mix_field_name("delivered") not in self.data:
            return credentials
        changed = [name for name in self.changed_data if name in SIMULATOR_FIELD_NAMES]
        if not changed:
            return credentials
        switched = bool(self.instance.pk) and self.instance.backend != SIMULATOR
        stored = {} if switched else dict(self.instance.credentials or {})
        base = credentials if credentials is not None else stored
        knobs, errors = apply_edits(base, self.cleaned_data, changed)
        for field, message in errors.items():
            self.add_error(field, message)
        return knobs

    def _check_required(self, backend: str, credentials: dict[str, Any] | None) -> None:
        """An active account needs every required credential of its backend
        (an inactive one may be saved without: it sends nothing)."""
        active = self.cleaned_data.get("is_active", self.instance.is_active)
        if not active:
            return
        try:
            cls = backend_class(backend)
        except (ImproperlyConfigured, ImportError):
            return
        have = credentials if credentials is not None else dict(self.instance.credentials or {})
        for spec in cls.credential_fields:
            if spec.required and not str(have.get(spec.name) or "").strip():
                field = credential_field_name(backend, spec.name)
                self.add_error(
                    field if field in self.fields else None,
                    f"{cls.label or backend} needs its {spec.label}: enter it here, or untick "
                    "“active” to save the account without it.",
                )

    def save(self, commit=True):
        new = getattr(self, "_new_credentials", None)
        if new is not None:
            self.instance.credentials = new
        return super().save(commit=commit)


#: The account form, with the per-backend credential fields declared (the
#: admin lists them in its fieldsets, so they must be class fields).
ProviderAccountForm = type(
    "ProviderAccountForm",
    (BaseProviderAccountForm,),
    {"__module__": __name__, **credential_form_fields(), **simulator_form_fields()},
)
