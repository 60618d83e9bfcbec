"""Every subscriber of the event log, registered in one place.

Loaded by ``siyu.events.bus`` on the first emit (so no writer can forget it), and by the worker.
In-transaction subscribers change state with the event; outbox subscribers do work that leaves the
database, drained by the worker (``siyu.events.outbox``). Later ones (segments, SOP triggers) are
added here.
"""

from __future__ import annotations

import siyu.events.tasks  # noqa: F401  (after each commit that queued outbox work, ask the worker to drain)
from siyu.customers import stages
from siyu.events.bus import subscribe

subscribe("customers.stages", stages.STAGE_INPUTS, stages.apply_rules)
