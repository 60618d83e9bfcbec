"""What modules being changed elsewhere still import from here (``wecom.contact_events`` and
``wecom.tag_events`` from the split of wecom/processing.py, and ``groups.service``): the customer hub's use
cases live in their own modules, ``profiles``, ``identities``, ``follows``, ``customer_tagging``, ``notes``,
``listing``, ``timelines``, ``consent`` and ``access``. New code imports from those; once those callers do
too, this module goes."""

from __future__ import annotations

from siyu.customers.customer_tagging import change_tags
from siyu.customers.follows import end_follow, follow, follow_relation, relation_of
from siyu.customers.merge import register_merge_hook
from siyu.customers.profiles import find_or_create_by_identities, find_or_create_by_identity

__all__ = [
    "change_tags",
    "end_follow",
    "find_or_create_by_identities",
    "find_or_create_by_identity",
    "follow",
    "follow_relation",
    "register_merge_hook",
    "relation_of",
]
