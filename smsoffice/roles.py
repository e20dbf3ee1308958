"""The two staff roles, as auth Groups with exactly the permissions they need.

``ensure_roles`` is idempotent: it runs after every ``migrate`` and sets each
group's permissions to the list below (adding and removing).
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

OPERATORS = "Operators"
RESELLERS = "Resellers"

_CRUD = ("view", "add", "change", "delete")

ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    OPERATORS: [
        *[
            ("contacts", f"{a}_{m}")
            for m in ("contact", "contactlist", "listmembership", "optout")
            for a in _CRUD
        ],
        *[("campaigns", f"{a}_{m}") for m in ("messagetemplate", "campaign") for a in _CRUD],
        ("contacts", "view_optoutevent"),
        ("campaigns", "view_message"),
        ("campaigns", "view_inboundmessage"),
        ("campaigns", "view_campaignevent"),
        # The Inbox: read conversations, mark them handled.
        ("campaigns", "view_conversation"),
        ("campaigns", "change_conversation"),
        ("campaigns", "send_campaign"),
    ],
    RESELLERS: [
        ("providers", "view_provideraccount"),
        ("providers", "top_up_account"),
        ("providers", "view_credittransaction"),
        # Self-service: their own clients (scoped to the accounts they own).
        ("providers", "view_clientaccount"),
        ("providers", "add_clientaccount"),
        ("providers", "change_clientaccount"),
        # Their own API tokens (the admin shows each user only its own).
        ("providers", "view_apitoken"),
        ("providers", "add_apitoken"),
        # The Inbox of their own accounts (campaigns.inbox_access scopes it).
        ("campaigns", "view_conversation"),
        ("campaigns", "change_conversation"),
    ],
}


def ensure_roles() -> dict[str, Group]:
    groups = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for app_label, codename in perms:
            try:
                wanted.append(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
            except Permission.DoesNotExist:
                # The permission's model is not migrated yet (partial migrate).
                continue
        group.permissions.set(wanted)
        groups[name] = group
    return groups


def ensure_roles_after_migrate(*, app_config, **kwargs) -> None:
    if app_config.label in {"contacts", "providers", "campaigns", "smsoffice"}:
        ensure_roles()
