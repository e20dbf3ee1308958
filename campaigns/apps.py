from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from campaigns.engine.run import listen_for_stop

        # In every django-q2 worker process, as it starts: a SIGINT (what
        # `make run` sends the worker's process group on Ctrl-C/SIGTERM, and
        # what a terminal's Ctrl-C sends) lets the dispatch run in hand
        # finish its batch, hand back what it has not sent, and end.
        post_spawn.connect(listen_for_stop, dispatch_uid="campaigns.listen_for_stop")
