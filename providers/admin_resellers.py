"""Reseller self-service in the admin: "Client accounts" (a proxy of
ProviderAccount) where a reseller creates and edits its clients, sets their
price within the floors staff set, takes unused credits back, and reads a
statement per period (page and CSV). Staff see every reseller's clients and
the margin per segment.

Thin: every change goes through :mod:`providers.services.resellers`.
"""

from __future__ import annotations

import csv
import uuid
from datetime import datetime, time, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from providers.models import ClientAccount, ProviderAccount
from providers.services import (
    CreditError,
    account_statement,
    client_clean,
    client_save,
    clients_of,
    credits_outcome,
    credits_take_back,
    parse_amount,
    reseller_accounts,
)
from providers.services.resellers import CLIENT_FIELDS
from smsoffice.csvsafe import safe_row


def _sees_all(user) -> bool:
    return user.is_superuser or user.has_perm("providers.view_all_accounts")


class ClientForm(forms.ModelForm):
    """The fields a reseller may set; checked by ``client_clean`` (the same
    rules as the service and the API)."""

    # Text, not DecimalField: the one amounts parser (via client_clean) says
    # what is wrong ("too large (at most …)") instead of a digits count.
    credits_per_segment = forms.CharField(label="Price per segment", max_length=40)
    low_balance_threshold = forms.CharField(
        max_length=40,
        required=False,
        help_text="Warn when the available credits fall below this (0 = never).",
    )

    class Meta:
        model = ClientAccount
        fields = ["parent", *CLIENT_FIELDS]
        labels = {"parent": "Reseller account", "credits_per_segment": "Price per segment"}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        parent = self.fields["parent"]
        parent.required = True
        parent.queryset = reseller_accounts(user)
        if self.instance.pk:
            parent.disabled = True  # a client does not change reseller here

    def _post_clean(self):
        # Model validation is the service's (client_clean): skip the model's
        # own full_clean, which knows nothing of floors.
        pass

    def clean(self):
        cleaned = super().clean()
        reseller = cleaned.get("parent") or (self.instance.parent if self.instance.pk else None)
        if reseller is None or self.errors:
            return cleaned
        fields = {f: cleaned.get(f) for f in CLIENT_FIELDS if f in cleaned}
        try:
            self.clean_values = client_clean(
                reseller=reseller, client=self.instance if self.instance.pk else None, **fields
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


class TakeBackForm(forms.Form):
    amount = forms.CharField(max_length=30)
    note = forms.CharField(required=False, max_length=1000)
    token = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput)

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except CreditError as exc:
            raise forms.ValidationError(exc.messages) from None


class PeriodForm(forms.Form):
    start = forms.DateField(required=False)
    end = forms.DateField(required=False, help_text="Included.")

    def period(self) -> tuple[datetime, datetime]:
        today = timezone.localdate()
        start = self.cleaned_data.get("start") or today.replace(day=1)
        end = self.cleaned_data.get("end") or today
        tz = timezone.get_current_timezone()
        return (
            datetime.combine(start, time.min, tzinfo=tz),
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
        )


