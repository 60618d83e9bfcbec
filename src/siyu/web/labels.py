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
    # The sandbox's and the importers' vocabulary.
    "added_contact": N_("Added as contact"),
    "deleted_contact": N_("Contact deleted"),
    "comment": N_("Commented"),
    "viewed_live": N_("Watched live"),
    "clicked_link": N_("Clicked link"),
    "joined_group": N_("Joined group"),
    "submitted_survey": N_("Answered survey"),
    "placed_order": N_("Placed order"),
    "refund": N_("Refund"),
    "friend_added": N_("Added as friend"),
    "friend_deleted": N_("Friend deleted"),
    "contact_added": N_("Added as contact"),
    "contact_deleted": N_("Contact deleted"),
    "message_sent": N_("Message sent"),
    "message_received": N_("Message received"),
    "order_paid": N_("Order paid"),
    "order_refunded": N_("Order refunded"),
    "tag_added": N_("Tag added"),
    "tag_removed": N_("Tag removed"),
    "note_added": N_("Note added"),
    "stage_changed": N_("Stage changed"),
    "group_joined": N_("Joined group"),
    "group_left": N_("Left group"),
    "content_viewed": N_("Viewed content"),
    "link_clicked": N_("Clicked link"),
    "live_viewed": N_("Watched live"),
    "coupon_claimed": N_("Claimed coupon"),
    "survey_answered": N_("Answered survey"),
    "merged": N_("Profiles merged"),
    # What the lead path writes (siyu.events.vocabulary).
    "lead_commented": N_("Commented"),
    "lead_replied": N_("Comment replied"),
    "lead_converted": N_("Lead converted"),
    "code_scanned": N_("Scanned channel code"),
}

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
