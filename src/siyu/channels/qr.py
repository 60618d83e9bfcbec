"""QR images of channel codes for print: PNG and SVG, via segno."""

from __future__ import annotations

import io

import segno

from siyu.kit.errors import Invalid

MAX_SCALE = 40


def qr_image(content: str, fmt: str, *, scale: int = 10, border: int = 4) -> tuple[bytes, str]:
    """Encode `content` as a QR image in `fmt` ("png" or "svg"); returns the bytes and the media type."""
    if not content:
        raise Invalid("the code has no URL to encode", field="qr_url")
    if not 1 <= scale <= MAX_SCALE:
        raise Invalid(f"scale must be 1-{MAX_SCALE}, got {scale}", field="scale")
    # Error correction "M" survives a crumpled parcel card; segno picks the smallest version.
    qr = segno.make(content, error="m", micro=False)
    out = io.BytesIO()
    if fmt == "png":
        qr.save(out, kind="png", scale=scale, border=border)
        return out.getvalue(), "image/png"
    if fmt == "svg":
        qr.save(out, kind="svg", scale=scale, border=border, xmldecl=True)
        return out.getvalue(), "image/svg+xml"
    raise Invalid(f"format must be png or svg, got {fmt!r}", field="format")
