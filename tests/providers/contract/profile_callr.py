"""CALLR as its doc describes it (provider-docs/callr.txt): JSON-RPC 2.0 on
one endpoint, errors inside HTTP 200."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import UTC

import httpx

from providers.backends.base import DeliveryStatus
from providers.backends.callr import CallrBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, Hook, register

CREDENTIALS = {"login": "acme_login", "password": "callr-pass-1"}


def rpc_error(request_id, code: int, message: str) -> httpx.Response:
    return httpx.Response(
        200, json={"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )


def authorised(request: httpx.Request) -> bool:
    token = base64.b64encode(f"{CREDENTIALS['login']}:{CREDENTIALS['password']}".encode())
    return request.headers.get("Authorization") == f"Basic {token.decode()}"


def endpoint(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """The JSON-RPC endpoint: ``sms.send``, ``sms.get``, ``sms.search``."""
    envelope = json.loads(request.content)
    request_id = envelope.get("id")
    if not authorised(request):
        return httpx.Response(401, json={"message": "Authentication failed"})
    method, params = envelope["method"], envelope["params"]
    sent = fake.state.setdefault("sms", {})
    if method == "sms.send":
        sender, to, body, options = params
        if to in fake.state.setdefault("refused", set()):
            return rpc_error(request_id, -32602, f"Invalid params: to {to} is not a number")
        sms_hash = f"{int(fake.next_id()):08X}"
        sent[sms_hash] = {
            "hash": sms_hash,
            "direction": "OUT",
            "from": sender,
            "to": to,
            "body": body,
            "status": "SENT",
            "user_data": (options or {}).get("user_data"),
            "date_creation": "2024-01-10 04:08:10",
        }
        fake.accepted.append(to)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": request_id, "result": sms_hash})
    if method == "sms.get":
        item = sent.get(params[0])
        if item is None:
            return rpc_error(request_id, 404, "SMS not found")
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": request_id, "result": item})
    if method == "sms.search":
        filters, options = params
        items = [
            i
            for i in sent.values()
            if all(i.get(k) == v for k, v in filters.items() if k in ("direction", "user_data"))
        ]
        start = int(options.get("offset", 0))
        page = items[start : start + int(options.get("limit", 100))]
        return httpx.Response(
            200,
            json={
                "jsonrpc": "2.0",
                "id": request_id,
                "result": {"data": page, "count": len(items)},
            },
        )
    return rpc_error(request_id, -32601, "Method not found")


@register
class CallrProfile(ContractProfile):
    key = "callr"
    numbers = tuple(f"+3367891234{i}" for i in range(10))
    send_paths = ("/",)
    base_path = "/json-rpc/v1.1"
    credentials = CREDENTIALS
    not_applicable = {
        # The case counts on m1 and m2 sharing one call; CALLR takes one
        # recipient per call (test_callr checks a 429 after an accepted call).
        "after_accepted": "sms.send carries one recipient, so m2 has its own call",
    }

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/", endpoint)

    def backend(self) -> CallrBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["password"] = "wrong-password"
        return CallrBackend(
            credentials=credentials, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        self.fake.state.setdefault("refused", set()).add(number)

    # ---- statuses and replies (README "CALLR")
    statuses = {
        "PENDING": DeliveryStatus.QUEUED,
        "CREATED": DeliveryStatus.QUEUED,
        "SENT": DeliveryStatus.SENT,
        "REMOTE_QUEUED": DeliveryStatus.SENT,
        "RECEIVED": DeliveryStatus.DELIVERED,
        "ERROR": DeliveryStatus.REJECTED,
        "FAILED": DeliveryStatus.FAILED,
        "EXPIRED": DeliveryStatus.EXPIRED,
    }
    undocumented_status = "ROUTING_HOLD"
    signing_credentials = {"webhook_secret": "callr-hook-secret"}

    def report_status(self, sent, sms, raw) -> None:
        self.fake.state["sms"][sent.provider_ref]["status"] = raw

    def status_webhook(self, sent, sms, raw) -> Hook:
        event = {
            "type": "sms.mt.status_update",
            "event_id": self.fake.next_id("ev-"),
            "event_at": "2026-03-14 09:26:53",
            "hook_hash": "HOOK0001",
            "data": {
                "hash": sent.provider_ref,
                "status": raw,
                "to": sms.to,
                "user_data": sms.reference,
            },
        }
        return Hook(body=json.dumps(event).encode())

    def add_reply(self, *, sender, body, at, ref) -> None:
        self.fake.state.setdefault("sms", {})[ref] = {
            "hash": ref,
            "direction": "IN",
            "from": sender,
            "to": "+33644640000",
            "body": body,
            # The doc's datetime format, in UTC.
            "date_creation": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }

    def reply_webhook(self, *, sender, body, at, ref, sent=None) -> Hook:
        event = {
            "type": "sms.mo",
            "event_id": self.fake.next_id("ev-"),
            "event_at": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "hook_hash": "HOOK0001",
            "data": {
                "hash": ref,
                "from": sender,
                "to": "+33644640000",
                "body": body,
                "date_received": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            },
        }
        return Hook(body=json.dumps(event).encode())

    def sign(self, hook: Hook, *, secret: str) -> Hook:
        digest = hmac.new(secret.encode(), hook.body, hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
        return replace(hook, headers={**hook.headers, "X-CALLR-HmacSignature": signature})
