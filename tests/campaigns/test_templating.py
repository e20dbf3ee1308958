"""campaigns.templating: placeholders, defaults, plain-text rendering, and the
admin refusing unknown placeholders by name."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Campaign, MessageTemplate
from campaigns.templating import (
    compile_template,
    contact_context,
    placeholders,
    render,
    template_errors,
    unknown_placeholders,
    validate_defaults,
    validate_template,
)
from contacts.models import Contact


def test_render_fills_contact_fields():
    context = contact_context(first_name="Ann", last_name="Lee", phone="+61400000001")
    assert (
        render("Hi {{ first_name }} {{last_name}} ({{  phone  }})", context, {})
        == "Hi Ann Lee (+61400000001)"
    )


def test_render_is_plain_text_never_escaped():
    context = {"first_name": 'Tom & <Jerry> "O\'Neil"'}
    assert render("Hi {{ first_name }} & co", context, {}) == 'Hi Tom & <Jerry> "O\'Neil" & co'


def test_literal_braces_survive_rendering():
    assert render("{a} {{ first_name }} {} }", {"first_name": "Bo"}, {}) == "{a} Bo {} }"


def test_missing_value_falls_back_inline_then_template_default_then_empty():
    body = 'Hi {{ first_name|default:"there" }}, see you at {{ store }}{{ note }}.'
    defaults = {"store": "our shop", "first_name": "friend"}
    assert render(body, {"first_name": "Ann", "store": "Bondi"}, defaults) == (
        "Hi Ann, see you at Bondi."
    )
    # Inline default wins over the template default; blank counts as missing.
    assert render(body, {"first_name": "  "}, defaults) == "Hi there, see you at our shop."
    assert render(body, {}, {}) == "Hi there, see you at ."


def test_single_quoted_inline_default():
    assert render("Hi {{ first_name | default : 'you' }}", {}, {}) == "Hi you"


def test_missing_names_are_reported_only_when_nothing_filled_them():
    compiled = compile_template('{{ a }}{{ b|default:"" }}{{ c }}{{ d }}')
    missing: list[str] = []
    compiled.render({"d": "x"}, {"c": "y"}, missing)
    assert missing == ["a"]


def test_custom_field_values_render_as_text():
    context = contact_context(custom_fields={"points": 120, "vip": True, "ratio": 1.5})
    assert render("{{ points }} {{ vip }} {{ ratio }}", context, {}) == "120 true 1.5"


def test_custom_field_cannot_shadow_a_builtin():
    context = contact_context(first_name="", custom_fields={"first_name": "Imposter"})
    assert render('{{ first_name|default:"there" }}', context, {}) == "there"


def test_placeholders_lists_names():
    assert placeholders('Hi {{ first_name }}, {{ store|default:"x" }} {{ first_name }}') == {
        "first_name",
        "store",
    }
    assert placeholders("No placeholder {here}") == set()


@pytest.mark.django_db
def test_unknown_placeholders_known_from_builtins_defaults_and_custom_fields():
    Contact.objects.create(phone="+61400000001", custom_fields={"store": "Bondi"})
    body = "{{ first_name }} {{ email }} {{ store }} {{ tier }} {{ nickname }} {{ Store }}"
    assert unknown_placeholders(body, defaults={"tier": "gold"}) == {"nickname", "Store"}


def test_unknown_placeholders_with_known_names_given():
    assert unknown_placeholders("{{ a }} {{ b }} {{ phone }}", known={"a"}) == {"b"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Hi {{ first name }}", "'{{ first name }}' is not a placeholder"),
        ("Hi {{ }}", "'{{ }}' is not a placeholder"),
        ("{% if x %}yes{% endif %}", "'{% if x %}': template tags are not supported"),
        ("Hi {{ first_name", "There is a {{ without a closing }}"),
        ("Hi first_name }}", "There is a }} without an opening {{"),
        ("{{ a|upper }}", "'{{ a|upper }}' is not a placeholder"),
    ],
)
def test_malformed_tags_are_errors(body, expected):
    errors = template_errors(body, known=["a"])
    assert any(expected in error for error in errors), errors


@pytest.mark.django_db
def test_validate_template_names_every_unknown_placeholder():
    with pytest.raises(ValidationError) as exc:
        validate_template("Hi {{ nickname }}, {{ first_name }} at {{ shop }}")
    (message,) = exc.value.messages
    assert message.startswith("Unknown placeholders: {{ nickname }}, {{ shop }}.")


def test_validate_defaults():
    validate_defaults({"first_name": "there", "points": 0})
    with pytest.raises(ValidationError, match="JSON object"):
        validate_defaults(["there"])
    with pytest.raises(ValidationError, match="letters, digits and _: 'first name'"):
        validate_defaults({"first name": "x"})
    with pytest.raises(ValidationError, match="text or numbers: fix 'a'"):
        validate_defaults({"a": {"b": 1}})


# -------------------------------------------------------------------- admin


@pytest.fixture
def admin_client_root(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.django_db
def test_admin_refuses_a_template_with_unknown_placeholders(admin_client_root):
    response = admin_client_root.post(
        "/admin/campaigns/messagetemplate/add/",
        {"name": "Promo", "body": "Hi {{ first_name }}, {{ nickname }}!", "defaults": "{}"},
    )
    assert response.status_code == 200
    assert "Unknown placeholder: {{ nickname }}." in response.content.decode()
    assert not MessageTemplate.objects.exists()


@pytest.mark.django_db
def test_admin_saves_a_template_whose_names_are_known(admin_client_root):
    response = admin_client_root.post(
        "/admin/campaigns/messagetemplate/add/",
        {"name": "Promo", "body": "Hi {{ nickname }}!", "defaults": '{"nickname": "friend"}'},
    )
    assert response.status_code == 302
    assert MessageTemplate.objects.get().defaults == {"nickname": "friend"}


@pytest.mark.django_db
def test_admin_refuses_a_campaign_with_unknown_placeholders(admin_client_root, make_account):
    account = make_account()
    response = admin_client_root.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "Spring",
            "account": account.pk,
            "sender": "Acme",
            "body": "Hi {{ frist_name }} and {{ lastname }}",
            "extra_numbers": "",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "Unknown placeholders: {{ frist_name }}, {{ lastname }}." in response.content.decode()
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_admin_checks_a_campaign_template_body_with_its_defaults(admin_client_root, make_account):
    account = make_account(backend="smseveryone")
    template = MessageTemplate.objects.create(
        name="T", body="Hi {{ nick }} {{ other }}", defaults={"nick": "you"}
    )
    response = admin_client_root.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "Spring",
            "account": account.pk,
            "sender": "Acme Pizza",
            "template": template.pk,
            "body": "",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert "Unknown placeholder: {{ other }}." in content
    assert "{{ nick }}" not in content.split("Unknown placeholder")[1][:40]
    assert "SMS Everyone allows only letters A-Z and digits" in content
