"""WeCom (Enterprise WeChat / 企业微信) customer-contact adapter, callback crypto and fake server.

`WeComClient` implements the carrier Protocols of `siyu.integrations.channel`;
`CallbackCrypto` verifies and decrypts callbacks; `fake_server.FakeWeComServer` (or
`python -m siyu.integrations.wecom.fake_server`) is a WeCom stand-in over real HTTP.
"""

from siyu.integrations.wecom.client import DEFAULT_BASE_URL, WeComClient
from siyu.integrations.wecom.crypto import (
    CallbackCrypto,
    CallbackDecryptError,
    CallbackError,
    CallbackEvent,
    CallbackSignatureError,
)
from siyu.integrations.wecom.errors import (
    WeComAuthError,
    WeComError,
    WeComInputError,
    WeComPermissionError,
    WeComRateLimited,
    WeComTransportError,
    explain,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "CallbackCrypto",
    "CallbackDecryptError",
    "CallbackError",
    "CallbackEvent",
    "CallbackSignatureError",
    "WeComAuthError",
    "WeComClient",
    "WeComError",
    "WeComInputError",
    "WeComPermissionError",
    "WeComRateLimited",
    "WeComTransportError",
    "explain",
]
