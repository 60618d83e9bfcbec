"""Every subscriber of the event log, registered in one place.

Loaded by ``siyu.events.bus`` on the first emit (so no writer can forget it), and by the worker.
In-transaction subscribers change state with the event; outbox subscribers do work that leaves the
database, drained by the worker (``siyu.events.outbox``). Later ones (segments, SOP triggers) are
added here.

This module may import every domain, and no domain imports it; so it is also where two domains that
must not import each other are wired together (leads get channel codes from channels; channels'
``code_scanned`` converts leads).
"""

from __future__ import annotations

from functools import partial

import siyu.events.tasks  # noqa: F401  (after each commit that queued outbox work, ask the worker to drain)
from siyu.accounts import service as accounts
from siyu.analytics import erasure as analytics_erasure
from siyu.campaigns import service as campaigns
from siyu.channels import service as channels
from siyu.customers import stages, writeback
from siyu.customers.erasure import register_erase_hook
from siyu.events.bus import subscribe
from siyu.events.outbox import register_handler
from siyu.events.vocabulary import EventType
from siyu.groups import service as groups
from siyu.leads import service as leads
from siyu.wecom import erasure as wecom_erasure
from siyu.wecom.writeback import LINK as WECOM

subscribe("customers.stages", stages.STAGE_INPUTS, stages.apply_rules)
# An add through a code converts the lead that was sent it (merge, intent, intent tag).
subscribe("leads.conversion", {EventType.code_scanned}, leads.convert_on_scan)

# Tags and remarks changed in siyu, written back to WeCom (not those that came from WeCom).
subscribe(WECOM.handler, writeback.TYPES, outbox=True, wants=partial(writeback.wants, WECOM))
register_handler(WECOM.handler, partial(writeback.converge, WECOM))

leads.wire_channel_codes(channels.lead_code_provider, channels.lead_code_by_id)

# Erasure on request (PIPL): every domain holding a person's text or platform ids forgets them in the
# erasure's transaction; the analytics projection is refreshed after it commits.
register_erase_hook("lead_comments", leads.forget_person)
register_erase_hook("group_members", groups.forget_person)
register_erase_hook("wecom_mass_sends", campaigns.forget_person)
register_erase_hook("wecom_customer_transfers", accounts.forget_person)
register_erase_hook("wecom_inbox", wecom_erasure.forget_person)
subscribe(analytics_erasure.HANDLER, {EventType.customer_erased}, outbox=True)
register_handler(analytics_erasure.HANDLER, analytics_erasure.forget_customer)