@admin.register(ClientAccount)
class ClientAccountAdmin(admin.ModelAdmin):
    form = ClientForm
    list_display = [
        "name",
        "parent",
        "balance",
        "reserved",
        "credits_per_segment",
        "low_balance_threshold",
        "is_active",
    ]
    list_filter = ["is_active"]
    search_fields = ["name"]
    list_select_related = ["parent"]
    readonly_fields = ["balance", "reserved"]

    # ---------------------------------------------------------------- scope
    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=clients_of(request.user).values("pk"))
            .select_related("parent")
        )

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        if _sees_all(request.user):
            shown += ["reseller_price", "margin_per_segment"]
        return shown

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class WithUser(form):
            def __init__(self, *args, **kw):
                super().__init__(*args, user=request.user, **kw)

        return WithUser

    def get_fieldsets(self, request, obj=None):
        fields = ["parent", *CLIENT_FIELDS]
        if obj is not None:
            fields += ["balance", "reserved"]
        return [(None, {"fields": fields})]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and reseller_accounts(request.user).exists()

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger refers to it; deactivate instead

    def save_model(self, request, obj, form, change):
        if change:
            reseller = ProviderAccount.objects.get(pk=obj.parent_id)
        else:
            reseller = form.cleaned_data["parent"]
        values = {f: form.cleaned_data.get(f) for f in CLIENT_FIELDS}
        saved = client_save(
            user=request.user,
            reseller=reseller,
            client=ProviderAccount.objects.get(pk=obj.pk) if change else None,
            **values,
        )
        obj.pk = saved.pk
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        pass  # nothing related a reseller may set

    # ------------------------------------------------------- staff: margin
    @admin.display(description="Reseller's own price")
    def reseller_price(self, obj):
        return obj.parent.credits_per_segment if obj.parent_id else "-"

    @admin.display(description="Margin per segment")
    def margin_per_segment(self, obj):
        """What the reseller earns per default segment: its client's price
        minus what its own account pays."""
        if not obj.parent_id:
            return "-"
        return obj.credits_per_segment - obj.parent.credits_per_segment

    # ------------------------------------------------------------- pages
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/statement/",
                view(self.statement_view),
                name="{}_{}_statement".format(*info),
            ),
            path(
                "<path:object_id>/take-back/",
                view(self.take_back_view),
                name="{}_{}_take_back".format(*info),
            ),
            *super().get_urls(),
        ]

    def _client(self, request, object_id) -> ClientAccount:
        client = self.get_object(request, unquote(object_id))  # scoped: others are 404
        if client is None or not self.has_view_permission(request, client):
            raise Http404("No such client.")
        return client

    def _url(self, name, pk) -> str:
        return reverse(f"admin:providers_clientaccount_{name}", args=[pk])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = dict(extra_context or {})
        client = self.get_object(request, unquote(object_id))
        if client is not None:
            extra["client_links"] = [
                ("Statement", self._url("statement", client.pk)),
                ("Take credits back", self._url("take_back", client.pk)),
                (
                    "Top up",
                    reverse("admin:providers_provideraccount_top_up", args=[client.pk]),
                ),
            ]
        return super().change_view(request, object_id, form_url, extra)

    def statement_view(self, request, object_id):
        client = self._client(request, object_id)
        form = PeriodForm(request.GET or None)
        if form.is_bound and not form.is_valid():
            start = end = None
        else:
            if not form.is_bound:
                form = PeriodForm({})
                form.is_valid()
            start, end = form.period()
        statement = None
        if start is not None:
            try:
                statement = account_statement(account=client, start=start, end=end)
            except ValidationError as exc:
                form.add_error(None, exc.messages)
        if statement is not None and request.GET.get("format") == "csv":
            return statement_csv(statement)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Statement: {client.name}",
            "client": client,
            "form": form,
            "statement": statement,
            "csv_query": request.GET.urlencode(),
            "change_url": self._url("change", client.pk),
        }
        return TemplateResponse(request, "admin/providers/clientaccount/statement.html", context)

    def take_back_view(self, request, object_id):
        client = self._client(request, object_id)
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        change_url = self._url("change", client.pk)
        if request.method == "POST":
            form = TakeBackForm(request.POST)
            if form.is_valid():
                key = f"admin:take-back:{request.user.pk}:{form.cleaned_data['token']}"
                row = credits_outcome(idempotency_key=key)
                if row is None:
                    try:
                        row = credits_take_back(
                            client=client,
                            amount=form.cleaned_data["amount"],
                            user=request.user,
                            note=form.cleaned_data["note"],
                            idempotency_key=key,
                        )
                    except CreditError as exc:
                        form.add_error(None, exc.messages)
                if row is not None:
                    self.message_user(
                        request,
                        f"Returned {-row.amount} credits from {client.name} to "
                        f"{client.parent.name} at {timezone.localtime(row.created_at):%H:%M} "
                        f"(ledger #{row.pk}).",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
        else:
            form = TakeBackForm(initial={"token": uuid.uuid4().hex})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Take credits back: {client.name}",
            "client": client,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/providers/clientaccount/take_back.html", context)


STATEMENT_COLUMNS = [
    "id",
    "created_at",
    "kind",
    "amount",
    "balance_after",
    "reserved_change",
    "counterparty",
    "reference",
    "note",
]


def statement_csv(statement) -> HttpResponse:
    """The statement as CSV: opening line, one line per row, closing line
    (formula-safe cells)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"statement-{statement.account.pk}-{statement.start:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow(safe_row(["account", statement.account.name]))
    writer.writerow(safe_row(["opening balance", statement.opening]))
    writer.writerow(safe_row(STATEMENT_COLUMNS))
    for row in statement.rows:
        writer.writerow(
            safe_row(
                [
                    row.pk,
                    row.created_at.isoformat(),
                    row.get_kind_display(),
                    row.amount,
                    row.balance_after,
                    row.reserved_change,
                    row.counterparty.name if row.counterparty else "",
                    row.reference,
                    row.note,
                ]
            )
        )
    writer.writerow(safe_row(["closing balance", statement.closing]))
    return response
