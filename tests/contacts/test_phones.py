import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from contacts.models import Contact, OptOut
from contacts.phones import normalize_phone, phone_region, try_normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("0400 123 456", "AU", "+61400123456"),
        ("+61 400 123 456", "AU", "+61400123456"),
        ("0061400123456", "AU", "+61400123456"),
        ("(04) 0012-3456", "AU", "+61400123456"),
        ("07400 123190", "GB", "+447400123190"),
        ("+44 7400 123190", "AU", "+447400123190"),
        ("021 123 4567", "NZ", "+64211234567"),
    ],
)
def test_normalize_phone_returns_e164(raw, region, expected):
    assert normalize_phone(raw, region=region) == expected


def test_default_region_comes_from_settings(settings):
    settings.PHONE_DEFAULT_REGION = "GB"
    assert normalize_phone("07400 123190") == "+447400123190"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("hello", "is not a phone number"),
        ("0400 123", "is not a valid phone number"),
        ("+61 400 123 456 789 12", "is not a"),
        ("+999 123456", "is not a"),
    ],
)
def test_invalid_numbers_are_refused_naming_value_and_reason(raw, fragment):
    with pytest.raises(ValidationError) as excinfo:
        normalize_phone(raw, region="AU")
    message = excinfo.value.messages[0]
    assert fragment in message
    assert repr(raw) in message  # names the value the user typed


def test_empty_number_is_required():
    with pytest.raises(ValidationError, match="required"):
        normalize_phone("   ", region="AU")


def test_try_normalize_and_region():
    assert try_normalize_phone("garbage") is None
    assert phone_region("+61400123456") == "AU"
    assert phone_region("+447400123190") == "GB"


@pytest.mark.django_db
def test_contact_full_clean_normalises_and_uniqueness_uses_e164():
    first = Contact(phone="0400 123 456")
    first.full_clean()
    first.save()
    assert first.phone == "+61400123456"

    duplicate = Contact(phone="+61 400-123-456")
    with pytest.raises(ValidationError) as excinfo:
        duplicate.full_clean()
    assert "phone" in excinfo.value.message_dict
    assert "already exists" in excinfo.value.message_dict["phone"][0]


@pytest.mark.django_db
def test_database_refuses_a_second_contact_with_the_same_number():
    Contact.objects.create(phone="+61400123456")
    with pytest.raises(IntegrityError):
        Contact.objects.create(phone="+61400123456")


@pytest.mark.django_db
def test_contact_form_error_names_the_bad_value(admin_client):
    response = admin_client.post(
        "/admin/contacts/contact/add/",
        {
            "phone": "0400 12",
            "first_name": "Ann",
            "custom_fields": "{}",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "&#x27;0400 12&#x27; is not a valid phone number" in response.content.decode()
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_optout_admin_normalises_the_number(admin_client):
    response = admin_client.post(
        "/admin/contacts/optout/add/", {"phone": "0400 123 456", "source": "manual"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OptOut.objects.get().phone == "+61400123456"
