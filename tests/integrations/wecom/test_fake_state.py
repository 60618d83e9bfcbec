"""The fake's generator and control API: deterministic, large enough, and strict about bad input."""

from __future__ import annotations

import httpx
import pytest

from siyu.integrations.wecom.fake_api import ROUTES
from siyu.integrations.wecom.fake_state import FakeWeComState

from .conftest import Control


def _snapshot(state: FakeWeComState) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(eid, c.name, tuple(state.follows[eid])) for eid, c in state.contacts.items()]


def test_generator_is_deterministic_per_seed() -> None:
    a, b, c = FakeWeComState(), FakeWeComState(), FakeWeComState()
    a.generate(members=5, contacts=2000, seed=7, groups=3)
    b.generate(members=5, contacts=2000, seed=7, groups=3)
    c.generate(members=5, contacts=2000, seed=8)
    assert _snapshot(a) == _snapshot(b)
    assert _snapshot(a) != _snapshot(c)

    # Times are drawn relative to the fake's clock (the last year before "now"), so two generations a
    # second apart differ in them and only in them: compare the groups without join_time.
    def timeless(state: FakeWeComState) -> list[list[dict[str, object]]]:
        return [
            [{k: v for k, v in m.items() if k != "join_time"} for m in g.members]
            for g in state.groups.values()
        ]

    assert timeless(a) == timeless(b)


@pytest.mark.slow
def test_generator_holds_100000_contacts_and_pages_them() -> None:
    state = FakeWeComState()
    stats = state.generate(members=20, contacts=100_000, seed=1, max_followers=3)
    assert stats["contacts"] == len(state.contacts) == 100_000
    assert stats["follows"] == sum(len(f) for f in state.follows.values()) >= 100_000
    batch = ROUTES[("POST", "externalcontact/batch/get_by_user")]
    userid = next(iter(state.members))
    page = batch(state, {}, {"userid_list": [userid], "limit": 100})
    assert len(page["external_contact_list"]) == 100 and page["next_cursor"]
    nxt = batch(state, {}, {"userid_list": [userid], "limit": 100, "cursor": page["next_cursor"]})
    first_ids = {e["external_contact"]["external_userid"] for e in page["external_contact_list"]}
    assert first_ids.isdisjoint(
        e["external_contact"]["external_userid"] for e in nxt["external_contact_list"]
    )


def test_control_api_rejects_bad_requests_with_a_reason(fake: Control) -> None:
    res = fake.http.post("/_control/contacts", json={"contacts": [{"follow": []}]})
    assert res.status_code == 400 and "name" in res.json()["error"]
    res = fake.http.post(
        "/_control/config",
        json={"callback": {"url": "http://127.0.0.1:1/x", "token": "t", "encoding_aes_key": "short"}},
    )
    assert res.status_code == 400 and "encoding_aes_key" in res.json()["error"]
    res = fake.http.post("/_control/scan", json={"state": "no-such-code"})
    assert res.status_code == 400
    assert fake.get("stats")["contacts"] == 0  # nothing half-written


def test_api_answers_wecom_error_shapes(fake: Control) -> None:
    with httpx.Client(base_url=fake.base_url) as http:
        missing = http.get("/cgi-bin/externalcontact/get_follow_user_list").json()
        assert missing["errcode"] == 41001
        assert "more info at https://open.work.weixin.qq.com/devtool/query?e=41001" in missing["errmsg"]
        assert (
            http.get("/cgi-bin/externalcontact/get_follow_user_list", params={"access_token": "nope"}).json()[
                "errcode"
            ]
            == 40014
        )
        token = http.get(
            "/cgi-bin/gettoken", params={"corpid": fake.corp_id, "corpsecret": "fake-customer-contact-secret"}
        ).json()
        assert token["errcode"] == 0 and token["expires_in"] == 7200
        bad = http.post(
            "/cgi-bin/externalcontact/mark_tag",
            params={"access_token": token["access_token"]},
            content=b"{not json",
        )
        assert bad.json()["errcode"] == 47001
        assert (
            http.get("/cgi-bin/no/such/api", params={"access_token": token["access_token"]}).status_code
            == 404
        )
