"""SMS Everyone as its doc describes it (provider-docs/smseveryone.txt)."""

from __future__ import annotations

import base64
import json

import httpx

from providers.backends.base import DeliveryStatus
from providers.backends.smseveryone import SmsEveryoneBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, Hook, register

CREDENTIALS = {"username": "jimsbusiness", "password": "s56sbdyte83fs"}


def _authorised(request: httpx.Request) -> bool:
    token = base64.b64encode(
        f"{CREDENTIALS['username']}:{CREDENTIALS['password']}".encode()
    ).decode()
    return request.headers.get("Authorization") == f"Basic {token}"


def campaign(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    if not _authorised(request):
        return httpx.Response(401, json={"Message": "Authorization has been denied."})
    body = json.loads(request.content)
    if body.get("Action") != "create":
        return httpx.Response(200, json={"Message": "Invalid action specified", "Code": -122})
    if not body.get("Destinations"):
        return httpx.Response(
            200, json={"Message": "No valid destination number(s) specified", "Code": -111}
        )
    # "All SMS messages are washed against your optout database at the time of sending."
    optouts = fake.state.setdefault("optouts", set())
    taken = [n for n in body["Destinations"] if n not in optouts]
    fake.accepted.extend("+" + n for n in taken)
    return httpx.Response(
        200,
        json={
            "Code": 0,
            "CampaignId": int(fake.next_id()) + 11967200,
            "Messages": len(taken),
            "Segments": 1,
            "Credits": len(taken),
        },
    )


def optouts(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``/api/optouts``: ``add``, ``delete`` (opt back in) and ``list``, as the
    doc's examples answer them; ``fake.state["optouts"]`` holds the list and
    ``fake.state["optout_added"]`` the ``Added`` time of each number."""
    if not _authorised(request):
        return httpx.Response(401, json={"Message": "Authorization has been denied."})
    body = json.loads(request.content)
    listed = fake.state.setdefault("optouts", set())
    added = fake.state.setdefault("optout_added", {})
    if body.get("Action") == "add":
        listed.update(body["Originator"])
        return httpx.Response(200, json={"Message": "Origins added", "Code": 0})
    if body.get("Action") == "delete":
        gone = [n for n in body["Originator"] if n in listed]
        listed.difference_update(gone)
        return httpx.Response(
            200, json={"Message": f"Deleted {len(gone)} OptOut number", "Code": 0}
        )
    return httpx.Response(
        200,
        json={
            "Count": len(listed),
            "OptOut": [
                {
                    "Added": added.get(n, "2018-12-05 18:52:42"),
                    "Originator": n,
                    "MessageText": "",
                    "Reason": "Client",
                }
                for n in sorted(listed)
            ],
        },
    )


def dr_status(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``/api/DRStatus``: the receipts set by ``report_status``."""
    body = json.loads(request.content)
    # The doc: "No delivery status information available yet ... OR ... a
    # campaignID that doesnt belong to your account": Count 0.
    found = fake.state.setdefault("receipts", {}).get(int(body["CampaignId"]), [])
    items = [
        item
        for item in found
        if not body.get("Destination") or item["Destination"] == body["Destination"]
    ]
    return httpx.Response(
        200, json={"CampaignId": body["CampaignId"], "Count": len(items), "Destinations": items}
    )


def replies(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``/api/replies``: each reply once ("each reply is returned once")."""
    held = fake.state.pop("replies", [])
    return httpx.Response(200, json={"Count": len(held), "Messages": held, "Code": 0})


@register
class SmsEveryoneProfile(ContractProfile):
    key = "smseveryone"
    numbers = tuple(f"+614001234{i:02d}" for i in range(1, 20))
    send_paths = ("/campaign",)
    base_path = "/api"
    credentials = CREDENTIALS

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/campaign", campaign)
        fake.route("POST", "/optouts", optouts)
        fake.route("POST", "/DRStatus", dr_status)
        fake.route("POST", "/replies", replies)

    def backend(self) -> SmsEveryoneBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["password"] = "wrong-password"
        return SmsEveryoneBackend(
            credentials=credentials,
            transport=self.fake.transport,
            account_key="contract",
            # The account's time zone at the provider (not the Sydney default).
            time_zone=self.reply_time_zone,
        )

    def refuse(self, number: str) -> None:
        # The provider's own refusal of one destination: its opt-out wash.
        self.fake.state.setdefault("optouts", set()).add(number.lstrip("+"))

    # ---- statuses and replies (doc "Check the delivery status", "Replies")
    statuses = {"1": DeliveryStatus.DELIVERED, "2": DeliveryStatus.UNDELIVERED}
    undocumented_status = "7"
    reply_time_zone = "Asia/Tokyo"
    webhook_reply_times = False  # the GET reply carries no time
    not_applicable = {
        "status_webhook": "receipts are only polled (/api/DRStatus); the doc pushes replies only"
    }

    def report_status(self, sent, sms, raw) -> None:
        campaign_id = int(sent.provider_batch_ref or sent.provider_ref.split("-")[0])
        self.fake.state.setdefault("receipts", {})[campaign_id] = [
            {
                "Destination": sms.to.lstrip("+"),
                "Status": {"DeliveryReceiptStatusId": int(raw), "Code": 0},
                "TimeStamp": "2026-03-14 18:26:53",
            }
        ]

    def add_reply(self, *, sender, body, at, ref) -> None:
        self.fake.state.setdefault("replies", []).append(
            {
                "ReferenceId": ref,
                "Originator": sender.lstrip("+"),
                "Recipient": "61400000000",
                "MessageText": body,
                # In the account's zone, as the provider writes it.
                "Received": at.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )

    def reply_webhook(self, *, sender, body, at, ref, sent=None) -> Hook:
        return Hook(
            method="GET",
            query={
                "originator": sender.lstrip("+"),
                "recipient": "61400000000",
                "reference": ref,
                "message_text": body,
            },
        )
