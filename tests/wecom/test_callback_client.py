"""The worker reuses one WeCom client per stored credentials, and sees every change to them at once."""

from __future__ import annotations

from sqlalchemy.orm import Session

from siyu.wecom.credentials import callback_client, save_credentials
from siyu.wecom.schemas import CredentialsIn

KEY = "test-process-secret"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def _save(db: Session, org_id: int, **changes: str) -> None:
    # Secrets left out keep their stored ciphertexts (save_credentials re-encrypts only what is given).
    data = {"corp_id": "wwcache0001", "base_url": "http://127.0.0.1:9", **changes}
    save_credentials(db, org_id, CredentialsIn(**data), KEY)  # type: ignore[arg-type]


def test_no_credentials_no_client(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    asked: list[bool] = []
    assert callback_client(db, tenant.org_id, lambda: asked.append(True) or KEY) == (None, "")
    assert not asked  # the process secret is only needed to decrypt stored credentials


def test_the_client_is_reused_until_the_credentials_change(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    _save(db, org, secret="s1", token="t1", encoding_aes_key=AES_KEY, welcome_text="你好")
    first, welcome = callback_client(db, org, lambda: KEY)
    assert first is not None and welcome == "你好"
    assert callback_client(db, org, lambda: KEY)[0] is first
    # A new welcome text applies to the next event; the client (same secret and address) stays.
    _save(db, org, welcome_text="欢迎")
    client, welcome = callback_client(db, org, lambda: KEY)
    assert client is first and welcome == "欢迎"
    # A new secret or address gives a new client built from the new values.
    _save(db, org, secret="s2")
    second, _ = callback_client(db, org, lambda: KEY)
    assert second is not None and second is not first and second.api.secret == "s2"
    _save(db, org, base_url="http://127.0.0.1:10")
    third, _ = callback_client(db, org, lambda: KEY)
    assert third is not None and third is not second and "127.0.0.1:10" in third.api.API_BASE_URL
