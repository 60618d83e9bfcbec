"""Display labels for stored codes (stages, kinds, statuses, sources), marked for translation.

Stored values stay English codes; the console shows ``_(label(...))`` so each language gets its own word.
Unknown codes (a new source, an event type added later) are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from siyu.web.i18n import N_

STAGES = {
    "new": N_("New"),
    "contacted": N_("Contacted"),
    "retained": N_("Retained"),
    "engaged": N_("Engaged"),
    "converted": N_("Converted"),
    "repeat": N_("Repeat buyer"),
    "lost": N_("Lost"),
}

GENDERS = {"unknown": N_("Unknown"), "male": N_("Male"), "female": N_("Female")}

IDENTITY_KINDS = {
    "mobile": N_("Mobile"),
    "wecom_external_userid": N_("WeCom external user ID"),
    "unionid": N_("WeChat UnionID"),
    "openid": N_("WeChat OpenID"),
    "douyin_open_id": N_("Douyin open ID"),
    "taobao_buyer_nick": N_("Taobao buyer nick"),
}

ACCOUNT_KINDS = {
    "wecom_member": N_("WeCom member"),
    "personal_wechat": N_("Personal WeChat"),
    "official_account": N_("Official account"),
}

ACCOUNT_STATUSES = {
    "active": N_("Active"),
    "paused": N_("Paused"),
    "resigned": N_("Resigned"),
    "blocked": N_("Blocked"),
}

FOLLOW_STATUSES = {
    "active": N_("Following"),
    "deleted_by_customer": N_("Deleted by customer"),
    "deleted_by_staff": N_("Deleted by staff"),
}

ROLES = {"owner": N_("Owner"), "admin": N_("Admin"), "operator": N_("Operator")}

# Acquisition sources named in DOMAIN.md; anything else is shown verbatim.
SOURCES = {
    "douyin": N_("Douyin"),
    "douyin_comment": N_("Douyin comment"),
    "douyin_live": N_("Douyin live"),
    "taobao": N_("Taobao"),
    "taobao_order": N_("Taobao order"),
    "taobao_parcel_card": N_("Taobao parcel card"),
    "jd_order": N_("JD order"),
    "official_account": N_("Official account"),
    "jd": N_("JD"),
    "kuaishou": N_("Kuaishou"),
    "xiaohongshu": N_("Xiaohongshu"),
    "live": N_("Live room"),
    "live_room": N_("Live room"),
    "parcel_card": N_("Parcel card"),
    "offline": N_("Offline"),
    "flyer": N_("Flyer"),
    "offline_flyer": N_("Offline flyer"),
    "referral": N_("Referral"),
    "fission": N_("Fission"),
    "wecom": N_("WeCom"),
    "channel_code": N_("Channel code"),
    "outbound_call": N_("Outbound call"),
    "zhihu": N_("Zhihu"),
    "comment": N_("Comment"),
    "manual": N_("Manual entry"),
    "import": N_("Import"),
    "sandbox": N_("Sandbox"),
    "": N_("Unknown"),
}

PLATFORMS = {
    "taobao": N_("Taobao"),
    "tmall": N_("Tmall"),
    "jd": N_("JD"),
    "douyin": N_("Douyin"),
    "kuaishou": N_("Kuaishou"),
    "youzan": N_("Youzan"),
    "wechat": N_("WeChat"),
    "mini_program": N_("Mini program"),
    "wechat_mini_program": N_("WeChat mini program"),
    "sandbox": N_("Sandbox"),
}

EVENT_TYPES = {
    # The product's vocabulary (siyu.events.vocabulary): real activity and the demo brand write these.
    "customer_added": N_("Customer added"),
    "customer_merged": N_("Profiles merged"),
    "profile_changed": N_("Profile changed"),
    "follow_started": N_("Added as contact"),
    "follow_ended": N_("Contact deleted"),
    "tag_added": N_("Tag added"),
    "tag_removed": N_("Tag removed"),
    "remark_changed": N_("Remark changed"),
    "stage_changed": N_("Stage changed"),
    "note_added": N_("Note added"),
    "lead_commented": N_("Commented"),
    "lead_replied": N_("Comment replied"),
    "lead_converted": N_("Lead converted"),
    "code_scanned": N_("Code scanned"),
    "welcome_sent": N_("Welcome sent"),
    "message_sent": N_("Message sent"),
    "message_failed": N_("Message failed"),
    "message_received": N_("Message received"),
    "link_clicked": N_("Clicked link"),
    "live_viewed": N_("Watched live"),
    "survey_answered": N_("Answered survey"),
    "group_joined": N_("Joined group"),
    "group_left": N_("Left group"),
    "order_paid": N_("Order paid"),
    "order_refunded": N_("Order refunded"),
    "transfer_requested": N_("Hand-over requested"),
    "transfer_succeeded": N_("Hand-over completed"),
    "transfer_refused": N_("Hand-over refused"),
    "transfer_expired": N_("Hand-over outcome unknown"),
    "consent_recorded": N_("Consent recorded"),
    "customer_erased": N_("Personal data erased"),
    # Types brands post through the event API under other names.
    "friend_added": N_("Added as friend"),
    "friend_deleted": N_("Friend deleted"),
    "contact_added": N_("Added as contact"),
    "contact_deleted": N_("Contact deleted"),
    "content_viewed": N_("Viewed content"),
    "coupon_claimed": N_("Claimed coupon"),
    "merged": N_("Profiles merged"),
}

# What a WeCom errcode met while writing tags and remarks back means for the operator, and what to do.
WECOM_WRITEBACK_ERRORS = {
    "-1": N_("WeCom was busy; the change is tried again in a few seconds."),
    "40001": N_("The WeCom secret is wrong or was reset: enter it again above."),
    "40003": N_("The member is not (or no longer) in this WeCom company."),
    "40058": N_("WeCom refused a value, for example a remark longer than 20 characters."),
    "40068": N_("The tag no longer exists in WeCom's tag library: sync now to refresh the tags."),
    "40096": N_("The customer is not a contact of this WeCom company."),
    "45009": N_(
        "WeCom's rate limit was reached; the change is tried again once WeCom lifts its block (after a minute, or after an hour once its hourly limit was reached)."
    ),
    "45033": N_("Too many calls to WeCom at once; the change is tried again in a few seconds."),
    "48002": N_(
        "The WeCom app may not write customer tags or remarks: add it to the apps allowed to call the "
        "customer-contact API, or use the customer-contact secret."
    ),
    "60011": N_("The WeCom app may not see this member: widen the app's visible range."),
    "60020": N_("WeCom refuses calls from this server's IP address: add it to the app's trusted IPs."),
    "84061": N_("The customer and the member are no longer contacts of each other in WeCom."),
    "84074": N_("The member has no customer-contact permission in WeCom."),
}

# What a WeCom errcode met while testing the connection (gettoken) means, and what to do; "" is no answer at all.
WECOM_CONNECTION_ERRORS = {
    "": N_("The WeCom server could not be reached: check the API base URL and this server's network."),
    "-1": N_("WeCom was busy: test again in a minute."),
    "40001": N_("The Secret is wrong or was reset: copy it again from the WeCom admin console."),
    "40013": N_("The CorpID is wrong: copy it from My Company > Company Info in the WeCom admin console."),
    "41002": N_("The CorpID is missing: enter it above."),
    "41004": N_("The Secret is missing: enter it above."),
    "45009": N_("WeCom's rate limit was reached: test again in a minute."),
    "48002": N_(
        "This Secret may not call the customer-contact API: use the customer-contact secret, or add the app "
        "to the apps allowed to call the API."
    ),
    "60020": N_("WeCom refuses calls from this server's IP address: add it to the app's trusted IPs."),
}

# The event properties a timeline shows, in words; the rest (ids, origin) stay out of a person's sight.
EVENT_PROPERTIES = {
    "tag": N_("Tag"),
    "remark": N_("Remark"),
    "reason": N_("Reason"),
    "from": N_("Stage before"),
    "to": N_("Stage after"),
    "by": N_("Ended by"),
    "intent": N_("Intent"),
    "content": N_("Comment"),
    "platform": N_("Platform"),
    "amount_fen": N_("Amount"),
    "refunded_fen": N_("Refunded"),
    "scene": N_("How they joined or left"),
}


def shown_properties(properties: dict[str, object]) -> list[tuple[str, object]]:
    """The properties of an event a timeline shows (those with a label and a value), in the table's order."""
    return [(key, properties[key]) for key in EVENT_PROPERTIES if properties.get(key) not in (None, "")]


