"""Every change to a credit balance, each written to the ledger in the same
transaction as the balance change it records. This package's ``__init__`` is
a façade: import from ``providers.services``; the modules are split by
concern:

- :mod:`~providers.services.amounts`: the one parser of amounts and rates;
- :mod:`~providers.services.ledger`: posting primitives and idempotency;
- :mod:`~providers.services.movements`: reserve, charge, release, refund,
  adjust (our ledger only);
- :mod:`~providers.services.topups`: top-ups and transfers (may reach the
  provider);
- :mod:`~providers.services.notifications`: low-balance warnings;
- :mod:`~providers.services.resellers`: reseller self-service (clients,
  prices within floors, take back, statements);
- :mod:`~providers.services.reads`: drift against the provider, ledger checks.

Contract shared by every ``credits_*`` function:

- keyword-only; returns the :class:`CreditTransaction` it wrote (for a
  transfer, the ``transfer_out`` row of the source);
- raises :class:`CreditError` (a ``ValidationError``) whose message says what
  is wrong with the numbers, and writes nothing;
- ``idempotency_key``: the same key twice applies once and returns the first
  row, also when the two requests race; a key reused for a different movement
  is refused;
- runs inside its own ``transaction.atomic`` (a savepoint when the caller
  already holds a transaction) and locks the account rows through
  :mod:`providers.locking` (ascending pk, ``FOR NO KEY UPDATE`` on
  PostgreSQL), re-reading them under the lock, so a balance can never go
  below zero or below what is reserved. On SQLite, where row locks do not
  exist, every transaction is ``BEGIN IMMEDIATE`` (settings), which
  serialises writers;
- a deadlock or serialization failure is retried a few times when the
  service runs its own transaction, and otherwise refused with
  ``CreditError(code="busy")`` — never a raw database error.

The ``account`` instances you pass are not refreshed: read the returned
row's ``balance_after``/``reserved_after`` or call ``refresh_from_db()``.
"""

from providers.services.amounts import (
    CENT,
    MAX_AMOUNT,
    MAX_RATE,
    ZERO,
    check_fits,
    parse_amount,
    parse_country_rates,
    parse_rate,
)
from providers.services.errors import CreditError
from providers.services.ledger import user_may
from providers.services.movements import (
    credits_adjust,
    credits_charge,
    credits_refund,
    credits_refund_many,
    credits_release,
    credits_reserve,
)
from providers.services.notifications import low_balance_recipients
from providers.services.reads import (
    Drift,
    LedgerMismatch,
    ReferenceCredits,
    credits_for_reference,
    credits_outcome,
    credits_reconcile,
    ledger_mismatches,
)
from providers.services.resellers import (
    Statement,
    account_statement,
    client_clean,
    client_save,
    clients_of,
    credits_take_back,
    reseller_accounts,
    reseller_refusal,
)
from providers.services.topups import (
    credits_top_up,
    credits_transfer,
    topup_intent_resolve,
    topup_intents_reconcile,
    transfer_refusal,
)

__all__ = [
    "CENT",
    "MAX_AMOUNT",
    "MAX_RATE",
    "ZERO",
    "CreditError",
    "Drift",
    "LedgerMismatch",
    "ReferenceCredits",
    "Statement",
    "account_statement",
    "check_fits",
    "client_clean",
    "client_save",
    "clients_of",
    "credits_adjust",
    "credits_charge",
    "credits_for_reference",
    "credits_outcome",
    "credits_reconcile",
    "credits_refund",
    "credits_refund_many",
    "credits_release",
    "credits_reserve",
    "credits_take_back",
    "credits_top_up",
    "credits_transfer",
    "ledger_mismatches",
    "low_balance_recipients",
    "parse_amount",
    "parse_country_rates",
    "parse_rate",
    "reseller_accounts",
    "reseller_refusal",
    "topup_intent_resolve",
    "topup_intents_reconcile",
    "transfer_refusal",
    "user_may",
]
