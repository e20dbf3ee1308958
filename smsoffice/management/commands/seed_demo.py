"""Load demo data: safe to run again (nothing is duplicated, no credit added twice)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.models import Campaign, MessageTemplate
from contacts.models import Contact, ContactList, ListMembership, OptOut
from providers.models import ProviderAccount
from providers.services import credits_top_up
from smsoffice.roles import OPERATORS, RESELLERS, ensure_roles

FIRST_NAMES = [
    "Ava",
    "Noah",
    "Mia",
    "Leo",
    "Zoë",
    "Jack",
    "Isla",
    "Oliver",
    "Chloé",
    "Lucas",
    "Grace",
    "Henry",
    "Ruby",
    "Thomas",
    "Sienna",
    "William",
    "Ella",
    "James",
    "Harper",
    "Max",
]
LAST_NAMES = [
    "Smith",
    "Nguyen",
    "Jones",
    "Williams",
    "Brown",
    "Wilson",
    "Taylor",
    "Martin",
    "Anderson",
    "Thompson",
    "White",
    "Lee",
]

#: Inactive example accounts, so every provider shows up in the backend
#: choice (key, name). They have no credentials and send nothing until a
#: person enters them and ticks "active". Only registered backends are made.
EXAMPLE_ACCOUNTS = [
    ("fullsms", "FullSMS (example)"),
    ("transmitsms", "TransmitSMS (example)"),
    ("callr", "CALLR (example)"),
]

DEMO_USERS = [
    # username, password, is_superuser, group
    ("admin", "admin-demo-pass", True, None),
    ("operator", "operator-demo-pass", False, OPERATORS),
    ("reseller", "reseller-demo-pass", False, RESELLERS),
]


class Command(BaseCommand):
    help = "Create demo accounts, contacts, lists, templates, a campaign and logins (idempotent)."

    def handle(self, *args, **options):
        with transaction.atomic():
            users = self.seed_users()
            accounts = self.seed_accounts(users["reseller"])
            self.seed_contacts()
            self.seed_campaign(accounts["simulator"], users["admin"])
        self.stdout.write(self.style.SUCCESS("Demo data ready. Logins:"))
        for username, password, _, group in DEMO_USERS:
            role = group or "superuser"
            self.stdout.write(f"  {username:<9} / {password:<20} ({role})")

    def seed_users(self):
        groups = ensure_roles()
        User = get_user_model()
        users = {}
        for username, password, superuser, group in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "is_staff": True,
                    "is_superuser": superuser,
                    "email": f"{username}@example.com",
                },
            )
            if created:
                user.set_password(password)
                user.save()
            if group:
                user.groups.add(groups[group])
            users[username] = user
        return users

    def seed_accounts(self, reseller_user):
        simulator, _ = ProviderAccount.objects.get_or_create(
            name="Simulator",
            defaults={
                "backend": "simulator",
                "default_sender": "smsoffice",
                "country_rates": {"GB": "2"},
                # The simulated provider's price list, the same as ours: reconcile agrees.
                "credentials": {"country_rates": {"GB": "2"}},
                "low_balance_threshold": Decimal("500"),
            },
        )
        credits_top_up(
            account=simulator,
            amount=Decimal("10000"),
            note="Demo credits",
            idempotency_key="seed-demo:simulator",
        )
        reseller, _ = ProviderAccount.objects.get_or_create(
            name="Acme Reseller", defaults={"backend": "simulator", "default_sender": "Acme"}
        )
        reseller.owners.add(reseller_user)
        credits_top_up(
            account=reseller,
            amount=Decimal("5000"),
            note="Demo credits",
            idempotency_key="seed-demo:reseller",
        )
        for name in ("Acme Bakery", "Acme Plumbing"):
            ProviderAccount.objects.get_or_create(
                name=name,
                defaults={"backend": "simulator", "parent": reseller, "default_sender": "Acme"},
            )
        for backend, name in EXAMPLE_ACCOUNTS:
            if backend in settings.SMS_BACKENDS:
                ProviderAccount.objects.get_or_create(
                    name=name, defaults={"backend": backend, "is_active": False}
                )
        return {"simulator": simulator, "reseller": reseller}

    def seed_contacts(self):
        lists = [
            ContactList.objects.get_or_create(name=name, defaults={"description": desc})[0]
            for name, desc in [
                ("Customers", "Everyone who bought something"),
                ("Newsletter", "Asked for news by SMS"),
                ("VIP", "Top customers"),
            ]
        ]
        contacts = []
        for i in range(200):
            phone = f"+61400123{i:03d}" if i < 190 else f"+447400123{i:03d}"
            contact, _ = Contact.objects.get_or_create(
                phone=phone,
                defaults={
                    "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
                    "last_name": LAST_NAMES[i % len(LAST_NAMES)],
                    "custom_fields": {"store": ["Parramatta", "Newtown", "Manly"][i % 3]},
                },
            )
            contacts.append(contact)
        memberships = [ListMembership(contact=c, contact_list=lists[0]) for c in contacts[:150]]
        memberships += [ListMembership(contact=c, contact_list=lists[1]) for c in contacts[100:]]
        memberships += [ListMembership(contact=c, contact_list=lists[2]) for c in contacts[::10]]
        ListMembership.objects.bulk_create(memberships, ignore_conflicts=True)
        for phone, reason in [("+61400123007", "Asked by phone"), ("+61400123042", "STOP reply")]:
            OptOut.objects.get_or_create(phone=phone, defaults={"reason": reason})

    def seed_campaign(self, account, user):
        welcome, _ = MessageTemplate.objects.get_or_create(
            name="Welcome",
            defaults={
                "body": "Hi {{ first_name }}, welcome to Acme! Reply STOP to opt out.",
                "defaults": {"first_name": "there"},
            },
        )
        MessageTemplate.objects.get_or_create(
            name="Store sale",
            defaults={
                "body": "Hi {{ first_name }}, 20% off this weekend at our "
                "{{ store }} store. Reply STOP to opt out.",
                "defaults": {"first_name": "there", "store": "local"},
            },
        )
        campaign, created = Campaign.objects.get_or_create(
            name="Welcome (demo)",
            defaults={
                "account": account,
                "template": welcome,
                "created_by": user,
                "sender": "Acme",
            },
        )
        if created:
            campaign.lists.set(ContactList.objects.filter(name="VIP"))
