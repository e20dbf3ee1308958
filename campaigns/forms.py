"""Admin forms: message bodies (the live SMS counter widget and the template
checks that refuse unknown placeholders when saving) and the schedule time."""

from __future__ import annotations

import zoneinfo
from datetime import UTC
from functools import lru_cache
from zoneinfo import ZoneInfo

from django import forms
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from campaigns.models import Campaign, MessageTemplate
from campaigns.templating import template_errors, validate_defaults
from providers.forms import attach_sender_choices, sender_refused
from providers.limits import check_sender
from providers.senders import account_senders


class SmsBodyWidget(forms.Textarea):
    """A textarea with a live counter under it (characters, encoding,
    segments, characters forcing UCS-2). The counting is done by the server
    (``campaigns.admin_views.measure_view``) so Python is the one source of truth."""

    class Media:
        js = ["campaigns/sms_counter.js"]
        css = {"all": ["campaigns/sms_counter.css"]}

    def __init__(self, attrs=None):
        super().__init__({"rows": 5, "cols": 80, "data-sms-counter": "", **(attrs or {})})

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        try:
            url = reverse("admin:campaigns_campaign_measure")
        except NoReverseMatch:  # admin not mounted (e.g. a form used outside the admin)
            url = ""
        context["widget"]["attrs"]["data-measure-url"] = url
        return context


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ["name", "body", "defaults"]
        widgets = {"body": SmsBodyWidget}

    def clean(self):
        cleaned = super().clean()
        defaults = cleaned.get("defaults")
        try:
            validate_defaults(defaults)
        except forms.ValidationError as exc:
            self.add_error("defaults", exc)
            defaults = None
        body = cleaned.get("body")
        if body:
            errors = template_errors(body, defaults=defaults if isinstance(defaults, dict) else {})
            if errors:
                self.add_error("body", errors)
        return cleaned


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        # The admin passes its own fieldsets; these are for use outside it.
        fields = ["name", "account", "sender", "template", "body", "lists", "extra_numbers"]
        widgets = {"body": SmsBodyWidget}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The provider's own list of senders, where it has one (FullSMS).
        account = self.instance.account if self.instance.account_id else None
        if account is not None and "sender" in self.fields:
            attach_sender_choices(
                self.fields["sender"], account_senders(account), list_id="campaign-sender-choices"
            )

    def clean(self):
        cleaned = super().clean()
        body = cleaned.get("body") or ""
        template = cleaned.get("template")
        effective = body or (template.body if template else "")
        defaults = (template.defaults or {}) if template else {}
        if effective:
            errors = template_errors(effective, defaults=defaults)
            if errors:
                self.add_error("body" if body else "template", errors)
        # An explicit sender is checked against the provider's rules now; an
        # empty one (the account default) is checked by the quote.
        sender = cleaned.get("sender")
        account = cleaned.get("account")
        if sender and account is not None:
            errors = check_sender(account.backend, sender)
            for error in errors:
                self.add_error("sender", error)
            refused = (
                "" if errors else sender_refused(account_senders(account), sender, account.backend)
            )
            if refused:
                self.add_error("sender", refused)
        return cleaned


class _LocalDateTimeField(forms.DateTimeField):
    """A date and time as typed, without a zone: the form adds the zone picked
    beside it (the stock field would read it in the server's zone)."""

    def to_python(self, value):
        with timezone.override(UTC):
            result = super().to_python(value)
        return result.replace(tzinfo=None) if result is not None else None


@lru_cache(maxsize=1)
def _zone_choices() -> list[tuple[str, str]]:
    names = sorted(
        z
        for z in zoneinfo.available_timezones()
        if "/" in z and not z.startswith(("Etc/", "SystemV/"))
    )
    return [(z, z.replace("_", " ")) for z in [*names, "UTC"]]


class ScheduleForm(forms.Form):
    """The time of the confirmed Schedule action, in a zone the person picks
    (the account's by default). ``cleaned_data["when"]`` is aware."""

    when = _LocalDateTimeField(
        label="Send at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,  # empty: the default zone (the account's)
        help_text="The time above is read in this zone, and shown in it afterwards.",
    )

    def __init__(self, *args, default_zone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = _zone_choices()
        self.default_zone = default_zone or timezone.get_default_timezone_name()
        self.fields["time_zone"].initial = self.default_zone

    def clean_time_zone(self) -> str:
        return self.cleaned_data.get("time_zone") or self.default_zone

    def clean(self):
        cleaned = super().clean()
        when, name = cleaned.get("when"), cleaned.get("time_zone")
        if when is None or not name:
            return cleaned
        zone = ZoneInfo(name)
        aware = when.replace(tzinfo=zone)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when:
            raise forms.ValidationError(
                f"{when:%d %b %Y %H:%M} does not exist in {name} (the clocks go forward "
                "then): pick another time.",
                code="nonexistent",
            )
        cleaned["when"] = aware
        return cleaned
