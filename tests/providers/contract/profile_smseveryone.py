"""SMS Everyone as its doc describes it (provider-docs/smseveryone.txt)."""

from __future__ import annotations

import base64
import json

import httpx

from providers.backends.smseveryone import SmsEveryoneBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, register

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

    def backend(self) -> SmsEveryoneBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["password"] = "wrong-password"
        return SmsEveryoneBackend(
            credentials=credentials, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        # The provider's own refusal of one destination: its opt-out wash.
        self.fake.state.setdefault("optouts", set()).add(number.lstrip("+"))
