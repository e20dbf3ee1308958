"""The campaign engine: from a scheduled campaign to messages at the provider.

One module per concern:

- :mod:`~campaigns.engine.run`: one dispatch run (the django-q2 task), its
  loop of steps and when it re-enqueues itself;
- :mod:`~campaigns.engine.lease`: one worker at a time per campaign;
- :mod:`~campaigns.engine.plan`: one ``Message`` per recipient, the
  reservation set to what was planned;
- :mod:`~campaigns.engine.batch`: claim, wash, send, record (money rules);
- :mod:`~campaigns.engine.recover`: reconcile batches whose fate is unknown,
  find campaigns nobody dispatches;
- :mod:`~campaigns.engine.transitions`: the engine's campaign status changes;
- :mod:`~campaigns.engine.polling`: delivery status and reply polling;
- :mod:`~campaigns.engine.enqueue`, :mod:`~campaigns.engine.clock`,
  :mod:`~campaigns.engine.common`: shared plumbing.

Never sent twice: a message is sent only from a batch it was claimed into;
a batch whose fate is unknown stays ``submitting`` until recovery reconciles
it with the provider by our reference (``f"m{pk}"``) or, where the provider
cannot tell, marks it ``unknown`` for a person to decide. Nothing is re-sent
blindly. When a campaign ends nothing is reserved any more.
"""

from campaigns.engine.batch import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    CHARGED,
    MAX_ATTEMPTS,
    RELEASED,
    Batch,
    Outcome,
    backoff,
    batch_claim,
    batch_record,
    batch_send,
)
from campaigns.engine.common import (
    STALE_AFTER,
    campaign_reference,
    credits_of,
    message_reference,
)
from campaigns.engine.enqueue import DISPATCH_TASK, dispatch_schedule_name, enqueue_dispatch
from campaigns.engine.lease import LEASE
from campaigns.engine.plan import PLAN_CHUNK, campaign_plan, reservation_reconcile
from campaigns.engine.polling import POLL_SLICE, replies_poll, statuses_poll
from campaigns.engine.recover import batches_recover, stalled_campaigns
from campaigns.engine.run import (
    FAIL_CAMPAIGN_AFTER,
    TIME_SLICE,
    DispatchRun,
    Step,
    campaign_dispatch,
    dispatch_note,
    dispatch_step,
    messages_for,
)
from campaigns.engine.transitions import campaign_auto_pause, campaign_complete_if_done

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CHARGED",
    "DISPATCH_TASK",
    "FAIL_CAMPAIGN_AFTER",
    "LEASE",
    "MAX_ATTEMPTS",
    "PLAN_CHUNK",
    "POLL_SLICE",
    "RELEASED",
    "STALE_AFTER",
    "TIME_SLICE",
    "Batch",
    "DispatchRun",
    "Outcome",
    "Step",
    "backoff",
    "batch_claim",
    "batch_record",
    "batch_send",
    "batches_recover",
    "campaign_auto_pause",
    "campaign_complete_if_done",
    "campaign_dispatch",
    "campaign_plan",
    "campaign_reference",
    "credits_of",
    "dispatch_note",
    "dispatch_schedule_name",
    "dispatch_step",
    "enqueue_dispatch",
    "message_reference",
    "messages_for",
    "replies_poll",
    "reservation_reconcile",
    "stalled_campaigns",
    "statuses_poll",
]
