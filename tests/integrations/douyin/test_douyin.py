"""Douyin webhook signature/payload parsing and the reply client against the fake open platform."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from siyu.integrations.channel import CommentReplier
from siyu.integrations.douyin import webhook as dy
from siyu.integrations.douyin.client import DouyinApiError, DouyinClient
from siyu.integrations.douyin.fake_server import FakeDouyinServer


def test_signature_is_sha1_of_secret_then_body() -> None:
    body = b'{"event":"verify_webhook"}'
    # sha1("s3cret" + body), computed independently of sign().
    import hashlib

    expected = hashlib.sha1(b"s3cret" + body).hexdigest()
    assert dy.sign("s3cret", body) == expected
    assert dy.signature_ok("s3cret", body, expected)
    assert dy.signature_ok("s3cret", body, expected.upper())
    assert not dy.signature_ok("s3cret", body + b" ", expected)
    assert not dy.signature_ok("other", body, expected)
    assert not dy.signature_ok("s3cret", body, None)
    assert not dy.signature_ok("s3cret", body, "")


def test_parse_comment_event_with_string_content() -> None:
    content = {
        "comment_id": "@c1",
        "comment_user_id": "_000u1",
        "content": "求资料",
        "create_time": 1700000000,
        "reply_to_item_id": "@v1",
    }
    body = json.dumps(
        {
            "event": "item_comment_reply",
            "client_key": "ck",
            "from_user_id": "_000u1",
            "to_user_id": "_000acct",
            "content": json.dumps(content),
        }
    ).encode()
    comment = dy.parse_comment(dy.parse_event(body))
    assert (
        comment.comment_id,
        comment.comment_user_id,
        comment.content,
        comment.item_id,
    ) == ("@c1", "_000u1", "求资料", "@v1")
    assert comment.created_at == datetime.fromtimestamp(1700000000, UTC)


def test_round_trip_through_the_serialiser() -> None:
    original = dy.DouyinComment(
        "@c2", "_000u2", "多少钱", "@v2", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "@c1"
    )
    parsed = dy.parse_comment(dy.parse_event(dy.comment_event_body("ck", "_000acct", original)))
    assert parsed == original


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1,2]", "body"),
        (b'{"client_key":"ck"}', "event"),
        (b'{"event":"item_comment_reply"}', "client_key"),
        (b'{"event":"item_comment_reply","client_key":"ck","content":"{oops"}', "content"),
        (b'{"event":"item_comment_reply","client_key":"ck","content":"[1]"}', "content"),
    ],
)
def test_malformed_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(dy.WebhookError) as info:
        dy.parse_event(body)
    assert info.value.field == field


def test_comment_without_id_or_video_is_refused() -> None:
    event = dy.parse_event(
        b'{"event":"item_comment_reply","client_key":"ck","content":"{\\"content\\":\\"hi\\"}"}'
    )
    with pytest.raises(dy.WebhookError) as info:
        dy.parse_comment(event)
    assert info.value.field == "content.comment_id"


def test_challenge() -> None:
    event = dy.parse_event(b'{"event":"verify_webhook","client_key":"ck","content":{"challenge":12345}}')
    assert dy.challenge_of(event) == 12345
    with pytest.raises(dy.WebhookError):
        dy.challenge_of(dy.parse_event(b'{"event":"verify_webhook","client_key":"ck","content":{}}'))


@pytest.fixture
def fake() -> Iterator[FakeDouyinServer]:
    with FakeDouyinServer() as server:
        yield server


def test_client_replies_through_the_fake(fake: FakeDouyinServer) -> None:
    state = fake.state
    with DouyinClient(state.access_token, state.account_open_id, base_url=fake.base_url) as client:
        assert isinstance(client, CommentReplier)
        reply_id = client.reply_to_comment("@v1", "@c1", "资料在这里 https://x.test/c/1")
        assert not hasattr(client, "send_direct_message")
    assert reply_id.startswith("@")
    assert state.replies == [
        {
            "item_id": "@v1",
            "comment_id": "@c1",
            "content": "资料在这里 https://x.test/c/1",
            "reply_id": reply_id,
            "at": state.replies[0]["at"],
        }
    ]
    # The enterprise private-message API went offline on 2023-05-31: the fake no longer serves it either.
    gone = httpx.post(
        f"{fake.base_url}/enterprise/im/message/send/",
        params={"open_id": state.account_open_id},
        headers={"access-token": state.access_token},
        json={"to_user_id": "_000u1", "message_type": "text", "content": {"text": "你好"}},
    )
    assert gone.status_code == 404


def test_client_raises_douyin_error_codes(fake: FakeDouyinServer) -> None:
    state = fake.state
    with (
        DouyinClient("act.wrong", state.account_open_id, base_url=fake.base_url) as client,
        pytest.raises(DouyinApiError) as info,
    ):
        client.reply_to_comment("@v1", "@c1", "hi")
    assert info.value.code == 2190008
    state.fail_code, state.fail_times = 2190004, 1
    with DouyinClient(state.access_token, state.account_open_id, base_url=fake.base_url) as client:
        with pytest.raises(DouyinApiError) as info:
            client.reply_to_comment("@v1", "@c1", "hi")
        assert info.value.code == 2190004
        assert client.reply_to_comment("@v1", "@c1", "hi")  # the fault was used up
    assert len(state.replies) == 1


def test_client_reports_an_unreachable_platform() -> None:
    with (
        DouyinClient("t", "o", base_url="http://127.0.0.1:9") as client,
        pytest.raises(DouyinApiError) as info,
    ):
        client.reply_to_comment("@v1", "@c1", "hi")
    assert info.value.code == -1
