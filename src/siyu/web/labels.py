"""Display labels for stored codes (stages, kinds, statuses, sources), marked for translation.

Stored values stay English codes; the console shows ``_(label(...))`` so each language gets its own word.
Unknown codes (a new source, an event type added later) are shown as they are.
"""

from __future__ import annotations

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
}


def shown_properties(properties: dict[str, object]) -> list[tuple[str, object]]:
    """The properties of an event a timeline shows (those with a label and a value), in the table's order."""
    return [(key, properties[key]) for key in EVENT_PROPERTIES if properties.get(key) not in (None, "")]


# Who ended a follow (follow_ended.by).
ENDED_BY = {"customer": N_("the customer"), "staff": N_("the member"), "transfer": N_("a hand-over")}

_TABLES = {
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
    "event_property": EVENT_PROPERTIES,
    "ended_by": ENDED_BY,
}


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