# A comment's classified intent (siyu.leads.intent_rules.INTENTS); a customer's typed intent is shown as is.
INTENTS = {
    "material": N_("Material request"),
    "purchase": N_("Purchase intent"),
    "question": N_("Question"),
    "complaint": N_("Complaint"),
    "other": N_("Other"),
}

# How a routing pool picks among its free accounts (siyu.channels.models.RoutingRule).
ROUTING_RULES = {
    "round_robin": N_("Round robin"),
    "least_loaded": N_("Least loaded first"),
    "schedule": N_("Members on duty"),
    "region": N_("By region"),
}

# Why an account needs attention (siyu.channels.models.AlertKind).
ALERT_KINDS = {
    "near_cap": N_("Close to its friend limit"),
    "near_daily_cap": N_("Close to today's add limit"),
    "deletion_spike": N_("Many customers deleted it"),
    "deleted_by_staff": N_("The member deleted a customer"),
    "low_health": N_("Low health score"),
}

# How a customer joined or left a customer group (group_joined / group_left.scene: siyu.groups.service).
GROUP_SCENES = {
    "invited": N_("Invited by a member"),
    "invite_link": N_("Through an invitation link"),
    "qr_code": N_("Scanned the group QR code"),
    "left": N_("Left by themselves"),
    "removed": N_("Removed from the group"),
    "not_in_snapshot": N_("No longer in the group at a sync"),
    "dismissed": N_("The group was dismissed"),
    "unknown": N_("Not known"),
}

