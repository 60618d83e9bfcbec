"""Process-wide settings, read from the environment (prefix ``SIYU_``) and an optional ``.env``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

WECOM_API_HOST = "qyapi.weixin.qq.com"


class Settings(BaseSettings):
    """Everything the process can be configured with; defaults run the embedded demo."""

    model_config = SettingsConfigDict(env_prefix="SIYU_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Where the embedded databases live.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in data_dir.")
    secret_key: str = Field(
        default="", description="Signs sessions and encrypts credentials; generated per data_dir if empty."
    )
    timezone: str = "Asia/Shanghai"
    session_ttl_hours: int = 24 * 7
    secure_cookies: bool = False
    redis_url: str = Field(
        default="", description="Redis for shared counters and the task queue; empty: in-process."
    )
    login_max_failures: int = Field(
        default=10, description="Failed logins per email from one address within the window before a pause."
    )
    login_max_failures_per_address: int = Field(
        default=30,
        description="Failed logins from one address (over all emails) within the window before a pause.",
    )
    login_window_seconds: int = 15 * 60
    mobile_lookups_per_hour: int = Field(
        default=30, ge=1, description="Full-number customer searches per operator per hour (masked roles)."
    )
    webhook_retention_days: int = Field(
        default=30, ge=1, le=365, description="Raw webhook payloads are kept this long (per-org override)."
    )
    audit_retention_days: int = Field(
        default=3 * 365,
        ge=180,
        le=3650,
        description="Audit log entries are kept this long (per-org override).",
    )
    lead_reply_seconds: int = Field(default=300, ge=1, description="Reply deadline of a new comment lead.")
    wecom_api_hosts: str = Field(
        default=WECOM_API_HOST,
        description="Hosts a WeCom API base URL may name, comma-separated. Only WeCom's own by default: "
        "the server calls that URL, so any other host is a request forgery. Add 127.0.0.1 for the fake.",
    )
    wecom_fake_url: str = Field(
        default="",
        description="Demo and development only: the address of a fake WeCom server; the WeCom settings "
        "page then tells what to enter to connect to it.",
    )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/siyu.db``."""
        if self.database_url:
            return self.database_url
        path = self.ensure_data_dir() / "siyu.db"
        # Created here, owner-only, before SQLite makes it with the umask's 0644; SQLite gives its -wal and
        # -shm files the database file's mode.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        return f"sqlite:///{path.resolve()}"

    def ensure_data_dir(self) -> Path:
        """The data directory, created owner-only (0700): it holds customer data and the secret key."""
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)  # mkdir's mode passes through the umask
        return self.data_dir

    def allowed_wecom_hosts(self) -> frozenset[str]:
        """The hosts ``wecom_api_hosts`` names, lower-case, and the demo's fake server's (``wecom_fake_url``)."""
        hosts = {h.strip().lower() for h in self.wecom_api_hosts.split(",") if h.strip()}
        if self.wecom_fake_url:
            hosts.add((urlsplit(self.wecom_fake_url).hostname or "").lower())
        return frozenset(hosts - {""})

    def resolved_secret_key(self) -> str:
        """The signing key; a random one is created once per data_dir so restarts keep sessions."""
        if self.secret_key:
            return self.secret_key
        import secrets

        key_file = self.ensure_data_dir() / "secret.key"
        if not key_file.exists():
            # Owner-only from the start, not chmod-ed after a moment of being readable.
            with os.fdopen(os.open(key_file, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600), "w") as out:
                out.write(secrets.token_urlsafe(48))
        return key_file.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    """The cached settings of this process."""
    return Settings()
