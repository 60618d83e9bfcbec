"""Which carrier adapter issues a channel code: the app's sandbox, or the organization's WeCom client.
Shared by the API and the console, so both issue codes the same way and refuse the same way."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from siyu.channels.models import CodeCarrier
from siyu.integrations.channel import ChannelCodeCreator
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.kit.errors import Invalid, NotFound


def code_creator(request: Request, db: Session, org_id: int, carrier: CodeCarrier) -> ChannelCodeCreator:
    """The carrier adapter that issues codes: the app's sandbox, or the organization's WeCom client."""
    if carrier is CodeCarrier.sandbox:
        sandbox = getattr(request.app.state, "channel_sandbox", None)
        if sandbox is None:
            sandbox = request.app.state.channel_sandbox = SandboxChannelCodes()
        return sandbox
    from siyu.wecom import credentials  # the WeCom domain is optional for sandbox-only deployments

    secret = request.app.state.settings.resolved_secret_key()
    try:
        creds = credentials.load_plain(db, org_id, secret)
    except NotFound as exc:  # a code cannot be issued on a carrier that is not connected
        raise Invalid(
            "WeCom is not configured for this organization; use carrier=sandbox or connect WeCom",
            field="carrier",
        ) from exc
    return credentials.client_for(creds)
