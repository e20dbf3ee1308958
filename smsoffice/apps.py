from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SmsofficeConfig(AppConfig):
    name = "smsoffice"
    verbose_name = "smsoffice"

    def ready(self) -> None:
        from smsoffice.roles import ensure_roles_after_migrate

        # Roles exist whenever the schema does: after every migrate, idempotently.
        # Not limited to one sender: permissions are created app by app, and the
        # handler must run after the last of ours has its permissions.
        post_migrate.connect(ensure_roles_after_migrate, dispatch_uid="smsoffice-roles")
