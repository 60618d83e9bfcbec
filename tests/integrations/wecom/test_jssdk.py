"""OAuth2 and the JS-SDK's agentConfig: the adapter's calls and signature, and the fake's part in them."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from wechatpy.session.memorystorage import MemoryStorage

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.errors import WeComError
from siyu.integrations.wecom.fake_server import FakeWeComServer
from siyu.integrations.wecom.fake_state import Contact
from siyu.integrations.wecom.jssdk import (
    SDK_SCRIPTS,
    agent_config_signature,
    authorize_url,
    sdk_scripts,
)


def test_signature_matches_the_documented_example() -> None:
    # The worked example of the JS-SDK signature (附录1-JS-SDK使面签名算法): same ticket, nonce, time and URL.
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    url = "http://mp.weixin.qq.com?params=value"
    assert agent_config_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, url) == (
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )
    assert agent_config_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, url + "#frag") == (
        "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )


def test_real_wecom_gets_tencent_s_pages_and_a_fake_its_own() -> None:
    real = authorize_url(
        "https://qyapi.weixin.qq.com", "ww1", "https://siyu.example/sidebar/a/oauth", "s1", "1000002"
    )
    assert real.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww1&")
    assert real.endswith("&agentid=1000002#wechat_redirect") and "scope=snsapi_base" in real
    assert sdk_scripts("https://qyapi.weixin.qq.com/") == SDK_SCRIPTS
    assert sdk_scripts("http://127.0.0.1:8970") == ("http://127.0.0.1:8970/wwopen/js/jwxwork-1.0.0.js",)


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with FakeWeComServer() as running:
        running.state.add_member("zhangsan", "张三")
        yield running


def _client(server: FakeWeComServer) -> WeComClient:
    return WeComClient(
        server.state.corp_id, server.state.secret, base_url=server.base_url, session=MemoryStorage()
    )


def test_a_code_from_the_authorize_stand_in_names_the_signed_in_member_once(server: FakeWeComServer) -> None:
    back = "http://siyu.test/sidebar/brand/oauth"
    no_one = httpx.get(authorize_url(server.base_url, server.state.corp_id, back, "st").split("#")[0])
    assert no_one.status_code == 400  # nobody signed in to the fake WeCom client yet
    httpx.post(f"{server.base_url}/_control/client", json={"userid": "zhangsan"})
    wrong_corp = httpx.get(authorize_url(server.base_url, "wwother", back, "st").split("#")[0])
    assert wrong_corp.status_code == 400
    res = httpx.get(authorize_url(server.base_url, server.state.corp_id, back, "st").split("#")[0])
    assert res.status_code == 302
    target = urlsplit(res.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == back
    query = parse_qs(target.query)
    assert query["state"] == ["st"]
    client = _client(server)
    assert client.user_of_code(query["code"][0]) == "zhangsan"
    with pytest.raises(WeComError) as used:
        client.user_of_code(query["code"][0])
    assert used.value.errcode == 40029
    with pytest.raises(WeComError) as missing:
        client.user_of_code("")
    assert missing.value.errcode == 41008


def test_the_stand_in_accepts_only_a_signature_made_with_the_issued_ticket(server: FakeWeComServer) -> None:
    ticket = _client(server).agent_ticket()
    page = "http://siyu.test/sidebar/brand/"
    body = {"corpid": server.state.corp_id, "timestamp": 1700000000, "nonceStr": "n1", "url": page}
    good = agent_config_signature(ticket, "n1", 1700000000, page)
    ok = httpx.post(f"{server.base_url}/_jssdk/agent_config", content=_json({**body, "signature": good}))
    assert ok.json() == {"errMsg": "agentConfig:ok"}
    assert ok.headers["access-control-allow-origin"] == "*"
    forged = agent_config_signature("another-ticket", "n1", 1700000000, page)
    bad = httpx.post(f"{server.base_url}/_jssdk/agent_config", content=_json({**body, "signature": forged}))
    assert bad.json()["errMsg"] == "agentConfig:fail invalid signature"
    other_page = httpx.post(
        f"{server.base_url}/_jssdk/agent_config",
        content=_json({**body, "url": page + "?x=1", "signature": good}),
    )
    assert other_page.json()["errMsg"] == "agentConfig:fail invalid signature"
    wrong_type = httpx.get(
        f"{server.base_url}/cgi-bin/ticket/get",
        params={"type": "jsapi", "access_token": _client(server).api.access_token},
    )
    assert wrong_type.json()["errcode"] == 40058


def test_the_open_chat_and_what_was_put_into_it(server: FakeWeComServer) -> None:
    server.state.add_contact(Contact("wm1", "客户"))
    assert httpx.post(f"{server.base_url}/_control/client", json={"userid": "nobody"}).status_code == 400
    assert (
        httpx.post(
            f"{server.base_url}/_control/client", json={"userid": "zhangsan", "external_userid": "wmX"}
        ).status_code
        == 400
    )
    httpx.post(f"{server.base_url}/_control/client", json={"userid": "zhangsan", "external_userid": "wm1"})
    listed = httpx.get(f"{server.base_url}/_control/client").json()
    assert listed["open"] == {"userid": "zhangsan", "external_userid": "wm1"}
    assert set(listed["members"]) == {"zhangsan"}
    ctx = httpx.get(f"{server.base_url}/_jssdk/context").json()
    assert ctx == {"userid": "zhangsan", "external_userid": "wm1", "entry": "single_chat_tools"}
    sent = httpx.post(
        f"{server.base_url}/_jssdk/send", content=_json({"msgtype": "text", "text": {"content": "你好"}})
    )
    assert sent.json() == {"err_msg": "sendChatMessage:ok"}
    messages = httpx.get(f"{server.base_url}/_control/chat_messages").json()["messages"]
    assert messages == [
        {"userid": "zhangsan", "external_userid": "wm1", "msgtype": "text", "text": {"content": "你好"}}
    ]


def _json(body: dict[str, object]) -> str:
    return json.dumps(body)
