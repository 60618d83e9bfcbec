"""Console pages (Jinja2 + HTMX)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
