"""What a newcomer meets first: `siyu wecom fake-server` prints what to enter and serves a small company."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from siyu.cli import app
from siyu.integrations.wecom.fake_server import FakeWeComServer, connection_values
from siyu.integrations.wecom.fake_state import DEFAULT_CALLBACK_AES_KEY, DEFAULT_CALLBACK_TOKEN


def test_help_lists_the_population_options() -> None:
    result = CliRunner().invoke(app, ["wecom", "fake-server", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--contacts", "--members", "--groups", "--callback-url", "--port"):
        assert option in result.output
    assert "siyu wecom fake-server" in result.output


def test_connect_answers_what_the_admin_console_shows_and_a_bare_url_uses_it() -> None:
    with FakeWeComServer() as server:
        values = connection_values(server.base_url)
        assert values == {
            "corp_id": server.state.corp_id,
            "secret": server.state.secret,
            "token": DEFAULT_CALLBACK_TOKEN,
            "encoding_aes_key": DEFAULT_CALLBACK_AES_KEY,
            "base_url": server.base_url,
        }
        set_url = httpx.post(
            f"{server.base_url}/_control/config", json={"callback": {"url": "http://127.0.0.1:9/hooks"}}
        )
        assert set_url.status_code == 200, set_url.text
        assert server.state.callback["token"] == DEFAULT_CALLBACK_TOKEN
        assert server.state.callback["encoding_aes_key"] == DEFAULT_CALLBACK_AES_KEY
    assert connection_values(server.base_url) is None  # stopped: nothing answers


@pytest.mark.slow
def test_the_command_prints_the_values_and_serves_the_company_asked_for() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "siyu", "wecom", "fake-server", "--port", str(port), "--contacts", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(8)]
        printed = "".join(lines)
        assert f"EncodingAESKey   {DEFAULT_CALLBACK_AES_KEY}" in printed
        assert f"Callback token   {DEFAULT_CALLBACK_TOKEN}" in printed
        assert "Corp ID          wwfake0000000001" in printed
        deadline = time.monotonic() + 30
        while True:
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/_control/stats").json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the fake never answered"
                time.sleep(0.2)
        assert stats["contacts"] == 30 and stats["members"] == 5 and stats["groups"] == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)
