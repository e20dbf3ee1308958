"""Admin side of the campaign engine: the five operations as changelist
actions and as buttons on the campaign page, a confirmation page (quote,
cost, schedule) for send and schedule, and decisions on ``unknown`` messages.

Everything here calls :mod:`campaigns.services`; an operation that does not
apply to a campaign's state is refused for that campaign with a message,
never a crash. All of it needs the ``campaigns.send_campaign`` permission.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import partial

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from campaigns.forms import ScheduleForm
from campaigns.models import Campaign, Message
from campaigns.services import (
    ALLOWED_FROM,
    campaign_cancel,
    campaign_pause,
    campaign_resend_failed,
    campaign_resume,
    campaign_schedule,
    campaign_send_now,
    cancel_impact,
    messages_resolve_unknown,
    resend_preview,
)
from campaigns.test_send_admin import test_send_view

SEND_PERMISSION = "campaigns.send_campaign"

#: Campaign fields frozen once a campaign left draft (what was quoted is sent).
CONTENT_FIELDS = ("account", "sender", "template", "body", "lists", "extra_numbers", "scheduled_at")


def _confirmed(request, campaign: Campaign) -> dict | None:
    """The quote figures the user saw for ``campaign`` on the confirm page."""
    recipients = request.POST.get(f"quote-{campaign.pk}-recipients")
    credits = request.POST.get(f"quote-{campaign.pk}-credits")
    if recipients is None or credits is None:
        return None
    try:
        return {"recipients": int(recipients), "credits_needed": str(Decimal(credits))}
    except (ValueError, InvalidOperation):
        return None


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


class CampaignEngineAdminMixin:
    """Mixed into ``CampaignAdmin`` (campaigns/admin.py)."""

    engine_actions = [
        "action_send_now",
        "action_schedule",
        "action_pause",
        "action_resume",
        "action_cancel",
    ]

    # ---------------------------------------------------------- permissions
    def has_send_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def _require_send(self, request) -> None:
        if not self.has_send_permission(request):
            raise PermissionDenied("You need the permission to send campaigns.")

    # ---------------------------------------------------------- form safety
    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            fields += [f for f in CONTENT_FIELDS if f not in fields]
        return fields

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only what the form changed: the engine updates status, counters and
        # credits concurrently, and a full save would write back stale values.
        concrete = {f.name for f in obj._meta.concrete_fields}
        fields = [name for name in form.changed_data if name in concrete]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])

    # -------------------------------------------------------------- urls
    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [
            path(
                "<path:object_id>/send/",
                wrap(self.send_view),
                name="campaigns_campaign_send",
            ),
            path(
                "<path:object_id>/schedule/",
                wrap(self.schedule_view),
                name="campaigns_campaign_schedule",
            ),
            path(
                "<path:object_id>/operate/<str:operation>/",
                wrap(require_POST(self.operate_view)),
                name="campaigns_campaign_operate",
            ),
            # After operate/: "<path:object_id>" would swallow "<id>/operate".
            path(
                "<path:object_id>/cancel/",
                wrap(self.cancel_view),
                name="campaigns_campaign_cancel",
            ),
            path(
                "<path:object_id>/resend/",
                wrap(self.resend_view),
                name="campaigns_campaign_resend",
            ),
            path(
                "<path:object_id>/test-send/",
                wrap(partial(test_send_view, self)),
                name="campaigns_campaign_test_send",
            ),
        ]
        return urls + super().get_urls()

    def _change_url(self, obj: Campaign) -> str:
        return reverse("admin:campaigns_campaign_change", args=[obj.pk])

    def _get_or_404(self, request, object_id) -> Campaign:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            from django.http import Http404

            raise Http404("No such campaign.")
        return obj

    # -------------------------------------------------- single-campaign views
    def send_view(self, request, object_id):
        self._require_send(request)
        obj = self._get_or_404(request, object_id)
        return self._confirm(request, [obj], "send_now", back=self._change_url(obj))

    def schedule_view(self, request, object_id):
        self._require_send(request)
        obj = self._get_or_404(request, object_id)
        return self._confirm(request, [obj], "schedule", back=self._change_url(obj))

    def operate_view(self, request, object_id, operation):
        self._require_send(request)
        obj = self._get_or_404(request, object_id)
        # Cancel goes through its confirmation page (cancel_view).
        if operation not in ("pause", "resume"):
            raise PermissionDenied(f"Unknown operation {operation!r}.")
        self._run(request, [obj], operation)
        return HttpResponseRedirect(self._change_url(obj))

    # ------------------------------------------------------------ actions
    @admin.action(description="Send selected campaigns now…", permissions=["send"])
    def action_send_now(self, request, queryset):
        return self._confirm(request, list(queryset), "send_now", back=None)

    @admin.action(description="Schedule selected campaigns…", permissions=["send"])
    def action_schedule(self, request, queryset):
        return self._confirm(request, list(queryset), "schedule", back=None)

    @admin.action(description="Pause selected campaigns", permissions=["send"])
    def action_pause(self, request, queryset):
        self._run(request, list(queryset), "pause")

    @admin.action(description="Resume selected campaigns", permissions=["send"])
    def action_resume(self, request, queryset):
        self._run(request, list(queryset), "resume")

    @admin.action(description="Cancel selected campaigns…", permissions=["send"])
    def action_cancel(self, request, queryset):
        return self._confirm_cancel(request, list(queryset), back=None)

    def cancel_view(self, request, object_id):
        self._require_send(request)
        obj = self._get_or_404(request, object_id)
        return self._confirm_cancel(request, [obj], back=self._change_url(obj))

    def _confirm_cancel(self, request, campaigns: list[Campaign], *, back: str | None):
        """Cancel asks first: what stops, what is released, what stays charged."""
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            self._run(request, campaigns, "cancel")
            return HttpResponseRedirect(back) if back else None
        rows = []
        for campaign in campaigns:
            row = {"campaign": campaign, "refusal": ""}
            if campaign.status not in ALLOWED_FROM["cancel"]:
                row["refusal"] = (
                    f"It is {campaign.get_status_display().lower()}: it will not be changed."
                )
            else:
                row["impact"] = cancel_impact(campaign)
            rows.append(row)
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel campaign?" if len(campaigns) == 1 else "Cancel campaigns?",
            "rows": rows,
            "actionable": any(not r["refusal"] for r in rows),
            "opts": self.model._meta,
            "back": back,
            "action_name": request.POST.get("action", ""),
            "selected": [c.pk for c in campaigns],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_cancel.html", context)

    def resend_view(self, request, object_id):
        """Send again to the temporary failures, as a new draft campaign."""
        self._require_send(request)
        obj = self._get_or_404(request, object_id)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                new = campaign_resend_failed(campaign=obj, user=request.user)
            except ValidationError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
                return HttpResponseRedirect(self._change_url(obj))
            self.message_user(
                request,
                f'Created the draft "{new}" for {new.extra_numbers.count(chr(10)) + 1:,} '
                "recipient(s). Check it, then send or schedule it.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self._change_url(new))
        context = {
            **self.admin_site.each_context(request),
            "title": "Send again to temporary failures?",
            "campaign": obj,
            "resend": resend_preview(obj),
            "opts": self.model._meta,
            "back": self._change_url(obj),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_resend.html", context)

    # ------------------------------------------------------------ plumbing
    def _run(self, request, campaigns: list[Campaign], operation: str, **kwargs) -> int:
        """Apply ``operation`` to each campaign; refusals become messages."""
        service = {
            "send_now": campaign_send_now,
            "schedule": campaign_schedule,
            "pause": campaign_pause,
            "resume": campaign_resume,
            "cancel": campaign_cancel,
        }[operation]
        done = []
        for campaign in campaigns:
            if campaign.status not in ALLOWED_FROM[operation]:
                self.message_user(
                    request,
                    f'"{campaign}" was not changed: it is {campaign.get_status_display().lower()}.',
                    messages.WARNING,
                )
                continue
            extra = dict(kwargs)
            if operation in ("send_now", "schedule"):
                extra["confirmed_quote"] = _confirmed(request, campaign)
            try:
                service(campaign=campaign, user=request.user, **extra)
            except ValidationError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
                continue
            done.append(str(campaign))
        if done:
            verb = {
                "send_now": "sending",
                "schedule": "scheduled",
                "pause": "paused",
                "resume": "resumed",
                "cancel": "cancelled",
            }[operation]
            self.message_user(request, f"{verb.capitalize()}: {', '.join(done)}.", messages.SUCCESS)
        return len(done)

    def _confirm(self, request, campaigns: list[Campaign], operation: str, *, back: str | None):
        """The confirmation page of send/schedule; on confirm, runs them."""
        from campaigns.quote import campaign_quote

        default_zone = campaigns[0].account.time_zone if campaigns else ""
        form = ScheduleForm(
            request.POST if request.POST.get("confirm") else None, default_zone=default_zone
        )
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            if operation == "schedule" and not form.is_valid():
                pass  # shown again below with the errors
            else:
                kwargs = (
                    {"when": form.cleaned_data["when"], "time_zone": form.cleaned_data["time_zone"]}
                    if operation == "schedule"
                    else {}
                )
                self._run(request, campaigns, operation, **kwargs)
                if back:
                    return HttpResponseRedirect(back)
                return None  # back to the changelist
        rows = []
        for campaign in campaigns:
            row = {"campaign": campaign, "refusal": "", "quote": None}
            if campaign.status not in ALLOWED_FROM[operation]:
                row["refusal"] = (
                    f"It is {campaign.get_status_display().lower()}: it will not be changed."
                )
            elif campaign.status == Campaign.Status.DRAFT:
                row["quote"] = campaign_quote(campaign=campaign).as_dict()
            rows.append(row)
        context = {
            **self.admin_site.each_context(request),
            "title": "Send now?" if operation == "send_now" else "Schedule?",
            "operation": operation,
            "rows": rows,
            "actionable": any(
                not r["refusal"] and not (r["quote"] and r["quote"]["problems"]) for r in rows
            ),
            "schedule_form": form if operation == "schedule" else None,
            "opts": self.model._meta,
            "back": back,
            "action_name": request.POST.get("action", ""),
            "selected": [c.pk for c in campaigns],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm_send.html", context)


class MessageEngineAdminMixin:
    """Mixed into ``MessageAdmin``: a person's decision on ``unknown`` messages."""

    engine_actions = ["resolve_sent", "resolve_failed", "resolve_requeue"]

    def has_send_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def _resolve(self, request, queryset, outcome: str) -> None:
        by_campaign: dict[int, list[int]] = {}
        ignored = 0
        for pk, campaign_id, status in queryset.values_list("pk", "campaign_id", "status"):
            if status != Message.Status.UNKNOWN:
                ignored += 1
                continue
            by_campaign.setdefault(campaign_id, []).append(pk)
        changed = 0
        for campaign in Campaign.objects.filter(pk__in=list(by_campaign)):
            try:
                changed += messages_resolve_unknown(
                    campaign=campaign,
                    user=request.user,
                    outcome=outcome,
                    message_ids=by_campaign[campaign.pk],
                )
            except ValidationError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
        if ignored:
            self.message_user(
                request,
                f"{ignored} selected message(s) were not unknown and were left as they are.",
                messages.WARNING,
            )
        if changed:
            self.message_user(request, f"{changed} message(s) marked {outcome}.", messages.SUCCESS)

    @admin.action(description="Unknown → it was sent (keep the charge)", permissions=["send"])
    def resolve_sent(self, request, queryset):
        self._resolve(request, queryset, "sent")

    @admin.action(description="Unknown → it never went out (refund)", permissions=["send"])
    def resolve_failed(self, request, queryset):
        self._resolve(request, queryset, "failed")

    @admin.action(description="Unknown → send it again (refund and re-send)", permissions=["send"])
    def resolve_requeue(self, request, queryset):
        self._resolve(request, queryset, "requeue")
