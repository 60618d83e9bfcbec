"""Callback crypto: Tencent's official sample vectors, wechatpy round trips, bad signatures."""

from __future__ import annotations

import pytest
from wechatpy.work.crypto import WeChatCrypto

from siyu.integrations.wecom.crypto import (
    CallbackCrypto,
    CallbackDecryptError,
    CallbackError,
    CallbackSignatureError,
    build_event_xml,
    parse_event_xml,
)

# From Tencent's WXBizMsgCrypt Python sample for WeCom (callback/python/Sample.py, jonyqin, 2014):
# the parameters a company set in the WeCom admin console and two captured requests.
SAMPLE_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
SAMPLE_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
SAMPLE_CORP_ID = "ww1436e0e65a779aee"
SAMPLE_VERIFY = {
    "msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
    "timestamp": "1476416373",
    "nonce": "47744683",
    "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
}
SAMPLE_POST = {
    "msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
    "timestamp": "1476422779",
    "nonce": "1597212914",
}
SAMPLE_BODY = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n<Encrypt><![CDATA["
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew"
    "+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24Yhm"
    "ZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwo"
    "cugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+]]></Encrypt>\n"
    "<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
)

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
def sample() -> CallbackCrypto:
    return CallbackCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


def test_official_sample_url_verification(sample: CallbackCrypto) -> None:
    assert sample.verify_url(**SAMPLE_VERIFY) == "1288432023552776189"


def test_official_sample_message_decrypts_and_parses(sample: CallbackCrypto) -> None:
    event = sample.decrypt_event(SAMPLE_BODY, **SAMPLE_POST)
    assert event["to_user_name"] == SAMPLE_CORP_ID
    assert event["from_user_name"] == "ChenJiaShun"
    assert event["msg_type"] == "text"
    assert event["create_time"] == 1476422779
    assert event["raw"]["Content"] == "你好"


def test_bad_signatures_raise(sample: CallbackCrypto) -> None:
    with pytest.raises(CallbackSignatureError):
        sample.verify_url(**{**SAMPLE_VERIFY, "msg_signature": "0" * 40})
    with pytest.raises(CallbackSignatureError):
        sample.decrypt_event(SAMPLE_BODY, **{**SAMPLE_POST, "nonce": "1597212915"})
    with pytest.raises(CallbackSignatureError):
        CallbackCrypto("another-token", SAMPLE_AES_KEY, SAMPLE_CORP_ID).decrypt(SAMPLE_BODY, **SAMPLE_POST)


def test_wrong_receiver_or_key_is_a_decrypt_error(sample: CallbackCrypto) -> None:
    with pytest.raises(CallbackDecryptError):
        CallbackCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, "wwsomeoneelse").decrypt(SAMPLE_BODY, **SAMPLE_POST)
    with pytest.raises(CallbackDecryptError):
        CallbackCrypto(SAMPLE_TOKEN, KEY, SAMPLE_CORP_ID).decrypt(SAMPLE_BODY, **SAMPLE_POST)
    with pytest.raises(CallbackError):
        sample.decrypt("<xml><ToUserName>x</ToUserName></xml>", **SAMPLE_POST)
    with pytest.raises(CallbackError):
        sample.decrypt("not xml", **SAMPLE_POST)
    with pytest.raises(CallbackError):
        CallbackCrypto(SAMPLE_TOKEN, "short", SAMPLE_CORP_ID)


def test_messages_encrypted_by_wechatpy_decrypt() -> None:
    plain = build_event_xml(
        {
            "ToUserName": "wwcorp",
            "FromUserName": "sys",
            "CreateTime": 1700000000,
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": "add_external_contact",
            "UserID": "zhangsan",
            "ExternalUserID": "woAJ2GCAAAXtWyujaWJHDDGi0mACH71w",
            "State": "taobao_card",
            "WelcomeCode": "WELCOMECODE",
        }
    )
    # wechatpy's own encryption (its passive-reply envelope carries the same <Encrypt> element).
    envelope = WeChatCrypto("tok", KEY, "wwcorp").encrypt_message(
        plain, nonce="12345", timestamp="1700000000"
    )
    signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    event = CallbackCrypto("tok", KEY, "wwcorp").decrypt_event(envelope, signature, "1700000000", "12345")
    assert (event["event"], event["change_type"], event["user_id"]) == (
        "change_external_contact",
        "add_external_contact",
        "zhangsan",
    )
    assert (event["external_user_id"], event["state"], event["welcome_code"]) == (
        "woAJ2GCAAAXtWyujaWJHDDGi0mACH71w",
        "taobao_card",
        "WELCOMECODE",
    )


def test_request_format_we_build_is_accepted_by_wechatpy() -> None:
    ours = CallbackCrypto("tok", KEY, "wwcorp")
    body, params = ours.encrypt_request("<xml><MsgType>event</MsgType></xml>", agent_id="1000002")
    assert "<AgentID><![CDATA[1000002]]></AgentID>" in body
    plain = WeChatCrypto("tok", KEY, "wwcorp").decrypt_message(
        body, params["msg_signature"], params["timestamp"], params["nonce"]
    )
    assert plain == "<xml><MsgType>event</MsgType></xml>"
    check = ours.verification_request("4242")
    assert ours.verify_url(**check) == "4242"


def test_parse_group_tag_and_suite_events() -> None:
    chat = parse_event_xml(
        build_event_xml(
            {
                "Event": "change_external_chat",
                "ChatId": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA",
                "ChangeType": "update",
                "UpdateDetail": "add_member",
                "JoinScene": 3,
                "MemChangeCnt": 2,
                "MemChangeList": ["wmA", "wmB"],
                "LastMemVer": "9c3f97c2ada667dfb5f6d03308d963e1",
                "CurMemVer": "71217227bbd112ecfe3a49c482195cb4",
            }
        )
    )
    assert (chat["chat_id"], chat["update_detail"], chat["join_scene"], chat["quit_scene"]) == (
        "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA",
        "add_member",
        3,
        None,
    )
    assert chat["mem_change_cnt"] == 2 and chat["mem_change_list"] == ["wmA", "wmB"]
    single = parse_event_xml(build_event_xml({"Event": "change_external_chat", "MemChangeList": ["wmOnly"]}))
    assert single["mem_change_list"] == ["wmOnly"]

    tag = parse_event_xml(
        build_event_xml(
            {
                "Event": "change_external_tag",
                "Id": "etAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
                "TagType": "tag_group",
                "ChangeType": "delete",
                "StrategyId": "1",
            }
        )
    )
    assert (tag["tag_id"], tag["tag_type"], tag["change_type"], tag["strategy_id"]) == (
        "etAJ2GCAAAXtWyujaWJHDDGi0mACHAAA",
        "tag_group",
        "delete",
        "1",
    )

    # The third-party suite form, from WeCom's event-format page.
    suite = parse_event_xml(
        "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId>"
        "<InfoType><![CDATA[change_external_contact]]></InfoType><TimeStamp>1403610513</TimeStamp>"
        "<ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID>"
        "<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID>"
        "<State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>"
    )
    assert (suite["event"], suite["info_type"], suite["suite_id"], suite["auth_corp_id"]) == (
        "change_external_contact",
        "change_external_contact",
        "ww4asffe99e54c0f4c",
        "wxf8b4f85f3a794e77",
    )
    assert suite["create_time"] == 1403610513 and suite["state"] == "teststate"


def test_cdata_terminator_in_values_survives() -> None:
    event = parse_event_xml(build_event_xml({"State": "a]]>b", "UserID": "<u&>"}))
    assert (event["state"], event["user_id"]) == ("a]]>b", "<u&>")
