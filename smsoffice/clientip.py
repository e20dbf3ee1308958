"""The client's address as our own proxies saw it (used by login throttling)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The address of the client that sent ``request``.

    Without trusted proxies (``TRUSTED_PROXY_COUNT = 0``) this is the socket's
    ``REMOTE_ADDR``: any forwarding header may be forged. With ``n`` trusted
    proxies, each appends the address it received from to
    ``CLIENT_IP_HEADER``, so the client is the ``n``-th entry from the right;
    whatever the client itself put further left is ignored. A header shorter
    than expected (a request that bypassed a proxy) falls back to its left-most
    entry, which a trusted proxy still wrote.
    """
    remote = request.META.get("REMOTE_ADDR")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    header = request.META.get(settings.CLIENT_IP_HEADER, "")
    hops = [hop.strip() for hop in header.split(",") if hop.strip()]
    if not hops:
        return remote
    return hops[-count] if len(hops) >= count else hops[0]
