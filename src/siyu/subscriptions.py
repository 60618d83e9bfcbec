"""Every subscriber of the event log, registered in one place.

Loaded by ``siyu.events.bus`` on the first emit (so no writer can forget it), and by the worker.
In-transaction subscribers change state with the event; outbox subscribers do work that leaves the
database, drained by the worker (``siyu.events.outbox``). Later ones (segments, SOP triggers) are
added here.
"""

from __future__ import annotations

from functools import partial

import siyu.events.tasks  # noqa: F401  (after each commit that queued outbox work, ask the worker to drain)
from siyu.customers import stages, writeback
from siyu.events.bus import subscribe
from siyu.events.outbox import register_handler
from siyu.wecom.writeback import LINK as WECOM

subscribe("customers.stages", stages.STAGE_INPUTS, stages.apply_rules)

# Tags and remarks changed in siyu, written back to WeCom (not those that came from WeCom).
subscribe(WECOM.handler, writeback.TYPES, outbox=True, wants=partial(writeback.wants, WECOM))
register_handler(WECOM.handler, partial(writeback.converge, WECOM))
