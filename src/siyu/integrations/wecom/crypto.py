"""WeCom callback crypto: URL verification and event decryption, on `wechatpy.work.crypto`.

How WeCom calls a callback URL (回调配置, developer.work.weixin.qq.com/document/path/90930):
  * URL check: `GET url?msg_signature=S&timestamp=T&nonce=N&echostr=E`. E is encrypted; the
    receiver checks S = sha1(sort(token, T, N, E)), decrypts E and answers the plaintext as
    the response body within 1 s.
  * Events: `POST url?msg_signature=S&timestamp=T&nonce=N` with body
    `<xml><ToUserName>corpid</ToUserName><AgentID>id</AgentID><Encrypt>E</Encrypt></xml>`.
    S = sha1(sort(token, T, N, E)). E = base64(AES-256-CBC(key, iv=key[:16],
    PKCS#7(random16 + len32be(msg) + msg + receive_id))) with key = b64decode(EncodingAESKey+"=").
    receive_id is the CorpID for a company's own app (the SuiteID for third-party suites).
    The receiver must answer 200 within 5 s, or WeCom retries (3 times); duplicates happen.

Signature checks, AES and padding are wechatpy's (`WeChatCrypto`, `PrpCrypto`,
`WeChatSigner`); this module adds the request-format encryption the fake server needs (wechatpy
only builds the passive-reply format) and normalises the decrypted XML.

Customer-contact events (事件格式, document/path/92130) carry, besides ToUserName, FromUserName,
CreateTime, MsgType=event:
  Event=change_external_contact, ChangeType in add_external_contact, edit_external_contact,
    add_half_external_contact, del_external_contact, del_follow_user, transfer_fail; with UserID,
    ExternalUserID, State, WelcomeCode, Source (del_external_contact: DELETE_BY_TRANSFER),
    FailReason (transfer_fail: customer_refused / customer_limit_exceed);
  Event=change_external_chat, ChangeType in create, update, dismiss; with ChatId, UpdateDetail
    (add_member, del_member, change_owner, change_name, change_notice), JoinScene (0 invited by a
    member, 3 scanned a QR code), QuitScene (0 left, 1 removed), MemChangeCnt, MemChangeList
    (<Item>userid</Item>...), LastMemVer, CurMemVer;
  Event=change_external_tag, ChangeType in create, update, delete, shuffle; with Id, TagType
    (tag / tag_group), StrategyId.
Third-party suites get the same with InfoType instead of Event, plus SuiteId and AuthCorpId.
"""

from __future__ import annotations

import secrets as _secrets
import time
from typing import Any, TypedDict

import xmltodict
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import WeChatSigner, to_text
from wechatpy.work.crypto import PrpCrypto, WeChatCrypto
from wechatpy.work.exceptions import InvalidCorpIdException


class CallbackError(ValueError):
    """A callback could not be trusted or read."""


class CallbackSignatureError(CallbackError):
    """msg_signature does not match token, timestamp, nonce and the ciphertext."""


class CallbackDecryptError(CallbackError):
    """The ciphertext does not decrypt with this key, or was meant for another receiver."""


class CallbackEvent(TypedDict):
    """A decrypted callback, with WeCom's field names turned to snake_case."""

    to_user_name: str
    from_user_name: str
    create_time: int
    msg_type: str
    event: str  # Event, or InfoType for third-party suites
    info_type: str
    change_type: str
    suite_id: str
    auth_corp_id: str
    user_id: str
    external_user_id: str
    state: str
    welcome_code: str
    source: str
    fail_reason: str
    chat_id: str
    update_detail: str
    join_scene: int | None
    quit_scene: int | None
    mem_change_cnt: int | None
    mem_change_list: list[str]
    last_mem_ver: str
    cur_mem_ver: str
    tag_id: str
    tag_type: str
    strategy_id: str
    raw: dict[str, Any]


