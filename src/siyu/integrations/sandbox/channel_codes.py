"""An in-process sandbox implementation of `ChannelCodeCreator` for the demo and tests.

It behaves like WeCom's add_contact_way as far as siyu relies on it: the same input limits, a
`config_id` per code, a scannable URL carrying the state, and refusal of a repeated state.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

from siyu.integrations.channel import ChannelCode

MAX_STATE_LENGTH = 30
MAX_USERS = 100
SANDBOX_BASE_URL = "https://sandbox.siyu.invalid/add"


class SandboxChannelCodes:
    """Issues sandbox channel codes and remembers which members each one routes to."""

    def __init__(self, base_url: str = SANDBOX_BASE_URL) -> None:
        self.base_url = base_url.rstrip("/")
        self.codes: dict[str, tuple[ChannelCode, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def create_channel_code(
        self, userids: Sequence[str], state: str, *, remark: str = "", skip_verify: bool = True
    ) -> ChannelCode:
        """Create a code shared by `userids`; `state` identifies the source."""
        ids = tuple(dict.fromkeys(u for u in userids if u))
        if not ids:
            raise ValueError("userids: at least one member userid is required")
        if len(ids) > MAX_USERS:
            raise ValueError(f"userids: at most {MAX_USERS} members per code, got {len(ids)}")
        if not state or len(state) > MAX_STATE_LENGTH:
            raise ValueError(f"state: must be 1-{MAX_STATE_LENGTH} characters, got {len(state)}")
        if len(remark) > 30:
            raise ValueError("remark: at most 30 characters")
        config_id = hashlib.sha256(state.encode()).hexdigest()[:32]
        with self._lock:
            if config_id in self.codes:
                raise ValueError(f"state: a code with state {state!r} already exists")
            code = ChannelCode(config_id=config_id, state=state, qr_code=f"{self.base_url}/{config_id}")
            self.codes[config_id] = (code, ids)
        return code

    def members_of(self, config_id: str) -> tuple[str, ...]:
        """The userids a sandbox code routes to."""
        return self.codes[config_id][1]
