"""The campaign state machine (campaigns.states): every transition of the
table from every state, the audit trail it writes, the labels people read,
and that no other code writes a campaign's status."""

from __future__ import annotations

import ast
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from campaigns.models import Campaign, CampaignEvent
from campaigns.states import (
    ENGINE,
    FINAL,
    OPEN,
    PERSON,
    TRANSITIONS,
    CampaignError,
    allowed_actions,
    campaign_transition,
    event_label,
    status_display,
)
from tests.campaigns.engine_helpers import make_campaign, new_phones

C = Campaign.Status
ROOT = Path(__file__).resolve().parents[2]

#: Every (action, from, to) the table allows.
ALLOWED = sorted(
    (action, source, target)
    for action, t in TRANSITIONS.items()
    for source in t.sources
    for target in t.targets
)
#: Every (action, from) the table refuses.
REFUSED = sorted(
    (action, source)
    for action, t in TRANSITIONS.items()
    for source in C.values
    if source not in t.sources
)


def test_the_table_is_the_design_state_machine():
    # DESIGN.md: draft → scheduled → sending → completed; scheduled/sending ⇄
    # paused; any open state → cancelled; sending → failed.
    edges = {(s, t) for _, s, t in ALLOWED}
    assert edges == {
        (C.DRAFT, C.SCHEDULED),
        (C.SCHEDULED, C.SCHEDULED),
        (C.SCHEDULED, C.SENDING),
        (C.SCHEDULED, C.PAUSED),
        (C.SENDING, C.PAUSED),
        (C.PAUSED, C.SENDING),
        (C.PAUSED, C.SCHEDULED),
        (C.SENDING, C.COMPLETED),
        (C.SENDING, C.FAILED),
        *((s, C.CANCELLED) for s in OPEN),
    }
    # Final states are never left, and every state is either open or final.
    assert not {s for s, _ in edges} & FINAL
    assert set(C.values) == OPEN | FINAL and not OPEN & FINAL
    assert {a for a, t in TRANSITIONS.items() if t.actor == ENGINE} == {
        "start",
        "auto_pause",
        "fail",
        "complete",
    }


@pytest.fixture
def campaign(make_account, db):
    account = make_account(balance=Decimal("10"))
    return make_campaign(account=account, phones=new_phones(2))


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "source", "target"), ALLOWED)
def test_allowed_transition_moves_and_writes_the_audit_trail(
    campaign, superuser, action, source, target
):
    Campaign.objects.filter(pk=campaign.pk).update(status=source)
    campaign.refresh_from_db()
    actor = superuser if TRANSITIONS[action].actor == PERSON else None

    came_from = campaign_transition(
        campaign=campaign,
        action=action,
        to=target,
        user=actor,
        detail="why",
        fields={"status_reason": "because"},
    )

    assert came_from == source
    campaign.refresh_from_db()
    assert (campaign.status, campaign.status_reason) == (target, "because")
    event = CampaignEvent.objects.get(campaign=campaign)
    assert (event.action, event.from_status, event.to_status, event.detail, event.user) == (
        action,
        source,
        target,
        "why",
        actor,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "source"), REFUSED)
def test_refused_transition_changes_nothing_and_says_when_it_is_possible(campaign, action, source):
    Campaign.objects.filter(pk=campaign.pk).update(status=source)
    campaign.refresh_from_db()
    target = next(iter(TRANSITIONS[action].targets))

    with pytest.raises(CampaignError) as exc:
        campaign_transition(campaign=campaign, action=action, to=target)

    text = " ".join(exc.value.messages)
    assert f"it is {C(source).label.lower()}" in text
    assert "only possible when" in text
    campaign.refresh_from_db()
    assert campaign.status == source
    assert not CampaignEvent.objects.filter(campaign=campaign).exists()


@pytest.mark.django_db
def test_a_transition_from_a_stale_status_writes_nothing(campaign):
    # Someone moved the row since it was read: the conditional UPDATE refuses.
    Campaign.objects.filter(pk=campaign.pk).update(status=C.CANCELLED)
    with pytest.raises(CampaignError, match="changed meanwhile"):
        campaign_transition(campaign=campaign, action="send_now")
    campaign.refresh_from_db()
    assert campaign.status == C.CANCELLED
    assert not CampaignEvent.objects.exists()


def test_resume_needs_its_target_named_and_a_target_outside_the_table_is_a_bug():
    paused = Campaign(name="x", status=C.PAUSED)
    with pytest.raises(ValueError, match="several targets"):
        campaign_transition(campaign=paused, action="resume")
    with pytest.raises(ValueError, match="cannot lead to"):
        campaign_transition(campaign=paused, action="resume", to=C.COMPLETED)


def test_buttons_offered_per_state():
    assert allowed_actions(C.DRAFT) == ["send_now", "schedule", "cancel"]
    assert allowed_actions(C.SCHEDULED) == ["send_now", "schedule", "pause", "cancel"]
    assert allowed_actions(C.SENDING) == ["pause", "cancel"]
    assert allowed_actions(C.PAUSED) == ["resume", "cancel"]
    for final in FINAL:
        assert allowed_actions(final) == []


# ------------------------------------------------------------ what people read


def _campaign(**fields) -> Campaign:
    return Campaign(name="x", planned=True, **fields)


def test_completed_with_receipts_outstanding_says_it_is_waiting_for_them():
    shown = status_display(_campaign(status=C.COMPLETED, sent_count=12, delivered_count=18))
    assert shown.label == "Sent — awaiting 12 receipts"
    assert not shown.final  # the page keeps updating

    shown = status_display(_campaign(status=C.COMPLETED, sent_count=0, delivered_count=30))
    assert (shown.label, shown.final) == ("Completed", True)


