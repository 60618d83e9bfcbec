"""The adapter's HTTP step: transport errors and answer decoding."""

from __future__ import annotations

import socket

import pytest
from wechatpy.session.memorystorage import MemoryStorage

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComTransportError
from siyu.integrations.wecom.tokens import decode_json


def test_http_error_status_is_a_transport_error_naming_the_status(wecom: WeComClient) -> None:
    with pytest.raises(WeComTransportError, match="HTTP 404"):
        wecom.get("externalcontact/no_such_api")


def test_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        client = WeComClient(
            "wwclosed", "secret", base_url=f"http://127.0.0.1:{port}", session=MemoryStorage(), timeout=2.0
        )
        with pytest.raises(WeComTransportError):
            client.list_follow_users()


def test_decode_json_falls_back_for_control_characters_and_bad_utf8() -> None:
    assert decode_json('{"errcode": 0, "name": "客户"}'.encode()) == {"errcode": 0, "name": "客户"}
    assert decode_json(b'{"name": "a\tb"}') == {"name": "a\tb"}  # a raw tab: orjson refuses, WeCom sends
    assert decode_json(b'{"name": "a\xffb"}') == {"name": "ab"}  # invalid UTF-8 dropped, as wechatpy does
    with pytest.raises(ValueError):
        decode_json(b"<html>busy</html>")
