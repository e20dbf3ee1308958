"""The claim token's index holds only batches in flight: tokens of messages
that already left ``submitting`` are cleared (the engine now clears them as
it records each message), then the index is rebuilt as a partial one."""

from django.db import migrations, models


def clear_settled_tokens(apps, schema_editor):
    Message = apps.get_model("campaigns", "Message")
    Message.objects.filter(claim_token__isnull=False).exclude(status="submitting").update(
        claim_token=None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0008_message_fewer_indexes"),
        ("contacts", "0003_merge_i13_i15"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="message",
            name="msg_claim_token",
        ),
        migrations.RunPython(clear_settled_tokens, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("claim_token__isnull", False)),
                fields=["claim_token"],
                name="msg_claim_token",
            ),
        ),
    ]
