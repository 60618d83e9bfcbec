"""The WeCom fake-server fixtures of tests/wecom, shared: group callbacks come from the fake WeCom server."""

from tests.wecom.conftest import (  # noqa: F401  (fixtures and the own_members marker, re-exported)
    fake,
    plain_fake,
    pytest_configure,
    wecom,
    wecom_server,
    wired,
)
