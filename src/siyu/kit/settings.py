"""Process-wide settings, read from the environment (prefix ``SIYU_``) and an optional ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        default=10, description="Failed logins per email or address before a pause."
    )
    login_window_seconds: int = 15 * 60
    lead_reply_seconds: int = Field(default=300, ge=1, description="Reply deadline of a new comment lead.")
    wecom_fake_url: str = Field(
        default="",
        description="Demo and development only: the address of a fake WeCom server; the WeCom settings "
        "page then tells what to enter to connect to it.",
    )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/siyu.db``."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'siyu.db').resolve()}"

    def resolved_secret_key(self) -> str:
        """The signing key; a random one is created once per data_dir so restarts keep sessions."""
        if self.secret_key:
            return self.secret_key
        import secrets

        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    """The cached settings of this process."""
    return Settings()