# Who ended a follow (follow_ended.by).
ENDED_BY = {"customer": N_("the customer"), "staff": N_("the member"), "transfer": N_("a hand-over")}

CONSENT_SCOPES = {"marketing": N_("Marketing messages"), "analytics": N_("Analytics")}
CONSENT_SOURCES = {
    "form": N_("Form"),
    "chat": N_("Chat"),
    "phone": N_("Phone call"),
    "in_person": N_("In person"),
    "import": N_("Import"),
    "unspecified": N_("Not recorded"),
}
AUDIT_ACTIONS = {
    "customer_exported": N_("Customer data exported"),
    "customer_erased": N_("Customer data erased"),
    "mobile_lookup": N_("Full mobile number searched"),
    "user_created": N_("User created"),
    "user_role_changed": N_("Role changed"),
    "api_token_created": N_("API token created"),
    "api_token_revoked": N_("API token revoked"),
    "wecom_credentials_saved": N_("WeCom credentials saved"),
    "douyin_app_saved": N_("Douyin app saved"),
    "mass_message_submitted": N_("Mass message sent"),
    "retention_changed": N_("Retention changed"),
}

_TABLES = {
    "consent_scope": CONSENT_SCOPES,
    "consent_source": CONSENT_SOURCES,
    "audit_action": AUDIT_ACTIONS,
    "stage": STAGES,
    "gender": GENDERS,
    "identity": IDENTITY_KINDS,
    "account_kind": ACCOUNT_KINDS,
    "account_status": ACCOUNT_STATUSES,
    "follow_status": FOLLOW_STATUSES,
    "role": ROLES,
    "source": SOURCES,
    "platform": PLATFORMS,
    "event": EVENT_TYPES,
    "wecom_writeback_error": WECOM_WRITEBACK_ERRORS,
    "wecom_connection_error": WECOM_CONNECTION_ERRORS,
    "event_property": EVENT_PROPERTIES,
    "ended_by": ENDED_BY,
    "group_scene": GROUP_SCENES,
    "intent": INTENTS,
    "routing_rule": ROUTING_RULES,
    "alert_kind": ALERT_KINDS,
}


# Sentences the code stores in the log (a stage rule's or a merge's reason, a comment's source detail), as
# patterns: each becomes a translated sentence whose %(name)s parts are the matched groups, those of a name
# in WORDED_GROUPS first put through that label table.
STORED_SENTENCES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"rule: (?P<event>\w+)"), N_("rule: %(event)s")),
    (
        re.compile(r"added through the code of lead (?P<lead>\d+)"),
        N_("added through the channel code of lead %(lead)s"),
    ),
    (
        re.compile(r"created with mobile (?P<mobile>\S+) of an existing profile"),
        N_("created with the mobile %(mobile)s of an existing profile"),
    ),
    (
        re.compile(r"mobile (?P<mobile>\S+) set on a profile while another held it"),
        N_("mobile %(mobile)s was set on this profile while another profile held it"),
    ),
    (
        re.compile(r"shared (?P<identity>\w+) (?P<value>.+) \(added by user (?P<user>\d+)\)"),
        N_("same %(identity)s %(value)s (added by user %(user)s)"),
    ),
    (
        re.compile(r"(?P<what>.+) row (?P<row>\d+) linked their identifiers"),
        N_("%(what)s row %(row)s linked their identifiers"),
    ),
    (re.compile(r"(?P<source>\w+) video (?P<title>.+)"), N_("%(source)s video %(title)s")),
    (re.compile(r"WeCom callbacks"), N_("WeCom callbacks")),
    (re.compile(r"WeCom sync"), N_("WeCom sync")),
    (re.compile(r"order API"), N_("order API")),
)
WORDED_GROUPS = {"event": "event", "identity": "identity", "source": "source", "what": "source"}


def stored_sentence(text: str, translate: Callable[[str], str], word: Callable[[str, object], str]) -> str:
    """A sentence siyu stored in English, in the reader's language; anything else (typed by a person) as is."""
    for pattern, message in STORED_SENTENCES:
        match = pattern.fullmatch(text)
        if match:
            parts = {
                k: word(WORDED_GROUPS[k], v) if k in WORDED_GROUPS else v
                for k, v in match.groupdict().items()
            }
            return translate(message) % parts
    return text


def label(table: str, code: object) -> str:
    """The untranslated English label of a code in one of the tables above, or the code itself."""
    if table not in _TABLES:
        raise KeyError(f"unknown label table {table!r}; expected one of {sorted(_TABLES)}")
    key = "" if code is None else str(getattr(code, "value", code))
    return _TABLES[table].get(key, key)


def is_known(table: str, code: object) -> bool:
    """True when the code has a translatable label (so templates translate it rather than show it raw)."""
    key = "" if code is None else str(getattr(code, "value", code))
    return key in _TABLES[table]
