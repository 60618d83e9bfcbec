"""API shapes of the WeCom settings: secrets go in, never come out."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class CredentialsIn(BaseModel):
    """Credentials to store; leave a secret out (or empty) on update to keep the stored one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    corp_id: str = Field(min_length=1, max_length=64, description="CorpID (My Company > Company Info).")
    secret: str | None = Field(default=None, max_length=128, description="Customer-contact or app secret.")
    token: str | None = Field(default=None, max_length=64, description="Callback Token.")
    encoding_aes_key: str | None = Field(
        default=None, max_length=43, description="Callback EncodingAESKey (43 chars)."
    )
    base_url: HttpUrl | None = Field(
        default=None, description="API base URL; default https://qyapi.weixin.qq.com."
    )
    welcome_text: str | None = Field(
        default=None, max_length=4000, description="Welcome message for new customers."
    )
    agent_id: str | None = Field(
        default=None,
        max_length=20,
        pattern=r"^[0-9]*$",
        description="AgentId of the self-built app that shows the chat sidebar (digits).",
    )

    def model_post_init(self, _context: object) -> None:
        """Normalise empty strings to "not given" and the URL to a plain string."""
        for name in ("secret", "token", "encoding_aes_key"):
            if getattr(self, name) == "":
                setattr(self, name, None)


class CredentialsOut(BaseModel):
    """What the API shows of stored credentials: whether each secret is set, never its value."""

    model_config = ConfigDict(from_attributes=True)

    corp_id: str
    base_url: str
    welcome_text: str
    agent_id: str
    has_secret: bool
    has_token: bool
    has_encoding_aes_key: bool
    callback_path: str
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_message: str
    updated_at: datetime


class ConnectionTest(BaseModel):
    """Outcome of calling gettoken with the stored credentials, explained in words."""

    ok: bool
    errcode: int | None
    message: str
