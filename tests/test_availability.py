"""Availability: blocking work stays off the event loop, and request bodies are capped while they stream
in (a chunked upload without Content-Length is refused long before it is read whole)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from siyu.app import BODY_LIMITS, DEFAULT_BODY_LIMIT

CHUNK = 64 * 1024


def _paths(slug: str) -> list[str]:
    signed = "?msg_signature=x&timestamp=1&nonce=n"
    return [
        f"/hooks/wecom/{slug}{signed}",
        f"/hooks/douyin/{slug}",
        "/api/v1/events",
        "/api/v1/events/batch",
        "/api/v1/comments/import?platform=xiaohongshu",
    ]


def _limit(path: str) -> int:
    return next((limit for prefix, limit in BODY_LIMITS if path.startswith(prefix)), DEFAULT_BODY_LIMIT)


def test_every_capped_path_has_a_cap_well_below_the_default(tenant) -> None:  # type: ignore[no-untyped-def]
    for path in _paths(tenant.slug):
        assert _limit(path) <= 20 * 1024 * 1024, path


def test_chunked_oversize_bodies_get_413_without_being_read_whole(app: FastAPI, tenant) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://siyu.test") as client:
            for path in _paths(tenant.slug):
                limit = _limit(path)
                total = limit * 10 // CHUNK + 1  # ten times the cap, never announced
                sent = 0

                async def body(chunks: int) -> AsyncIterator[bytes]:
                    nonlocal sent
                    for _ in range(chunks):
                        sent += 1
                        yield b"x" * CHUNK

                # The webhooks and the event API get no credentials: the cap comes before any signature or
                # token check. The comment import reads its body itself, after authenticating the caller.
                headers = tenant.auth() if "import" in path else {}
                response = await client.post(path, content=body(total), headers=headers)
                assert response.status_code == 413, (path, response.status_code, response.text[:200])
                assert response.json()["field"] == "body"
                assert sent * CHUNK <= limit + 2 * CHUNK, (path, sent, total)

                declared = await client.post(
                    path, content=b"x" * 10, headers={**headers, "Content-Length": str(limit + 1)}
                )
                assert declared.status_code == 413, path

    asyncio.run(run())


@pytest.mark.slow
def test_a_big_comment_import_leaves_the_event_loop_free(app: FastAPI, tenant) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(
        f"c{i},这个多少钱 想了解一下 {i},2026-11-23 12:00:00,n{i % 50},用户{i}\n" for i in range(300)
    )
    csv = ("comment_id,content,commented_at,video_id,nickname\n" + rows).encode()
    finished: list[str] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://siyu.test", timeout=300) as client:

            async def upload() -> None:
                response = await client.post(
                    "/api/v1/comments/import?platform=xiaohongshu",
                    content=csv,
                    headers={**tenant.auth(), "Content-Type": "text/csv"},
                )
                assert response.status_code == 200, response.text
                assert response.json()["created"] == 300
                finished.append("import")

            async def health() -> None:
                await asyncio.sleep(0.2)  # the import is parsing by now
                assert (await client.get("/healthz")).status_code == 200
                finished.append("healthz")

            await asyncio.gather(upload(), health())

    asyncio.run(run())
    # On the loop, the parse held /healthz until the import was done; off it, health answers at once.
    assert finished == ["healthz", "import"]