_STR_FIELDS = {
    "to_user_name": "ToUserName",
    "from_user_name": "FromUserName",
    "msg_type": "MsgType",
    "info_type": "InfoType",
    "change_type": "ChangeType",
    "suite_id": "SuiteId",
    "auth_corp_id": "AuthCorpId",
    "user_id": "UserID",
    "external_user_id": "ExternalUserID",
    "state": "State",
    "welcome_code": "WelcomeCode",
    "source": "Source",
    "fail_reason": "FailReason",
    "chat_id": "ChatId",
    "update_detail": "UpdateDetail",
    "last_mem_ver": "LastMemVer",
    "cur_mem_ver": "CurMemVer",
    "tag_id": "Id",
    "tag_type": "TagType",
    "strategy_id": "StrategyId",
}
_INT_FIELDS = {"join_scene": "JoinScene", "quit_scene": "QuitScene", "mem_change_cnt": "MemChangeCnt"}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_event_xml(xml: str) -> CallbackEvent:
    """Parse a decrypted callback XML into a `CallbackEvent` dict."""
    try:
        root = xmltodict.parse(xml, disable_entities=True)
    except Exception as exc:  # expat raises several types; all mean "not XML"
        raise CallbackError(f"callback body is not XML: {exc}") from exc
    raw = root.get("xml") if isinstance(root, dict) else None
    if not isinstance(raw, dict):
        raise CallbackError("callback XML has no <xml> root")
    event: dict[str, Any] = {key: str(raw.get(tag) or "") for key, tag in _STR_FIELDS.items()}
    event.update({key: _int_or_none(raw.get(tag)) for key, tag in _INT_FIELDS.items()})
    event["create_time"] = _int_or_none(raw.get("CreateTime") or raw.get("TimeStamp")) or 0
    event["event"] = str(raw.get("Event") or raw.get("InfoType") or "")
    items = (
        (raw.get("MemChangeList") or {}).get("Item") if isinstance(raw.get("MemChangeList"), dict) else None
    )
    if items is None:
        event["mem_change_list"] = []
    else:
        event["mem_change_list"] = [str(i) for i in (items if isinstance(items, list) else [items])]
    event["raw"] = dict(raw)
    return CallbackEvent(**event)  # type: ignore[typeddict-item]


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_event_xml(fields: dict[str, Any]) -> str:
    """Render a flat dict as WeCom callback XML (strings as CDATA, ints bare, lists as <Item>)."""
    parts = ["<xml>"]
    for tag, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"<{tag}>{int(value)}</{tag}>")
        elif isinstance(value, int):
            parts.append(f"<{tag}>{value}</{tag}>")
        elif isinstance(value, (list, tuple)):
            parts.append(f"<{tag}>" + "".join(f"<Item>{_cdata(str(v))}</Item>" for v in value) + f"</{tag}>")
        else:
            parts.append(f"<{tag}>{_cdata(str(value))}</{tag}>")
    parts.append("</xml>")
    return "".join(parts)


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """Compute WeCom's msg_signature (sha1 of the four values sorted)."""
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypt)
    return str(signer.signature)


class CallbackCrypto:
    """Verify and decrypt WeCom callbacks for one (token, EncodingAESKey, receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if not token:
            raise CallbackError("token is required")
        if len(encoding_aes_key) != 43:
            raise CallbackError("encoding_aes_key must be the 43-character EncodingAESKey from WeCom")
        if not receive_id:
            raise CallbackError("receive_id (the CorpID, or the SuiteID for suites) is required")
        try:
            self._crypto = WeChatCrypto(token, encoding_aes_key, receive_id)
        except (ValueError, AssertionError) as exc:
            raise CallbackError("encoding_aes_key is not valid base64 of a 32-byte key") from exc
        self.token = token
        self.receive_id = receive_id

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Check a URL-verification GET and return the plaintext to answer with."""
        try:
            return str(self._crypto.check_signature(msg_signature, timestamp, nonce, echostr))
        except InvalidSignatureException as exc:
            raise CallbackSignatureError("msg_signature does not match") from exc
        except InvalidCorpIdException as exc:
            raise CallbackDecryptError("echostr was encrypted for another receive id") from exc
        except Exception as exc:  # bad base64, bad padding, bad UTF-8: all mean "not ours"
            raise CallbackDecryptError(f"echostr does not decrypt: {type(exc).__name__}") from exc

    def decrypt(self, body: str | bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Check the signature of a POSTed callback and return its decrypted XML."""
        try:
            envelope = xmltodict.parse(to_text(body), disable_entities=True)["xml"]
            if not isinstance(envelope, dict) or not envelope.get("Encrypt"):
                raise CallbackError("callback body has no <Encrypt> element")
        except CallbackError:
            raise
        except Exception as exc:
            raise CallbackError(f"callback body is not WeCom XML: {exc}") from exc
        try:
            return str(self._crypto.decrypt_message(envelope, msg_signature, timestamp, nonce))
        except InvalidSignatureException as exc:
            raise CallbackSignatureError("msg_signature does not match") from exc
        except InvalidCorpIdException as exc:
            raise CallbackDecryptError("message was encrypted for another receive id") from exc
        except Exception as exc:
            raise CallbackDecryptError(f"message does not decrypt: {type(exc).__name__}") from exc

    def decrypt_event(
        self, body: str | bytes, msg_signature: str, timestamp: str, nonce: str
    ) -> CallbackEvent:
        """Check, decrypt and parse a POSTed callback into a `CallbackEvent`."""
        return parse_event_xml(self.decrypt(body, msg_signature, timestamp, nonce))

    def encrypt(self, plaintext: str) -> str:
        """Encrypt plaintext as WeCom does (base64 ciphertext), for echostr or <Encrypt>."""
        return to_text(PrpCrypto(self._crypto.key).encrypt(plaintext, self.receive_id))

    def encrypt_request(
        self, event_xml: str, *, agent_id: str = "", timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """Build a callback as WeCom POSTs it: (XML body, query params with msg_signature)."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(_secrets.randbelow(10**10))
        encrypt = self.encrypt(event_xml)
        fields: dict[str, Any] = {"ToUserName": self.receive_id}
        if agent_id:
            fields["AgentID"] = agent_id
        fields["Encrypt"] = encrypt
        params = {
            "msg_signature": signature(self.token, timestamp, nonce, encrypt),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        return build_event_xml(fields), params

    def verification_request(
        self, plaintext: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """Build the query params WeCom sends to verify a callback URL."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(_secrets.randbelow(10**10))
        echostr = self.encrypt(plaintext)
        return {
            "msg_signature": signature(self.token, timestamp, nonce, echostr),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
