"""Every module that declares background tasks: importing this module registers them all with the queue.

Kept apart from ``worker.queue`` (which the task modules import for ``huey``), so the queue never imports
the domains that import it.
"""

from __future__ import annotations

from types import ModuleType

from siyu.analytics import tasks as analytics_tasks
from siyu.audit import tasks as audit_tasks
from siyu.campaigns import tasks as campaign_tasks
from siyu.channels import tasks as channel_tasks
from siyu.events import bus
from siyu.events import tasks as event_tasks
from siyu.leads import tasks as lead_tasks
from siyu.wecom import tasks as wecom_tasks
from siyu.wecom import tasks_sync as wecom_sync_tasks

TASK_MODULES: tuple[ModuleType, ...] = (
    analytics_tasks,
    audit_tasks,
    campaign_tasks,
    channel_tasks,
    event_tasks,
    lead_tasks,
    wecom_tasks,
    wecom_sync_tasks,
)


def load_tasks() -> int:
    """Make sure every task module is registered (importing this module did it) and the event subscribers
    are loaded; returns how many task modules there are."""
    # Loading the subscribers imports most domains (seconds): at start-up, not inside the first job.
    bus.subscriptions()
    return len(TASK_MODULES)
