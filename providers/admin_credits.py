"""The credits side of the providers admin: top-up, add-credits and adjust
pages (with a confirmation step), the low-balance banner, provider balance
checks and the formula-safe CSV export of the ledger.

Everything here is thin: it shows numbers and calls :mod:`providers.services`.
"""

from __future__ import annotations

import csv
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import F
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from providers.backends import backend_class
from providers.backends.base import Capability, ProviderError
from providers.models import ProviderAccount
from providers.services import (
    CreditError,
    check_fits,
    credits_adjust,
    credits_outcome,
    credits_reconcile,
    credits_top_up,
    credits_transfer,
    parse_amount,
    transfer_refusal,
    user_may,
)
from smsoffice.csvsafe import safe_cell


def _hhmm(moment) -> str:
    return f"{timezone.localtime(moment):%H:%M}"


# ----------------------------------------------------------------- CSV export

_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run as a formula (:func:`smsoffice.csvsafe.safe_cell`);
    a plain number such as ``-12.50`` is left alone so amounts stay numbers."""
    text = "" if value is None else str(value)
    if _PLAIN_NUMBER.fullmatch(text):
        return text
    return safe_cell(text)


LEDGER_CSV_COLUMNS = [
    "id",
    "created_at",
    "account",
    "kind",
    "amount",
    "reserved_change",
    "balance_after",
    "reserved_after",
    "counterparty",
    "reference",
    "note",
    "created_by",
]


class _Echo:
    def write(self, value):
        return value


def ledger_csv_response(queryset, *, filename: str) -> StreamingHttpResponse:
    """Stream ``queryset`` (already scoped to what the user may see) as CSV."""
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(LEDGER_CSV_COLUMNS)
        for row in (
            queryset.select_related("account", "counterparty", "created_by")
            .order_by("id")
            .iterator(chunk_size=2000)
        ):
            yield writer.writerow(
                csv_safe(v)
                for v in (
                    row.pk,
                    row.created_at.isoformat(),
                    row.account.name,
                    row.kind,
                    row.amount,
                    row.reserved_change,
                    row.balance_after,
                    row.reserved_after,
                    row.counterparty.name if row.counterparty else "",
                    row.reference,
                    row.note,
                    row.created_by.get_username() if row.created_by else "",
                )
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class VisibleAccountFilter(admin.SimpleListFilter):
    """Filter the ledger by account, offering only accounts the user may see."""

    title = "account"
    parameter_name = "account"

    def lookups(self, request, model_admin):
        return [
            (a.pk, a.name)
            for a in ProviderAccount.objects.visible_to(request.user).only("pk", "name")
        ]

    def queryset(self, request, queryset):
        if self.value():
            try:
                return queryset.filter(account_id=int(self.value()))
            except ValueError:
                return queryset.none()
        return queryset


def _capabilities(account: ProviderAccount) -> frozenset[str]:
    try:
        return frozenset(backend_class(account.backend).capabilities)
    except (ImproperlyConfigured, ImportError):
        return frozenset()


# ---------------------------------------------------------- top-up pages


class CreditsForm(forms.Form):
    """Amount and note for a credit movement; ``token`` makes it idempotent."""

    amount = forms.CharField(
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    note = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2, "cols": 60})
    )
    token = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput)

    def __init__(self, *args, signed: bool = False, reason_required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.signed = signed
        if signed:
            self.fields["amount"].help_text = "Positive adds credits, negative removes them."
        if reason_required:
            self.fields["note"].required = True
            self.fields["note"].label = "Reason"
            self.fields["note"].help_text = "Kept in the ledger with your name."

    def clean_amount(self) -> Decimal:
        try:
            return parse_amount(self.cleaned_data["amount"], signed=self.signed)
        except CreditError as exc:
            raise forms.ValidationError(exc.messages) from None


@dataclass(frozen=True)
class BalanceLine:
    """One account's credits before and after a proposed movement."""

    account: ProviderAccount
    change: Decimal

    @property
    def balance_after(self) -> Decimal:
        return self.account.balance + self.change

    @property
    def available_after(self) -> Decimal:
        return self.account.available + self.change


@dataclass(frozen=True)
class Operation:
    slug: str
    title: str
    button: str
    signed: bool = False
    reason_required: bool = False


TOP_UP = Operation("top-up", "Top up from the reseller account", "Top up")
ADD_CREDITS = Operation("add-credits", "Add credits", "Add credits")
ADJUST = Operation("adjust", "Adjust credits", "Adjust", signed=True, reason_required=True)


