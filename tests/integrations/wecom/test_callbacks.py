"""Callbacks emitted by the fake server reach a real HTTP receiver and decrypt with the helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.crypto import CallbackCrypto, CallbackError, CallbackEvent
from siyu.kit.loopback import LoopbackServer

from .conftest import Control

TOKEN = "siyu-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


class Receiver:
    """What siyu's webhook does, minimally: verify, decrypt, remember, answer fast."""

    def __init__(self, corp_id: str, token: str = TOKEN) -> None:
        self.crypto = CallbackCrypto(token, AES_KEY, corp_id)
        self.events: list[CallbackEvent] = []
        self.rejected = 0
        self.app = Starlette(routes=[Route("/wecom/callback", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> PlainTextResponse:
        q = request.query_params
        try:
            if request.method == "GET":
                return PlainTextResponse(
                    self.crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
                )
            self.events.append(
                self.crypto.decrypt_event(
                    await request.body(), q["msg_signature"], q["timestamp"], q["nonce"]
                )
            )
        except CallbackError:
            self.rejected += 1
            return PlainTextResponse("bad signature", status_code=403)
        return PlainTextResponse("success")


@pytest.fixture
def receiver(fake: Control) -> Iterator[Receiver]:
    rx = Receiver(fake.corp_id)
    with LoopbackServer(rx.app) as receiver:
        url = receiver.base_url
        fake.post(
            "config",
            {
                "callback": {
                    "url": f"{url}/wecom/callback",
                    "token": TOKEN,
                    "encoding_aes_key": AES_KEY,
                    "agent_id": "1000002",
                }
            },
        )
        yield rx


def test_url_verification_round_trip(fake: Control, receiver: Receiver) -> None:
    assert fake.post("callback/verify") == {"ok": True, "status": 200}


def test_contact_lifecycle_events_decrypt(fake: Control, receiver: Receiver, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    code = wecom.create_channel_code(["alice"], state="taobao_card_618")
    scanned = fake.post("scan", {"config_id": code.config_id, "name": "小红"})
    assert scanned["delivery"]["delivered"] is True
    eid = scanned["external_userid"]
    fake.post(f"contacts/{eid}/edit", {"userid": "alice", "remark": "小红淘宝高意向"})
    fake.post(f"contacts/{eid}/delete", {"userid": "alice", "by": "customer"})

    added, edited, deleted = receiver.events
    assert (added["event"], added["change_type"], added["msg_type"]) == (
        "change_external_contact",
        "add_external_contact",
        "event",
    )
    assert (added["user_id"], added["external_user_id"], added["state"]) == ("alice", eid, "taobao_card_618")
    assert added["welcome_code"] and added["to_user_name"] == fake.corp_id and added["create_time"] > 0
    assert (edited["change_type"], edited["external_user_id"]) == ("edit_external_contact", eid)
    assert (deleted["change_type"], deleted["user_id"]) == ("del_follow_user", "alice")
    assert receiver.rejected == 0


def test_group_and_tag_events_decrypt(fake: Control, receiver: Receiver) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post(
        "contacts",
        {"contacts": [{"external_userid": "wmA", "name": "A"}, {"external_userid": "wmB", "name": "B"}]},
    )
    (chat_id,) = fake.post("groups", {"groups": [{"owner": "alice", "name": "训练营"}], "emit": True})[
        "chat_ids"
    ]
    fake.post(f"groups/{chat_id}/join", {"userids": ["wmA", "wmB"], "join_scene": 3})
    fake.post(f"groups/{chat_id}/quit", {"userids": ["wmB"], "quit_scene": 1})
    fake.post(
        "callback/emit",
        {
            "fields": {
                "Event": "change_external_tag",
                "Id": "etX",
                "TagType": "tag",
                "ChangeType": "create",
                "StrategyId": "7",
            }
        },
    )

    created, joined, quit_, tag = receiver.events
    assert (created["event"], created["change_type"], created["chat_id"]) == (
        "change_external_chat",
        "create",
        chat_id,
    )
    assert (joined["update_detail"], joined["join_scene"], joined["mem_change_cnt"]) == ("add_member", 3, 2)
    assert joined["mem_change_list"] == ["wmA", "wmB"]
    assert joined["cur_mem_ver"] != joined["last_mem_ver"]
    assert (quit_["update_detail"], quit_["quit_scene"], quit_["mem_change_list"]) == (
        "del_member",
        1,
        ["wmB"],
    )
    assert (tag["event"], tag["tag_id"], tag["tag_type"], tag["strategy_id"]) == (
        "change_external_tag",
        "etX",
        "tag",
        "7",
    )


def test_receiver_with_the_wrong_token_rejects_and_the_fake_records_it(fake: Control) -> None:
    rx = Receiver(fake.corp_id, token="not-the-configured-token")
    with LoopbackServer(rx.app) as receiver:
        url = receiver.base_url
        fake.post(
            "config",
            {
                "callback": {
                    "url": f"{url}/wecom/callback",
                    "token": TOKEN,
                    "encoding_aes_key": AES_KEY,
                    "retries": 2,
                }
            },
        )
        record: dict[str, Any] = fake.post("callback/emit", {"fields": {"Event": "change_external_contact"}})
        assert fake.post("callback/verify")["ok"] is False
    assert (record["delivered"], record["status"], record["attempts"]) == (False, 403, 3)
    assert rx.events == [] and rx.rejected == 4
    assert fake.get("events")["events"][-1]["delivered"] is False
