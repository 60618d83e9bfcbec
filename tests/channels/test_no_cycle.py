"""channels and leads never import each other: ``siyu/subscriptions.py`` wires them together."""

from __future__ import annotations

import ast
from pathlib import Path

import siyu

SRC = Path(siyu.__file__).parent


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def test_channels_and_leads_do_not_import_each_other() -> None:
    assert not {m for m in _imports("channels") if m.startswith("siyu.leads")}
    assert not {m for m in _imports("leads") if m.startswith("siyu.channels")}