class CreditsAdminMixin:
    """Credits pages and actions for ``ProviderAccountAdmin``."""

    credits_template = "admin/providers/provideraccount/credits.html"

    # ---------------------------------------------------------- permissions
    def has_top_up_permission(self, request) -> bool:
        return user_may(request.user, "top_up_account")

    def has_add_credits_permission(self, request) -> bool:
        return user_may(request.user, "add_credits")

    def has_adjust_credits_permission(self, request) -> bool:
        return user_may(request.user, "adjust_credits")

    def has_reconcile_permission(self, request) -> bool:
        return user_may(request.user, "add_credits") or user_may(request.user, "adjust_credits")

    # ----------------------------------------------------------------- urls
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/top-up/",
                view(self.top_up_view),
                name="{}_{}_top_up".format(*info),
            ),
            path(
                "<path:object_id>/add-credits/",
                view(self.add_credits_view),
                name="{}_{}_add_credits".format(*info),
            ),
            path(
                "<path:object_id>/adjust/",
                view(self.adjust_view),
                name="{}_{}_adjust".format(*info),
            ),
            *super().get_urls(),
        ]

    def _url(self, name: str, account_id) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=[account_id],
            current_app=self.admin_site.name,
        )

    def credit_links(self, request, account: ProviderAccount) -> list[dict]:
        """The buttons shown on an account page, only those the user may use."""
        links = []
        if account.parent_id and self.has_top_up_permission(request):
            parent = ProviderAccount.objects.get(pk=account.parent_id)
            if transfer_refusal(user=request.user, source=parent, target=account) is None:
                links.append({"label": TOP_UP.button, "url": self._url("top_up", account.pk)})
        if self.has_add_credits_permission(request):
            links.append({"label": ADD_CREDITS.button, "url": self._url("add_credits", account.pk)})
        if self.has_adjust_credits_permission(request):
            links.append({"label": ADJUST.button, "url": self._url("adjust", account.pk)})
        ledger = reverse("admin:providers_credittransaction_changelist")
        links.append({"label": "Ledger", "url": f"{ledger}?account={account.pk}"})
        return links

    # ---------------------------------------------------------------- views
    def _visible_account(self, request, object_id) -> ProviderAccount:
        # get_object goes through get_queryset, which is scoped by visible_to:
        # another reseller's account is simply not found.
        account = self.get_object(request, unquote(object_id))
        if account is None:
            raise Http404("No such account.")
        return account

    def top_up_view(self, request, object_id):
        target = self._visible_account(request, object_id)
        if not self.has_top_up_permission(request):
            raise PermissionDenied
        change_url = self._url("change", target.pk)
        if target.parent_id is None:
            self.message_user(
                request,
                f"{target.name} is not a sub-account: only sub-accounts are topped up from "
                "their reseller account. Staff can use Add credits.",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        source = ProviderAccount.objects.get(pk=target.parent_id)
        reason = transfer_refusal(user=request.user, source=source, target=target)
        if reason is not None:
            raise PermissionDenied(reason)

        def lines(amount):
            return [BalanceLine(source, -amount), BalanceLine(target, amount)]

        def shortfall(amount):
            if source.available < amount:
                return (
                    f"{source.name} has {source.available} credits available, needs {amount}. "
                    "Top up the reseller account first or enter a smaller amount."
                )
            return None

        def apply(amount, note, key):
            return credits_transfer(
                source=source,
                target=target,
                amount=amount,
                user=request.user,
                note=note,
                idempotency_key=key,
            )

        def describe(row):
            return (
                f"Moved {-row.amount} credits from {source.name} to {target.name} at "
                f"{_hhmm(row.created_at)} (ledger #{row.pk})."
            )

        return self._credits_page(request, TOP_UP, target, lines, shortfall, apply, describe)

    def add_credits_view(self, request, object_id):
        account = self._visible_account(request, object_id)
        if not self.has_add_credits_permission(request):
            raise PermissionDenied

        def apply(amount, note, key):
            return credits_top_up(
                account=account, amount=amount, user=request.user, note=note, idempotency_key=key
            )

        def describe(row):
            return (
                f"Added {row.amount} credits to {account.name} at {_hhmm(row.created_at)} "
                f"(ledger #{row.pk})."
            )

        def shortfall(amount):
            try:
                check_fits(name=account.name, balance=account.balance, amount=amount)
            except CreditError as exc:
                return exc.messages[0]
            return None

        return self._credits_page(
            request,
            ADD_CREDITS,
            account,
            lambda amount: [BalanceLine(account, amount)],
            shortfall,
            apply,
            describe,
        )

    def adjust_view(self, request, object_id):
        account = self._visible_account(request, object_id)
        if not self.has_adjust_credits_permission(request):
            raise PermissionDenied

        def shortfall(amount):
            if amount > 0:
                try:
                    check_fits(name=account.name, balance=account.balance, amount=amount)
                except CreditError as exc:
                    return exc.messages[0]
            if amount < 0 and account.available < -amount:
                return (
                    f"{account.name} has {account.available} credits available, cannot remove "
                    f"{-amount} (reserved credits belong to running campaigns)."
                )
            return None

        def apply(amount, note, key):
            return credits_adjust(
                account=account, amount=amount, reason=note, user=request.user, idempotency_key=key
            )

        def describe(row):
            return (
                f"Adjusted {account.name} by {row.amount} credits at {_hhmm(row.created_at)} "
                f"(ledger #{row.pk})."
            )

        return self._credits_page(
            request,
            ADJUST,
            account,
            lambda amount: [BalanceLine(account, amount)],
            shortfall,
            apply,
            describe,
        )

    def _credits_page(self, request, op: Operation, account, lines, shortfall, apply, describe):
        """Form → confirmation (balances before and after) → service call.

        The hidden token, made when the form is first shown, becomes the
        idempotency key: a double-clicked or resubmitted confirmation
        applies once, and shows the first outcome ("Moved 250.00 … at 06:48,
        ledger #38") even when the balance no longer covers the amount.
        """
        form_kwargs = {"signed": op.signed, "reason_required": op.reason_required}
        stage = "form"
        preview = []
        if request.method == "POST":
            form = CreditsForm(request.POST, **form_kwargs)
            if form.is_valid():
                amount = form.cleaned_data["amount"]
                note = form.cleaned_data["note"]
                key = f"admin:{op.slug}:{request.user.pk}:{form.cleaned_data['token']}"
                first = credits_outcome(idempotency_key=key) if "confirm" in request.POST else None
                if first is not None:
                    # A second click or a retry of a confirmation that went through.
                    self.message_user(request, describe(first), messages.SUCCESS)
                    return HttpResponseRedirect(self._url("change", account.pk))
                if "edit" in request.POST:
                    pass  # back from the confirmation to change the amount or note
                elif (problem := shortfall(amount)) is not None:
                    form.add_error("amount", problem)
                elif "confirm" in request.POST:
                    try:
                        row = apply(amount, note, key)
                    except CreditError as exc:
                        form.add_error(None, exc.messages)
                    else:
                        self.message_user(request, describe(row), messages.SUCCESS)
                        return HttpResponseRedirect(self._url("change", account.pk))
                else:
                    stage = "confirm"
                    preview = lines(amount)
        else:
            form = CreditsForm(initial={"token": uuid.uuid4().hex}, **form_kwargs)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{op.title}: {account.name}",
            "operation": op,
            "account": account,
            "form": form,
            "stage": stage,
            "preview": preview,
            "change_url": self._url("change", account.pk),
        }
        return TemplateResponse(request, self.credits_template, context)

    # --------------------------------------------------- banner and actions
    def change_view(self, request, object_id, form_url="", extra_context=None):
        account = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if account is not None:
            extra_context["credit_links"] = self.credit_links(request, account)
            if request.method == "GET":
                self._warn_low(request, [account])
                drift = account.provider_drift
                if drift:
                    self.message_user(
                        request,
                        f"The provider said {account.provider_balance} credits at "
                        f"{timezone.localtime(account.provider_balance_checked_at):%Y-%m-%d %H:%M}"
                        f", when ours was {account.provider_balance_ours} (difference {drift}). "
                        "Check the provider balance again (action) before recording an "
                        "adjustment.",
                        messages.WARNING,
                    )
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            low = (
                self.get_queryset(request)
                .filter(low_balance_threshold__gt=0)
                .filter(low_balance_threshold__gt=F("balance") - F("reserved"))
                .order_by("name")[:6]
            )
            self._warn_low(request, list(low))
        return super().changelist_view(request, extra_context)

    def _warn_low(self, request, accounts) -> None:
        low = [a for a in accounts if a.is_low]
        if not low:
            return
        shown = "; ".join(
            f"{a.name}: {a.available} available, threshold {a.low_balance_threshold}"
            for a in low[:5]
        )
        more = " and more" if len(low) > 5 else ""
        self.message_user(request, f"Low balance: {shown}{more}.", messages.WARNING)

    @admin.display(description="Available")
    def available_display(self, obj):
        if not obj.pk:
            return "-"
        if obj.is_low:
            return format_html(
                '<span style="color:#ba2121;font-weight:bold" title="Below {}">⚠ {}</span>',
                obj.low_balance_threshold,
                obj.available,
            )
        return obj.available

    @admin.display(description="Provider balance")
    def provider_balance_display(self, obj):
        if obj.provider_balance is None:
            return "Never checked"
        checked = timezone.localtime(obj.provider_balance_checked_at)
        drift = obj.provider_drift
        text = f"{obj.provider_balance} at {checked:%Y-%m-%d %H:%M}"
        return f"{text} (difference {drift})" if drift else f"{text} (matches)"

    @admin.action(description="Top up the selected sub-account", permissions=["top_up"])
    def top_up_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one sub-account to top up.", messages.ERROR)
            return None
        return HttpResponseRedirect(self._url("top_up", queryset.get().pk))

    @admin.action(description="Check the provider balance", permissions=["reconcile"])
    def reconcile_selected(self, request, queryset):
        for account in queryset:
            if Capability.BALANCE not in _capabilities(account):
                self.message_user(
                    request,
                    f"{account.name}: its provider does not report a balance.",
                    messages.INFO,
                )
                continue
            try:
                drift = credits_reconcile(account=account)
            except ProviderError as exc:
                self.message_user(request, f"{account.name}: {exc}", messages.ERROR)
                continue
            if drift.ok:
                self.message_user(
                    request,
                    f"{account.name}: the provider agrees ({drift.provider_balance}).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{account.name}: ours {drift.local_balance}, provider "
                    f"{drift.provider_balance} (difference {drift.difference}). Not corrected "
                    "automatically.",
                    messages.WARNING,
                )
