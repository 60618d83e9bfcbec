"""Errors in the reader's language: a WeCom errcode or a domain error becomes a sentence of the catalog.

Services raise English messages meant for API clients; the console shows the translation of the message
when the catalog has it, else a sentence chosen by the error's field, so no English reaches a Chinese page.
"""

from __future__ import annotations

from siyu.integrations.wecom.errors import WeComError, WeComInputError
from siyu.kit.errors import DomainError
from siyu.web.i18n import N_
from siyu.web.templating import PageContext

# What a WeCom errcode means for an operator, and what to do (siyu.integrations.wecom.errors.EXPLANATIONS).
WECOM_ERRORS = {
    -1: N_("WeCom is busy. Try again in a minute."),
    40001: N_("The WeCom secret is wrong or was reset: enter it again in the WeCom settings."),
    40003: N_("The member is not (or no longer) in this WeCom company."),
    40013: N_("The corp ID is wrong: copy it from My Company > Company Info in the WeCom admin console."),
    40014: N_("WeCom refused the access token; try again."),
    40050: N_("The customer group does not exist in WeCom or the app may not see it."),
    40058: N_("WeCom refused a value (wrong, missing or too long)."),
    40068: N_("The tag no longer exists in WeCom's tag library: sync now to refresh the tags."),
    40071: N_("A tag of that name already exists in the WeCom tag group."),
    40096: N_("The customer is not a contact of this WeCom company."),
    42001: N_("The WeCom access token expired; try again."),
    45009: N_("WeCom's rate limit was reached; try again in a minute."),
    45033: N_("Too many calls to WeCom at once; try again in a few seconds."),
    48002: N_(
        "The WeCom app may not use the customer-contact API: add it to the apps allowed to call it, "
        "or use the customer-contact secret."
    ),
    60011: N_("The WeCom app may not see this member: widen the app's visible range."),
    60020: N_("WeCom refuses calls from this server's IP address: add it to the app's trusted IPs."),
    60111: N_("The member was not found in WeCom."),
    84061: N_("The customer and the member are no longer contacts of each other in WeCom."),
    84074: N_("The member has no customer-contact permission in WeCom."),
}

# A field's own sentence, for domain errors whose English message the catalog does not hold.
FIELD_ERRORS = {
    "customer_ids": N_("Check the customers: enter customer ids, separated by commas or spaces."),
    "group_ids": N_("Check the customer groups chosen."),
    "owner_account_id": N_("Check the group owner chosen."),
    "text": N_("Check the message text."),
    "message": N_("Check the message to customers."),
    "to_account_id": N_("Choose another receiving member."),
    "from_account_id": N_("Check the leaving member."),
    "lead_id": N_("This lead was already answered or dismissed."),
    "code_url": N_("There is no channel code to send: choose a code or enter its link."),
    "code_id": N_("There is no channel code to send: choose a code or enter its link."),
    "replier": N_("The Douyin account is not connected yet."),
    "intent": N_("Choose an intent from the list."),
    "message_id": N_("This mass message was already sent."),
}


def wecom_error_text(ctx: PageContext, exc: WeComError | WeComInputError) -> str:
    """What went wrong with WeCom, in the reader's words."""
    if isinstance(exc, WeComInputError):
        return ctx.gettext(FIELD_ERRORS.get(exc.field, N_("WeCom would refuse this request.")))
    if exc.errcode in WECOM_ERRORS:
        return ctx.gettext(WECOM_ERRORS[exc.errcode])
    if exc.errcode is None:
        return ctx.gettext("WeCom could not be reached. Try again later.")
    return ctx.gettext("WeCom refused the request (error %(code)s).") % {"code": exc.errcode}


def error_text(ctx: PageContext, exc: DomainError) -> str:
    """A domain error in the reader's words: its message's translation, else its field's sentence."""
    translated = ctx.gettext(exc.message)
    if translated != exc.message or ctx.locale == "en":
        return translated
    if exc.field in FIELD_ERRORS:
        return ctx.gettext(FIELD_ERRORS[exc.field])
    return ctx.gettext("The change was not made: check the form.")
