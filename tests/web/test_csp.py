"""The Content-Security-Policy: on every console response, and satisfiable by every template (no inline
script, no on* handler attributes, no htmx eval)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from siyu.web.security import CONTENT_SECURITY_POLICY

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "siyu" / "web" / "templates"
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
HANDLER_ATTR = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
# htmx evaluates these as JavaScript, which the policy forbids.
HTMX_EVAL = re.compile(
    r"hx-trigger=\"[^\"]*\[|\shx-on[:=-]|\shx-vars=|\s(hx-vals|hx-headers)=['\"]\s*js:", re.IGNORECASE
)


def test_console_and_api_answers_carry_the_policy(client: TestClient) -> None:
    for path in ("/login", "/healthz", "/static/console.js", "/api/v1/events"):
        response = client.get(path)
        policy = response.headers.get("content-security-policy", "")
        assert policy == CONTENT_SECURITY_POLICY, path
        assert (
            "script-src 'self'" in policy
            and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        )
        assert response.headers["x-content-type-options"] == "nosniff"


def test_templates_hold_no_inline_script() -> None:
    offenders: list[str] = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        for match in SCRIPT_TAG.finditer(text):
            attrs = match.group(1)
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                offenders.append(f"{template.name}: inline <script{attrs}>")
        offenders += [f"{template.name}: {m.group(0)}" for m in HANDLER_ATTR.finditer(text)]
        offenders += [f"{template.name}: {m.group(0)}" for m in HTMX_EVAL.finditer(text)]
    assert offenders == []
