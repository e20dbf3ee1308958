"""Campaign.kind: replies and test sends stay out of the Campaigns list by default."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign


@pytest.mark.django_db
def test_campaigns_list_hides_replies_until_asked(client, superuser, make_account):
    account = make_account()
    Campaign.objects.create(name="Spring sale", account=account)
    Campaign.objects.create(name="Reply to +4915112345678", account=account, kind="reply")
    Campaign.objects.create(name="Test send xyz", account=account, kind="test")
    client.force_login(superuser)
    url = reverse("admin:campaigns_campaign_changelist")

    default = client.get(url).content.decode()
    assert "Spring sale" in default
    assert "Reply to +4915112345678" not in default
    assert "Test send xyz" not in default

    replies = client.get(url, {"kind": "reply"}).content.decode()
    assert "Reply to +4915112345678" in replies
    assert "Spring sale" not in replies

    everything = client.get(url, {"kind": "all"}).content.decode()
    assert all(n in everything for n in ("Spring sale", "Reply to +4915112345678", "Test send"))


def test_new_campaigns_default_to_kind_campaign():
    assert Campaign._meta.get_field("kind").default == Campaign.Kind.CAMPAIGN
