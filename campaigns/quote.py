"""Who a campaign will reach and what it will cost, before anything is sent.

:func:`campaign_recipients` streams the recipients (the engine plans one
``Message`` per item) and :func:`campaign_quote` sums them up for the
confirm page. Both read the same stream, so what is quoted is what is
planned.

Recipients are the contacts of the campaign's lists, then the campaign's
``extra_numbers`` (any format, one per line or separated by commas or
semicolons). Every entry (a list membership or an extra number) is counted
exactly once, so ``recipients + sum(excluded.values())`` equals the number
of entries:

- ``invalid``: an extra number that is not a valid phone number;
- ``duplicate``: a second (third, ...) entry for the same E.164 number, be it
  the same contact in two lists, an extra number also in a list, or an
  extra number given twice;
- ``opted_out``: the first entry of a number on the opt-out list.

Streaming: list contacts are read with ``values_list(...).iterator()`` in
chunks ordered by id, deduplicated and washed against opt-outs by the
database (``IN`` / ``NOT EXISTS``), so memory does not grow with the number
of recipients. Only the extra numbers (a text field) are held in memory.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import phonenumbers
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, TextField
from django.db.models.functions import Cast

from campaigns.templating import BUILTIN_FIELDS, compile_template, template_errors
from contacts.models import Contact, ListMembership, OptOut
from contacts.phones import normalize_phone
from providers.limits import body_errors, body_too_long, check_sender, limits_for
from providers.sms import SmsMeasure, measure

if TYPE_CHECKING:
    from campaigns.models import Campaign
    from providers.models import ProviderAccount

CHUNK = 2000
CENT = Decimal("0.01")
EXCLUSION_REASONS = ("opted_out", "invalid", "duplicate")
#: How many invalid extra numbers the quote quotes back verbatim.
INVALID_EXAMPLES = 10


@dataclass(frozen=True, slots=True)
class PlannedRecipient:
    """One recipient as it will be sent: rendered body, its measure and price."""

    phone: str
    contact_id: int | None
    body: str
    encoding: str
    segments: int
    credits: Decimal


@dataclass
class CampaignQuote:
    """What sending a campaign now would do. ``problems`` block sending.

    ``balance_after`` is the account's *available* credits (balance minus
    what other campaigns reserved) once this campaign's credits are taken;
    negative means it cannot be afforded.
    """

    recipients: int
    excluded: dict[str, int]
    segments_distribution: dict[int, int]
    credits_needed: Decimal
    available: Decimal
    balance_after: Decimal
    problems: list[str] = field(default_factory=list)
    #: Non-blocking notes (e.g. messages where a placeholder rendered empty).
    warnings: list[str] = field(default_factory=list)
    #: Messages per encoding, e.g. {"GSM-7": 9800, "UCS-2": 200}.
    encodings: dict[str, int] = field(default_factory=dict)
    #: Characters that forced UCS-2 -> number of messages containing them.
    non_gsm_characters: dict[str, int] = field(default_factory=dict)
    #: The first invalid extra numbers, each with the reason.
    invalid_numbers: list[str] = field(default_factory=list)
    body: str = ""
    sender: str = ""
    account_id: int | None = None
    backend: str = ""
    personalised: bool = False
    #: Measure of the body as written (placeholders unrendered).
    body_measure: SmsMeasure | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def segments_total(self) -> int:
        return sum(segments * n for segments, n in self.segments_distribution.items())

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def as_dict(self) -> dict:
        """JSON-safe snapshot (stored as ``Campaign.confirmed_quote``).

        Decimals become strings, segment counts become string keys.
        """
        return {
            "recipients": self.recipients,
            "excluded": dict(self.excluded),
            "segments_distribution": {
                str(k): v for k, v in sorted(self.segments_distribution.items())
            },
            "segments_total": self.segments_total,
            "credits_needed": str(self.credits_needed),
            "available": str(self.available),
            "balance_after": str(self.balance_after),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "encodings": dict(self.encodings),
            "non_gsm_characters": dict(self.non_gsm_characters),
            "invalid_numbers": list(self.invalid_numbers),
            "body": self.body,
            "sender": self.sender,
            "account_id": self.account_id,
            "backend": self.backend,
            "personalised": self.personalised,
        }


# --------------------------------------------------------------------------
# Rates


class RateResolver:
    """Credits per segment for a destination, as ``account.rate_for_region(
    phone_region(phone))`` would give, without parsing every number.

    The country calling code is read off the E.164 prefix; when every
    region sharing that code has the same rate on the account (the usual
    case, and always when no country rates are set) no region lookup is
    needed. Otherwise the region is resolved like phonenumbers does, from
    a number built directly (skipping the string parse).
    """

    def __init__(self, account: ProviderAccount) -> None:
        self.account = account
        self.default = Decimal(account.credits_per_segment)
        self.varies = bool(account.country_rates)
        # phone[:4] ("+614") -> (country code, rate if constant for the code else None)
        self._prefix: dict[str, tuple[int, Decimal | None]] = {}

    def __call__(self, phone: str) -> Decimal:
        if not self.varies:
            return self.default
        prefix = phone[:4]
        known = self._prefix.get(prefix)
        if known is None:
            known = self._prefix[prefix] = self._for_prefix(phone)
        country_code, rate = known
        if rate is not None:
            return rate
        return self.account.rate_for_region(self._region(phone, country_code))

    def _for_prefix(self, phone: str) -> tuple[int, Decimal | None]:
        digits = phone[1:]
        for length in (1, 2, 3):
            code = int(digits[:length] or 0)
            regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
            if regions:
                rates = {self.account.rate_for_region(r) for r in regions}
                return code, rates.pop() if len(rates) == 1 else None
        return 0, self.account.rate_for_region(None)

    @staticmethod
    def _region(phone: str, country_code: int) -> str | None:
        national = phone[1 + len(str(country_code)) :]
        if not national.isdigit():
            return None
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        zeros = len(national) - len(national.lstrip("0"))
        if zeros and len(national) > 1:
            # As phonenumbers.parse records it (Italian-style leading zeros).
            number.italian_leading_zero = True
            if zeros > 1:
                number.number_of_leading_zeros = zeros
        return phonenumbers.region_code_for_number(number) or None


# --------------------------------------------------------------------------
# The stream


_SPLIT = re.compile(r"[\n\r,;]+")


def parse_extra_numbers(text: str) -> list[str]:
    """The raw entries of an ``extra_numbers`` field (blank ones dropped)."""
    return [token.strip() for token in _SPLIT.split(text or "") if token.strip()]


class _Stream:
    """One pass over a campaign's recipients, counting what it excludes.

    Iterate it once; ``excluded`` and ``invalid_examples`` are final when
    iteration ends. Each item is ``(phone, contact_id, body, measure, rate,
    missing_names)``.
    """

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.account = campaign.account
        self.body = campaign.effective_body
        template = campaign.template if campaign.template_id else None
        self.defaults = dict(template.defaults or {}) if template is not None else {}
        self.compiled = compile_template(self.body)
        self.static = self.compiled.is_static
        self.static_measure = measure(self.body)
        self.fallbacks = self.compiled.fallbacks(self.defaults)
        self.rate = RateResolver(self.account)
        self.list_ids = list(campaign.lists.values_list("pk", flat=True))
        self.excluded: Counter[str] = Counter(dict.fromkeys(EXCLUSION_REASONS, 0))
        self.invalid_examples: list[str] = []
        self._measures: dict[str, SmsMeasure] = {}

        # Fetch only the columns the body uses. custom_fields comes as raw
        # JSON text and is decoded here: much cheaper than the ORM converter.
        names = self.compiled.names
        builtins = [f for f in ("first_name", "last_name", "email") if f in names]
        self.uses_custom = bool(names - set(BUILTIN_FIELDS))
        self.columns = ["pk", "phone", *builtins] + (["_custom"] if self.uses_custom else [])
        index = {name: i for i, name in enumerate(self.columns)}
        # Per slot: the row index of a built-in column, or None for a custom key.
        self.getters = [index.get(slot.name) for slot in self.compiled.slots]

    # ---------------------------------------------------------------- rows
    def _members(self):
        return ListMembership.objects.filter(contact_list_id__in=self.list_ids).values("contact_id")

    def _contacts(self):
        return Contact.objects.filter(pk__in=self._members())

    def _rows(self, queryset):
        if self.uses_custom:
            queryset = queryset.annotate(_custom=Cast("custom_fields", output_field=TextField()))
        return queryset.values_list(*self.columns)

    def _item(self, row: tuple) -> tuple[str, int | None, str, SmsMeasure, Decimal, list[str]]:
        pk, phone = row[0], row[1]
        if self.static:
            return phone, pk, self.body, self.static_measure, self.rate(phone), []
        custom = {}
        if self.uses_custom and row[-1]:
            custom = json.loads(row[-1])
            if not isinstance(custom, dict):
                custom = {}
        values = [
            row[i] if i is not None else custom.get(slot.name)
            for i, slot in zip(self.getters, self.compiled.slots, strict=True)
        ]
        missing: list[str] = []
        body = self.compiled.render_values(values, self.fallbacks, missing)
        m = self._measures.get(body)
        if m is None:
            if len(self._measures) > 10_000:
                self._measures.clear()  # bounded memo: names repeat, so bodies often do
            m = self._measures[body] = measure(body)
        return phone, pk, body, m, self.rate(phone), missing

    def _extra_item(self, phone: str, row: tuple | None):
        if row is not None:
            return self._item(row)
        # A number that is no contact's: only {{ phone }} has a value.
        return self._item((None, phone, *([""] * (len(self.columns) - 2))))

    def __iter__(self):
        if self.list_ids:
            contacts = self._contacts()
            entries = ListMembership.objects.filter(contact_list_id__in=self.list_ids).count()
            distinct = contacts.count()
            opted = OptOut.objects.filter(phone=OuterRef("phone"))
            self.excluded["duplicate"] += entries - distinct
            self.excluded["opted_out"] += contacts.filter(Exists(opted)).count()
            rows = self._rows(contacts.filter(~Exists(opted)).order_by("pk"))
            for row in rows.iterator(chunk_size=CHUNK):
                yield self._item(row)
        yield from self._extras()

    def _extras(self):
        unique: dict[str, None] = {}
        for raw in parse_extra_numbers(self.campaign.extra_numbers):
            try:
                phone = normalize_phone(raw)
            except ValidationError as exc:
                self.excluded["invalid"] += 1
                if len(self.invalid_examples) < INVALID_EXAMPLES:
                    self.invalid_examples.append(" ".join(exc.messages))
                continue
            if phone in unique:
                self.excluded["duplicate"] += 1
            else:
                unique[phone] = None
        phones = list(unique)
        for start in range(0, len(phones), 500):
            chunk = phones[start : start + 500]
            in_lists: set[str] = set()
            if self.list_ids:
                in_lists = set(
                    self._contacts().filter(phone__in=chunk).values_list("phone", flat=True)
                )
            opted = set(OptOut.objects.filter(phone__in=chunk).values_list("phone", flat=True))
            known = {row[1]: row for row in self._rows(Contact.objects.filter(phone__in=chunk))}
            for phone in chunk:
                if phone in in_lists:
                    self.excluded["duplicate"] += 1
                elif phone in opted:
                    self.excluded["opted_out"] += 1
                else:
                    yield self._extra_item(phone, known.get(phone))


def campaign_recipients(*, campaign: Campaign) -> Iterator[PlannedRecipient]:
    """Stream the campaign's recipients, deduplicated by E.164, without the
    opted-out and invalid ones, each with its rendered body and price.

    Contacts of the lists come first (by contact id), then the extra numbers
    in the order written. Nothing is loaded whole: consume it in chunks.
    """
    for phone, contact_id, body, m, rate, _missing in _Stream(campaign):
        yield PlannedRecipient(
            phone=phone,
            contact_id=contact_id,
            body=body,
            encoding=m.encoding,
            segments=m.segments,
            credits=rate * m.segments,
        )


def _home_prefix(account: ProviderAccount) -> str:
    """``"+61"`` when the provider said the account cannot send abroad (and
    named its country), else ``""``: every number may be sent to."""
    if account.provider_allows_international is not False or not account.provider_home_country:
        return ""
    code = phonenumbers.country_code_for_region(account.provider_home_country)
    return f"+{code}" if code else ""


def _provider_setting_problems(
    account: ProviderAccount, *, encodings: Counter[str], abroad: int
) -> list[str]:
    """What the provider would refuse for every message, from the settings it
    reported for the account (cached on it, see providers.account_settings)."""
    problems = []
    ucs2 = encodings.get("UCS-2", 0)
    if account.provider_allows_unicode is False and ucs2:
        problems.append(
            f"{ucs2} message{'s need' if ucs2 > 1 else ' needs'} Unicode (UCS-2), but "
            f"{account.name} may not send Unicode texts at the provider, which would refuse "
            "them: replace the non-GSM characters, or ask the provider to enable Unicode and "
            "read the account's settings again."
        )
    if abroad:
        problems.append(
            f"{abroad} recipient{'s are' if abroad > 1 else ' is'} outside "
            f"{account.provider_home_country}, but {account.name} may not send "
            "internationally at the provider: remove them, or ask the provider to enable "
            "international messaging and read the account's settings again."
        )
    return problems


def campaign_quote(*, campaign: Campaign) -> CampaignQuote:
    """Count recipients, exclusions, segments and credits of ``campaign`` now.

    Reads only (no lock, no transaction: a quote is advice, the send service
    re-quotes and reserves atomically). ``problems`` lists everything that
    must be fixed before sending: empty body, malformed or unknown
    placeholders, an invalid sender, messages too long for the provider, no
    recipients, not enough credits, an inactive account, Unicode texts or
    numbers abroad where the provider said the account may not send them.
    """
    account = campaign.account
    stream = _Stream(campaign)
    limits = limits_for(account.backend)
    sender = campaign.effective_sender

    problems: list[str] = []
    if not stream.body.strip():
        problems.append("The message is empty: write a text or choose a template that has one.")
    else:
        problems += template_errors(stream.body, defaults=stream.defaults)
    problems += check_sender(account.backend, sender)
    if not account.is_active:
        problems.append(f"The provider account {account.name} is inactive: activate it first.")

    by_price: Counter[tuple[int, Decimal]] = Counter()
    encodings: Counter[str] = Counter()
    non_gsm: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    too_long = 0
    longest: SmsMeasure | None = None
    recipients = 0
    last_measure: SmsMeasure | None = None
    flagged = False
    home_prefix = _home_prefix(account)
    abroad = 0
    for phone, _cid, _body, m, rate, missing_names in stream:
        recipients += 1
        if home_prefix and not phone.startswith(home_prefix):
            abroad += 1
        by_price[(m.segments, rate)] += 1
        encodings[m.encoding] += 1
        if m is not last_measure:
            # Per distinct measure only: a static body is checked once.
            last_measure = m
            flagged = body_too_long(
                limits, characters=m.characters, encoding=m.encoding, units=m.units
            )
            if flagged and (longest is None or m.units > longest.units):
                longest = m
        if flagged:
            too_long += 1
        if m.non_gsm:
            non_gsm.update({char for _, char in m.non_gsm})
        if missing_names:
            missing.update(set(missing_names))

    distribution: Counter[int] = Counter()
    credits = Decimal("0")
    for (segments, rate), n in by_price.items():
        distribution[segments] += n
        credits += rate * segments * n
    credits = credits.quantize(CENT)
    available = account.available

    if longest is not None:
        what = "The message" if stream.static else f"{too_long} of the messages"
        problems += body_errors(
            limits,
            characters=longest.characters,
            encoding=longest.encoding,
            units=longest.units,
            what=what if stream.static else f"{what} (the longest)",
        )
    problems += _provider_setting_problems(account, encodings=encodings, abroad=abroad)
    if stream.body.strip() and recipients == 0:
        excluded = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in stream.excluded.items() if n)
        problems.append(
            "There are no recipients: choose a contact list or add numbers"
            + (f" ({excluded} excluded)." if excluded else ".")
        )
    if credits > available:
        problems.append(
            f"This campaign needs {credits} credits but {account.name} has {available} "
            f"available ({account.balance} balance, {account.reserved} reserved). Top up "
            f"{(credits - available).quantize(CENT)} credits or reduce the recipients."
        )

    warnings = [
        f"{n} message{'s' if n > 1 else ''} will have nothing for {{{{ {name} }}}} "
        f'(no value and no default): add a default such as {{{{ {name}|default:"..." }}}}.'
        for name, n in sorted(missing.items())
    ]
    return CampaignQuote(
        recipients=recipients,
        excluded=dict(stream.excluded),
        segments_distribution=dict(sorted(distribution.items())),
        credits_needed=credits,
        available=available,
        balance_after=(available - credits).quantize(CENT),
        problems=problems,
        warnings=warnings,
        encodings=dict(encodings),
        non_gsm_characters=dict(non_gsm.most_common()),
        invalid_numbers=list(stream.invalid_examples),
        body=stream.body,
        sender=sender,
        account_id=account.pk,
        backend=account.backend,
        personalised=not stream.static,
        body_measure=stream.static_measure,
    )


# --------------------------------------------------------------------------
# The draft's quote on its page: cached, refreshed on demand

#: A draft with up to this many entries (list memberships + extra numbers)
#: is quoted when its page opens; a bigger one only when asked.
LIVE_QUOTE_LIMIT = 5_000
QUOTE_CACHE_SECONDS = 7 * 24 * 3600


def _quote_cache_key(campaign: Campaign) -> str:
    # Any edit of the campaign (body, lists, account, ...) changes updated_at.
    stamp = campaign.updated_at.timestamp() if campaign.updated_at else 0
    return f"campaign-quote:{campaign.pk}:{stamp}"


def campaign_quote_is_big(*, campaign: Campaign) -> bool:
    """Whether ``campaign`` has more than :data:`LIVE_QUOTE_LIMIT` entries
    (a bounded count: it reads at most that many rows)."""
    extra = len(parse_extra_numbers(campaign.extra_numbers or ""))
    if extra > LIVE_QUOTE_LIMIT:
        return True
    members = ListMembership.objects.filter(contact_list__campaigns=campaign)
    return members[: LIVE_QUOTE_LIMIT - extra + 1].count() > LIVE_QUOTE_LIMIT - extra


def campaign_quote_cached(*, campaign: Campaign, refresh: bool = False) -> dict | None:
    """The quote of a draft for its page, as :meth:`CampaignQuote.as_dict`
    plus ``body_measure`` and ``computed_at`` (an aware datetime).

    Served from the cache while the campaign is unchanged; computed when
    ``refresh`` is true or the draft is small (:func:`campaign_quote_is_big`);
    otherwise ``None``: the page offers to compute it. Lists can change
    without the campaign changing, so the page shows ``computed_at``.
    """
    from django.core.cache import cache
    from django.utils import timezone

    key = _quote_cache_key(campaign)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
        if campaign_quote_is_big(campaign=campaign):
            return None
    quote = campaign_quote(campaign=campaign)
    data = quote.as_dict()
    m = quote.body_measure
    data["body_measure"] = m.as_dict() if m is not None else None
    data["computed_at"] = timezone.now()
    cache.set(key, data, QUOTE_CACHE_SECONDS)
    return data