def test_sending_with_nothing_left_queued_waits_for_receipts():
    shown = status_display(_campaign(status=C.SENDING, queued_count=0, sent_count=1))
    assert shown.label == "Sent — awaiting 1 receipt"
    assert status_display(_campaign(status=C.SENDING, queued_count=5)).label == "Sending"


def test_cancelled_campaign_still_awaiting_receipts_is_not_final():
    shown = status_display(_campaign(status=C.CANCELLED, sent_count=3))
    assert shown.label == "Cancelled — awaiting 3 receipts"
    assert not shown.final
    assert status_display(_campaign(status=C.CANCELLED)).final


def test_event_labels_are_words_not_codes():
    assert event_label("send_now") == "Sent now"
    assert event_label("auto_pause") == "Paused by the system"
    assert event_label("some_new_thing") == "Some new thing"


# ------------------------------------- nobody else writes a campaign's status

#: The one module allowed to write ``Campaign.status``.
OWNER = "campaigns/states.py"
WRITE_METHODS = {"update", "create", "get_or_create", "update_or_create", "bulk_create"}


def _status_aliases(tree: ast.AST) -> set[str]:
    """Names bound to ``Campaign.Status`` in a module (``C = Campaign.Status``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_status_class(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _is_status_class(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "Status"
        and isinstance(node.value, ast.Name)
        and node.value.id == "Campaign"
    )


def _is_campaign_status(node: ast.AST, aliases: set[str]) -> bool:
    if not isinstance(node, ast.Attribute):
        return False
    owner = node.value
    return _is_status_class(owner) or (isinstance(owner, ast.Name) and owner.id in aliases)


def _rooted_at_campaign(node: ast.AST) -> bool:
    """``Campaign.objects....`` (or ``Campaign(...)``)."""
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id == "Campaign"


def status_writes(source: str) -> list[int]:
    """Line numbers where ``source`` writes a campaign's status."""
    tree = ast.parse(source)
    aliases = _status_aliases(tree)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            constructor = isinstance(func, ast.Name) and func.id == "Campaign"
            write = isinstance(func, ast.Attribute) and func.attr in WRITE_METHODS
            for kw in node.keywords:
                if kw.arg == "status" and (
                    constructor
                    or (
                        write
                        and (_is_campaign_status(kw.value, aliases) or _rooted_at_campaign(func))
                    )
                ):
                    lines.append(node.lineno)
            if (
                isinstance(func, ast.Name)
                and func.id == "setattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "status"
                and _is_campaign_status(node.args[2] if len(node.args) > 2 else None, aliases)
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(
                isinstance(t, ast.Attribute) and t.attr == "status" for t in targets
            ) and _is_campaign_status(node.value, aliases):
                lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize(
    ("snippet", "writes"),
    [
        ("Campaign.objects.filter(pk=1).update(status=C.PAUSED)", True),
        ("Campaign.objects.filter(pk=1).update(status=to_status)", True),
        ("Campaign.objects.create(name='x', status='sending')", True),
        ("qs.update(status=Campaign.Status.FAILED)", True),
        ("campaign.status = C.COMPLETED", True),
        ("setattr(campaign, 'status', C.SENDING)", True),
        ("Campaign(name='x', status=C.SCHEDULED)", True),
        # Reads and message statuses are fine.
        ("Campaign.objects.filter(status=C.SENDING).count()", False),
        ("Message.objects.filter(pk=1).update(status=S.FAILED)", False),
        ("message.status = S.SENT", False),
        ("if campaign.status == C.DRAFT: pass", False),
    ],
)
def test_the_status_write_detector(snippet, writes):
    source = "C = Campaign.Status\nS = Message.Status\n" + textwrap.dedent(snippet)
    assert bool(status_writes(source)) is writes


def test_no_other_code_writes_a_campaigns_status():
    found = {}
    for app in ("campaigns", "contacts", "providers", "smsoffice"):
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel or rel == OWNER:
                continue
            lines = status_writes(path.read_text())
            if lines:
                found[rel] = lines
    assert found == {}, (
        "Campaign.status is written outside campaigns/states.py: "
        "go through campaign_transition() instead."
    )


def test_a_provider_without_delivery_reports_never_reads_awaiting_receipts():
    # FullSMS documents no report, webhook or inbound call: its accepted
    # messages stay "sent" for good, so "awaiting N receipts" (and a page
    # polling forever) would be untrue.
    from providers.models import ProviderAccount

    fullsms = ProviderAccount(name="F", backend="fullsms")
    shown = status_display(_campaign(account=fullsms, status=C.COMPLETED, sent_count=12))
    assert shown.label == "Completed — 12 sent, no delivery reports from FullSMS"
    assert "awaiting" not in shown.label and "delivered" not in shown.label.lower()
    assert shown.final  # nothing will change: the page stops polling
    cancelled = status_display(_campaign(account=fullsms, status=C.CANCELLED, sent_count=3))
    assert (cancelled.label, cancelled.final) == ("Cancelled", True)
    sending = status_display(_campaign(account=fullsms, status=C.SENDING, sent_count=3))
    assert sending.label == "Sending"
    # A provider that reports keeps saying it waits.
    callr = ProviderAccount(name="C", backend="callr")
    shown = status_display(_campaign(account=callr, status=C.COMPLETED, sent_count=12))
    assert (shown.label, shown.final) == ("Sent — awaiting 12 receipts", False)
