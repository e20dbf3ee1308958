from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SmsofficeConfig(AppConfig):
    name = "smsoffice"
    verbose_name = "smsoffice"

    def ready(self) -> None:
        import smsoffice.lookups  # noqa: F401  (registers ``__anyof``)
        from smsoffice.logredact import install as install_log_redaction
        from smsoffice.roles import ensure_roles_after_migrate

        # Every log record of the process, whichever logger and handler, is
        # stripped of webhook tokens and credentials (smsoffice.logredact).
        install_log_redaction()

        # Roles exist whenever the schema does: after every migrate, idempotently.
        # Not limited to one sender: permissions are created app by app, and the
        # handler must run after the last of ours has its permissions.
        post_migrate.connect(ensure_roles_after_migrate, dispatch_uid="smsoffice-roles")
