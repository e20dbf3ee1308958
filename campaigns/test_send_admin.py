"""The "Send a test…" page of a draft: pick a contact and your own number;
the message as that contact would get it goes to that number
(:func:`campaigns.test_send.campaign_test_send`)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns.models import Campaign, Message
from campaigns.test_send import campaign_test_send
from contacts.models import Contact
from contacts.phones import normalize_phone


class TestSendForm(forms.Form):
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        help_text="The message is rendered with this contact's name and fields.",
    )
    phone = forms.CharField(
        label="Send to (your number)",
        max_length=32,
        help_text="Your own mobile number; the test is charged like any message.",
    )

    def __init__(self, *args, admin_site=admin.site, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin's search-as-you-type (the Contact admin's search fields).
        field = self.fields["contact"]
        field.widget = AutocompleteSelect(Message._meta.get_field("contact"), admin_site)
        field.widget.choices = field.choices  # set by the field only for its own widget

    def clean_phone(self):
        raw = self.cleaned_data["phone"]
        try:
            return normalize_phone(raw)
        except ValidationError as exc:
            reason = exc.messages[0]
            raise ValidationError(f"{raw!r} is not a number we can send to: {reason}") from None


def test_send_view(model_admin, request, object_id):
    model_admin._require_send(request)
    campaign = model_admin._get_or_404(request, object_id)
    back = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    form = TestSendForm(request.POST or None, admin_site=model_admin.admin_site)
    error = ""
    if campaign.status != Campaign.Status.DRAFT:
        error = "Only a draft can be sent as a test."
    elif request.method == "POST" and form.is_valid():
        try:
            test = campaign_test_send(
                campaign=campaign,
                contact=form.cleaned_data["contact"],
                phone=form.cleaned_data["phone"],
                user=request.user,
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            model_admin.message_user(
                request,
                f"Test message sent to {test.extra_numbers} (test campaign #{test.pk}); "
                "it is charged, and not counted in this campaign.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(back)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Send a test message",
        "campaign": campaign,
        "form": form,
        "media": model_admin.media + form.media,
        "error": error,
        "opts": model_admin.model._meta,
        "back": back,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/confirm_test_send.html", context)
