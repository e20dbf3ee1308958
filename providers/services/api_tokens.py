"""Per-user API tokens: made once (shown once), stored as a hash, revocable."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from providers.models import ApiToken

#: Prefix of every token, so a leaked one is recognisable in logs and scanners.
TOKEN_PREFIX = "smso_"


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row and the raw token (never stored)."""
    name = (name or "").strip()
    if not name:
        raise ValueError("An API token needs a name (what it is for).")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=raw[len(TOKEN_PREFIX) :][:8], key_hash=_hash(raw)
    )
    return token, raw


def api_token_user(raw: str):
    """The active user a raw token belongs to, or None (unknown, revoked,
    inactive user). Records when it was last used."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_hash(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
