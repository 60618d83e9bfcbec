"""The WeCom adapter against the fake server over real HTTP: tokens, back-off, paging, limits, errors."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from wechatpy.session.memorystorage import MemoryStorage

from siyu.integrations import channel
from siyu.integrations.channel import ContactSync, CustomerTransferrer, MassMessenger
from siyu.integrations.wecom.client import WeComClient, redis_token_cache
from siyu.integrations.wecom.errors import (
    WeComAuthError,
    WeComError,
    WeComInputError,
    WeComPermissionError,
    WeComRateLimited,
    WeComTransportError,
    explain,
)

from .conftest import SECRET, Control, Sleeps


def _customers(fake: Control, userid: str, count: int, prefix: str = "c") -> list[str]:
    """Seed `count` customers followed by `userid`; returns their external userids in order."""
    contacts = [
        {"external_userid": f"wm{prefix}{i:06d}", "name": f"客户{i}", "follow": [{"userid": userid}]}
        for i in range(count)
    ]
    return fake.post("contacts", {"contacts": contacts})["external_userids"]  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_adapter_implements_every_carrier_protocol(wecom: WeComClient) -> None:
    protocols = [
        channel.ContactSync,
        channel.CorpTagReader,
        channel.TagMarker,
        channel.RemarkSetter,
        channel.ChannelCodeCreator,
        channel.MassMessenger,
        channel.GroupReader,
        channel.MomentPoster,
        channel.CustomerTransferrer,
    ]
    assert [p.__name__ for p in protocols if not isinstance(wecom, p)] == []


# --- tokens ---------------------------------------------------------------------------------


def test_token_is_fetched_once_and_shared_per_corp_and_secret(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    shared = MemoryStorage()
    first, second = make_wecom(session=shared), make_wecom(session=shared)
    assert first.list_follow_users() == ["alice"]
    assert first.list_external_userids("alice") == []
    assert second.list_follow_users() == ["alice"]
    assert len(fake.calls("gettoken")) == 1
    # The cache key never carries the secret itself.
    assert all(SECRET not in key for key in shared._data)

    make_wecom(session=MemoryStorage()).list_follow_users()  # another cache: its own fetch
    assert len(fake.calls("gettoken")) == 2


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on loopback (skipped where Redis is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_token_cache_shared_through_redis(
    fake: Control, make_wecom: Callable[..., WeComClient], redis_url: str
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    # Two workers, each with its own connection: one fetch between them.
    make_wecom(session=redis_token_cache(redis_url)).list_follow_users()
    make_wecom(session=redis_token_cache(redis_url)).list_follow_users()
    assert len(fake.calls("gettoken")) == 1
    # An early invalidation seen by one worker refreshes the token for both.
    fake.post("tokens/expire")
    fake.post("clock", {"advance": 1})
    make_wecom(session=redis_token_cache(redis_url)).list_follow_users()
    make_wecom(session=redis_token_cache(redis_url)).list_follow_users()
    assert len(fake.calls("gettoken")) == 2


def test_token_expiry_in_the_middle_of_paging_refreshes_and_continues(
    fake: Control, wecom: WeComClient
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    expected = _customers(fake, "alice", 250)
    rows = wecom.iter_contacts_by_user(["alice"], limit=100)
    seen = [next(rows).contact.external_userid]  # page 1 fetched with the first token
    fake.post("clock", {"advance": 7201})  # the token dies between pages
    seen += [r.contact.external_userid for r in rows]
    assert seen == expected
    batch = fake.calls("externalcontact/batch/get_by_user")
    assert [c["errcode"] for c in batch] == [0, 42001, 0, 0]
    assert len(fake.calls("gettoken")) == 2


def test_invalid_token_is_refetched_once_but_never_in_a_loop(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("faults", {"api": "externalcontact/get_follow_user_list", "errcodes": [40014]})
    assert wecom.list_follow_users() == ["alice"]

    fake.post("faults", {"api": "externalcontact/get_follow_user_list", "errcodes": [42001, 42001]})
    with pytest.raises(WeComAuthError) as info:
        wecom.list_follow_users()
    assert info.value.errcode == 42001
    assert [c["errcode"] for c in fake.calls("externalcontact/get_follow_user_list")] == [
        40014,
        0,
        42001,
        42001,
    ]


def test_40001_on_a_call_means_a_wrong_secret_and_is_not_retried(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    client = make_wecom()
    client.list_follow_users()
    fake.post("faults", {"api": "externalcontact/get_follow_user_list", "errcodes": [40001]})
    with pytest.raises(WeComAuthError) as info:
        client.list_follow_users()
    # In WeCom 40001 is a wrong secret (a fresh token would not help): said in words, no refresh, no retry.
    assert info.value.errcode == 40001 and "The secret is wrong" in str(info.value)
    assert [c["errcode"] for c in fake.calls("externalcontact/get_follow_user_list")] == [0, 40001]
    assert len(fake.calls("gettoken")) == 1


def test_wrong_credentials_raise_auth_errors_that_say_what_to_fix(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    with pytest.raises(WeComAuthError) as bad_secret:
        make_wecom(secret="not-the-secret").list_follow_users()
    assert bad_secret.value.errcode == 40001
    assert "secret" in str(bad_secret.value) and bad_secret.value.api == "gettoken"

    with pytest.raises(WeComAuthError) as bad_corp:
        make_wecom(corp_id="wwnotmycorp").list_follow_users()
    assert bad_corp.value.errcode == 40013
    assert "CorpID is wrong" in str(bad_corp.value)
    assert "invalid corpid" in bad_corp.value.errmsg  # WeCom's own text is kept


# --- back-off -------------------------------------------------------------------------------


def test_rate_limit_backs_off_then_succeeds(fake: Control, make_wecom: Callable[..., WeComClient]) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("faults", {"api": "externalcontact/get_follow_user_list", "errcodes": [45009, -1]})
    sleeps = Sleeps()
    assert make_wecom(sleep=sleeps).list_follow_users() == ["alice"]
    assert [c["errcode"] for c in fake.calls("externalcontact/get_follow_user_list")] == [45009, -1, 0]
    # 45009: WeCom's minute-long block is waited out; -1: jittered back-off.
    assert len(sleeps) == 2
    assert sleeps[0] == 60.0 and 0.5 <= sleeps[1] <= 1.0


def test_system_busy_gives_up_after_three_retries(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("faults", {"api": "externalcontact/list", "errcodes": [-1] * 5})
    sleeps = Sleeps()
    with pytest.raises(WeComRateLimited) as info:
        make_wecom(sleep=sleeps).list_external_userids("alice")
    assert info.value.errcode == -1
    assert len(fake.calls("externalcontact/list")) == 4  # 1 call + 3 retries
    assert len(sleeps) == 3


def test_backoff_delay_is_jittered_exponential_and_bounded(make_wecom: Callable[..., WeComClient]) -> None:
    client = make_wecom(backoff_base=1.0, backoff_cap=4.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 4.0), (10, 4.0)]:
        delays = [client.backoff_delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter
    with pytest.raises(WeComInputError):
        make_wecom(max_retries=4)


def test_per_minute_quota_answers_45009_until_the_minute_turns(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("config", {"rate_limits": {"externalcontact/list": 2}})
    time_ = FakeTime(fake)
    client = make_wecom(max_retries=0, clock=time_.clock)
    client.list_external_userids("alice")
    client.list_external_userids("alice")
    with pytest.raises(WeComRateLimited) as info:
        client.list_external_userids("alice")
    assert info.value.retry_after == 60.0
    time_.advance(60)
    assert client.list_external_userids("alice") == []


def test_unreachable_server_is_a_transport_error(fake: Control) -> None:
    port = _free_port()
    client = WeComClient(
        fake.corp_id, SECRET, base_url=f"http://127.0.0.1:{port}", session=MemoryStorage(), timeout=2
    )
    with pytest.raises(WeComTransportError):
        client.list_follow_users()


# --- paging ---------------------------------------------------------------------------------


def test_batch_get_by_user_pages_past_its_limit_with_the_cursor(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    ids = _customers(fake, "alice", 230)
    assert isinstance(wecom, ContactSync)
    pages = []
    cursor = ""
    while True:
        page = wecom.list_contacts_by_user(["alice"], cursor=cursor, limit=100)
        pages.append(page)
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert [len(p.items) for p in pages] == [100, 100, 30]
    assert [r.contact.external_userid for p in pages for r in p.items] == ids
    assert all(r.follow.userid == "alice" for p in pages for r in p.items)
    assert set(wecom.list_external_userids("alice")) == set(ids)
    # WeCom clamps a limit above 100 to 100.
    raw = wecom.post("externalcontact/batch/get_by_user", {"userid_list": ["alice"], "limit": 500})
    assert len(raw["external_contact_list"]) == 100


def test_iterating_many_members_splits_them_into_requests_of_100(fake: Control, wecom: WeComClient) -> None:
    members = [{"userid": f"m{i:03d}"} for i in range(150)]
    fake.post("members", {"members": members})
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": f"wmx{i:03d}", "name": "x", "follow": [{"userid": f"m{i:03d}"}]}
                for i in range(150)
            ]
        },
    )
    rows = list(wecom.iter_contacts_by_user([m["userid"] for m in members]))
    assert sorted(r.contact.external_userid for r in rows) == [f"wmx{i:03d}" for i in range(150)]
    sizes = [c["sizes"]["userid_list"] for c in fake.calls("externalcontact/batch/get_by_user")]
    assert max(sizes) == 100 and sum(sizes) >= 150
    with pytest.raises(WeComInputError) as info:
        wecom.list_contacts_by_user([m["userid"] for m in members])
    assert info.value.field == "userids"


def test_contact_details_page_follow_users_past_500(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": f"m{i:03d}"} for i in range(620)]})
    fake.post(
        "contacts",
        {
            "contacts": [
                {
                    "external_userid": "wmpopular",
                    "name": "大客户",
                    "follow": [{"userid": f"m{i:03d}"} for i in range(620)],
                }
            ]
        },
    )
    first = wecom.get_contact("wmpopular")
    assert len(first.follow_users) == 500 and first.next_cursor
    full = wecom.get_contact_all_followers("wmpopular")
    assert full.contact.name == "大客户"
    assert [f.userid for f in full.follow_users] == [f"m{i:03d}" for i in range(620)]
    assert len(fake.calls("externalcontact/get")) == 3


# --- transfers ------------------------------------------------------------------------------


def test_transfers_are_split_into_calls_of_100_and_complete_after_24_hours(
    fake: Control, wecom: WeComClient
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    ids = _customers(fake, "alice", 250)
    assert isinstance(wecom, CustomerTransferrer)
    outcomes = wecom.transfer_customers(
        "alice", "bob", [*ids, "wmnobody"], message="您好，由同事继续为您服务"
    )
    assert [c["sizes"]["external_userid"] for c in fake.calls("externalcontact/transfer_customer")] == [
        100,
        100,
        51,
    ]
    assert {o.external_userid: o.errcode for o in outcomes} == {**dict.fromkeys(ids, 0), "wmnobody": 40096}

    waiting = wecom.transfer_results("alice", "bob")
    assert {s.status for s in waiting.items} == {2} and len(waiting.items) == 250
    fake.post("clock", {"advance": 24 * 3600 + 1})
    done = wecom.transfer_results("alice", "bob")
    assert {s.status for s in done.items} == {1}
    assert set(wecom.list_external_userids("bob")) == set(ids)
    assert wecom.list_external_userids("alice") == []

    # The server refuses 101 at once, which is why the adapter splits.
    with pytest.raises(WeComError) as info:
        wecom.post(
            "externalcontact/transfer_customer",
            {"handover_userid": "bob", "takeover_userid": "alice", "external_userid": ids[:101]},
        )
    assert info.value.errcode == 40058


def test_resigned_members_customers_use_the_resigned_endpoints(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    ids = _customers(fake, "alice", 3)
    with pytest.raises(WeComError):
        wecom.transfer_customers("alice", "bob", ids, resigned=True)  # alice has not left yet
    fake.post("members/alice/resign")
    outcomes = wecom.transfer_customers("alice", "bob", ids, resigned=True)
    assert [o.errcode for o in outcomes] == [0, 0, 0]
    assert len(wecom.transfer_results("alice", "bob", resigned=True).items) == 3
    assert wecom.transfer_results("alice", "bob").items == []
    with pytest.raises(WeComInputError):
        wecom.transfer_customers("alice", "bob", ids, message="x" * 201)


# --- errors -----------------------------------------------------------------------------------


def test_errors_carry_code_message_and_plain_language(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    _customers(fake, "alice", 1)
    fake.post("contacts", {"contacts": [{"external_userid": "wmstranger", "name": "路人"}]})

    with pytest.raises(WeComError) as not_contact:
        wecom.set_remark("alice", "wmstranger", remark="张三")
    assert not_contact.value.errcode == 84061
    assert "not an external contact" in str(not_contact.value)
    assert "not external contact" in not_contact.value.errmsg

    fake.post("config", {"forbidden_apis": ["externalcontact/get_follow_user_list"]})
    with pytest.raises(WeComPermissionError) as forbidden:
        wecom.list_follow_users()
    assert forbidden.value.errcode == 48002 and "customer-contact" in str(forbidden.value)

    fake.post("config", {"forbidden_apis": [], "allowed_ips": ["10.9.8.7"]})
    with pytest.raises(WeComPermissionError) as ip:
        wecom.list_follow_users()
    assert ip.value.errcode == 60020 and "trusted IP" in str(ip.value)

    assert "missing" in explain(41001)
    assert "99999" in explain(99999)


def test_client_side_limits_name_the_field(wecom: WeComClient) -> None:
    with pytest.raises(WeComInputError) as state:
        wecom.create_channel_code(["alice"], state="s" * 31)
    assert state.value.field == "state"
    with pytest.raises(WeComInputError) as remark:
        wecom.set_remark("alice", "wm1", remark="张" * 21)
    assert remark.value.field == "remark"
    with pytest.raises(WeComInputError) as empty:
        wecom.mark_tag("alice", "wm1")
    assert empty.value.field == "add"


# --- capabilities end to end ---------------------------------------------------------------------


def test_channel_code_carries_state_to_new_customers(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    code = wecom.create_channel_code(["alice", "bob"], state="douyin_live_0612", remark="抖音直播")
    assert code.config_id and code.qr_code
    first = fake.post("scan", {"config_id": code.config_id, "name": "小红"})
    second = fake.post("scan", {"state": "douyin_live_0612", "name": "小明"})
    assert {first["userid"], second["userid"]} == {"alice", "bob"}  # round-robin over the code's members
    rows = list(wecom.iter_contacts_by_user(["alice", "bob"]))
    assert {(r.contact.name, r.follow.state) for r in rows} == {
        ("小红", "douyin_live_0612"),
        ("小明", "douyin_live_0612"),
    }


def test_rule_group_tags_are_listed_apart_from_the_corp_library(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    (eid,) = _customers(fake, "alice", 1)
    fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高"]}]})
    vip = fake.post("strategy_tags", {"strategy_id": 3, "group_name": "会员", "tags": ["金卡", "银卡"]})
    other = fake.post("strategy_tags", {"strategy_id": 4, "group_name": "门店", "tags": ["北京"]})
    # get_corp_tag_list: the corp library alone, even asked for a rule-group tag by id.
    assert [g.group_name for g in wecom.list_corp_tags()] == ["意向"]
    assert wecom.list_corp_tags(tag_ids=[vip["tags"]["金卡"]]) == []
    # get_strategy_tag_list: every rule group without a filter, each group with its strategy_id.
    assert [(g.group_name, g.strategy_id, len(g.tags)) for g in wecom.list_strategy_tags()] == [
        ("会员", 3, 2),
        ("门店", 4, 1),
    ]
    assert [g.group_id for g in wecom.list_strategy_tags(strategy_id=4)] == [other["group_id"]]
    (one,) = wecom.list_strategy_tags(tag_ids=[vip["tags"]["银卡"]])
    assert [t.name for t in one.tags] == ["银卡"] and one.strategy_id == 3
    # group_id wins over tag_id, as WeCom documents.
    (whole,) = wecom.list_strategy_tags(tag_ids=[vip["tags"]["银卡"]], group_ids=[vip["group_id"]])
    assert [t.name for t in whole.tags] == ["金卡", "银卡"]
    # Marking a customer takes the rule-group tag's id like any tag; WeCom's detail shows it as type 3.
    wecom.mark_tag("alice", eid, add=[vip["tags"]["金卡"]])
    assert wecom.get_contact(eid).follow_users[0].tag_ids == (vip["tags"]["金卡"],)
    raw = wecom.get("externalcontact/get", {"external_userid": eid})["follow_user"][0]["tags"]
    assert raw == [{"group_name": "会员", "tag_name": "金卡", "tag_id": vip["tags"]["金卡"], "type": 3}]


def test_tags_and_remarks_round_trip(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    (eid,) = _customers(fake, "alice", 1)
    created = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高", "低"]}]})["groups"][0]
    groups = wecom.list_corp_tags()
    assert [(g.group_name, [t.name for t in g.tags]) for g in groups] == [("意向", ["高", "低"])]
    assert wecom.list_corp_tags(tag_ids=[created["tags"]["低"]])[0].tags[0].name == "低"

    wecom.mark_tag("alice", eid, add=[created["tags"]["高"], created["tags"]["低"]])
    wecom.mark_tag("alice", eid, remove=[created["tags"]["低"]])
    wecom.set_remark(
        "alice", eid, remark="张三抖音高意向", description="想要电子版资料", remark_mobiles=["13800000001"]
    )
    follow = wecom.get_contact(eid).follow_users[0]
    assert follow.tag_ids == (created["tags"]["高"],)
    assert (follow.remark, follow.description, follow.remark_mobiles) == (
        "张三抖音高意向",
        "想要电子版资料",
        ("13800000001",),
    )
    wecom.set_remark("alice", eid, remark_mobiles=[])
    assert wecom.get_contact(eid).follow_users[0].remark_mobiles == ()
    with pytest.raises(WeComError) as bad_tag:
        wecom.mark_tag("alice", eid, add=["etnotatag"])
    assert bad_tag.value.errcode == 40068


def test_add_corp_tag_makes_groups_and_answers_names_already_there(fake: Control, wecom: WeComClient) -> None:
    assert isinstance(wecom, channel.CorpTagWriter)
    new = wecom.add_corp_tag(["求资料", "求价格", "求资料"], group_name="意向")
    assert new.group_name == "意向" and new.group_id.startswith("et")
    assert [t.name for t in new.tags] == ["求资料", "求价格"]  # a name given twice is created once
    assert all(t.id.startswith("et") for t in new.tags)
    # A group name WeCom already has: the tags go into that group.
    more = wecom.add_corp_tag(["求售后"], group_name="意向")
    assert more.group_id == new.group_id
    (group,) = wecom.list_corp_tags()
    assert [t.name for t in group.tags] == ["求资料", "求价格", "求售后"]

    # WeCom refuses the whole call when one name is already in the group...
    with pytest.raises(WeComError) as clash:
        wecom.post("externalcontact/add_corp_tag", {"group_id": new.group_id, "tag": [{"name": "求价格"}]})
    assert clash.value.errcode == 40071
    assert len(wecom.list_corp_tags()[0].tags) == 3
    # ...so the adapter reads the group and creates only the names it lacks.
    paced: list[str] = []
    both = wecom.add_corp_tag(["求价格", "求试用"], group_id=new.group_id, pace=paced.append)
    ids = {t.name: t.id for t in wecom.list_corp_tags()[0].tags}
    assert {t.name: t.id for t in both.tags} == {"求价格": ids["求价格"], "求试用": ids["求试用"]}
    assert len(ids) == 4
    assert paced == [
        "externalcontact/add_corp_tag",
        "externalcontact/get_corp_tag_list",
        "externalcontact/add_corp_tag",
    ]
    fake.post("members", {"members": [{"userid": "alice"}]})
    (eid,) = _customers(fake, "alice", 1)
    wecom.mark_tag("alice", eid, add=[ids["求试用"]])  # the new ids are the library's own
    assert wecom.get_contact(eid).follow_users[0].tag_ids == (ids["求试用"],)

    with pytest.raises(WeComError) as unknown:
        wecom.add_corp_tag(["x"], group_id="etnotagroup")
    assert unknown.value.errcode == 40068
    with pytest.raises(WeComInputError) as long_name:
        wecom.add_corp_tag(["长" * 31], group_name="意向")
    assert long_name.value.field == "names"


def test_mass_messages_split_past_10000_and_report_results(fake: Control, wecom: WeComClient) -> None:
    from datetime import UTC, datetime, timedelta

    from siyu.integrations.channel import MessageContent

    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("generate", {"members": 1, "contacts": 0, "seed": 9})  # tag library only
    ids = _customers(fake, "alice", 10_050)
    assert isinstance(wecom, MassMessenger)
    sent = wecom.submit_mass_message(
        MessageContent(text="本周福利"), external_userids=ids + ids[:10] + ["wmghost"]
    )
    assert len(sent.msgids) == 2 and sent.fail_list == ["wmghost"]
    assert [c["sizes"]["external_userid"] for c in fake.calls("externalcontact/add_msg_template")] == [
        10_000,
        51,
    ]

    now = datetime.now(UTC)
    listed = wecom.list_mass_messages(now - timedelta(hours=1), now + timedelta(hours=1))
    assert sorted(m.msgid for m in listed.items) == sorted(sent.msgids)
    assert {m.text for m in listed.items} == {"本周福利"}

    tasks = wecom.list_mass_tasks(sent.msgids[1]).items
    assert [(t.userid, t.status) for t in tasks] == [("alice", 0)]
    fake.post(f"contacts/{ids[10_000]}/delete", {"userid": "alice", "by": "customer"})
    fake.post(f"mass/{sent.msgids[1]}/send", {"userid": "alice"})
    results = wecom.list_mass_send_results(sent.msgids[1], "alice").items
    assert {r.external_userid: r.status for r in results} == {**dict.fromkeys(ids[10001:], 1), ids[10_000]: 2}
    assert wecom.list_mass_tasks(sent.msgids[1]).items[0].sent_at is not None


def test_group_mass_messages_split_past_2000_groups(fake: Control, wecom: WeComClient) -> None:
    from siyu.integrations.channel import MessageContent

    fake.post("members", {"members": [{"userid": "alice"}]})
    chat_ids = fake.post("groups", {"groups": [{"owner": "alice", "name": f"群{i}"} for i in range(2001)]})[
        "chat_ids"
    ]
    sent = wecom.submit_mass_message(
        MessageContent(text="开课啦"), chat_ids=chat_ids, sender="alice", chat_type="group"
    )
    assert len(sent.msgids) == 2
    assert [c["sizes"]["chat_id_list"] for c in fake.calls("externalcontact/add_msg_template")] == [2000, 1]
    with pytest.raises(WeComInputError) as info:
        wecom.submit_mass_message(MessageContent(text="x"), chat_ids=chat_ids[:1], chat_type="group")
    assert info.value.field == "sender"


def test_groups_are_listed_with_cursor_and_read_with_members(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}, {"userid": "bob"}]})
    (eid,) = _customers(fake, "alice", 1)
    chat_ids = fake.post(
        "groups",
        {
            "groups": [
                {"owner": "alice", "name": "训练营1期", "members": [eid, "bob"], "admins": ["bob"]},
                {"owner": "alice", "name": "训练营2期"},
                {"owner": "bob", "name": "老客群"},
            ]
        },
    )["chat_ids"]
    first = wecom.list_groups(owner_userids=["alice"], limit=1)
    second = wecom.list_groups(owner_userids=["alice"], limit=1, cursor=first.next_cursor)
    assert [g.chat_id for g in first.items + second.items] == chat_ids[:2] and not second.has_more
    group = wecom.get_group(chat_ids[0])
    assert (group.name, group.owner, group.admins) == ("训练营1期", "alice", ["bob"])
    assert [(m.userid, m.type, m.name) for m in group.members] == [
        ("alice", 1, "alice"),
        (eid, 2, "客户0"),
        ("bob", 1, "bob"),
    ]
    with pytest.raises(WeComError) as missing:
        wecom.get_group("wrnosuchgroup")
    assert missing.value.errcode == 40050


def test_moments_task_reports_invalid_senders(fake: Control, wecom: WeComClient) -> None:
    from siyu.integrations.channel import MessageContent

    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("config", {"moment_delay": 30})
    jobid = wecom.post_moment(MessageContent(text="真实成交晒单"), sender_userids=["alice", "ghost"])
    assert not wecom.get_moment_task_result(jobid).done
    fake.post("clock", {"advance": 31})
    result = wecom.get_moment_task_result(jobid)
    assert result.done and result.moment_id and result.invalid_senders == ["ghost"]


# --- WeCom's blocks after a frequency limit -------------------------------------------------------


class FakeTime:
    """One clock for the adapter and the fake: the adapter's sleeps move both."""

    def __init__(self, fake: Control) -> None:
        self.fake, self.now, self.sleeps = fake, 1000.0, Sleeps()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.fake.post("clock", {"advance": seconds})


def test_a_minute_block_is_waited_out(fake: Control, make_wecom: Callable[..., WeComClient]) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("config", {"rate_limits": {"externalcontact/list": 2}})
    time_ = FakeTime(fake)
    client = make_wecom(sleep=time_.sleep, clock=time_.clock)
    for _ in range(3):
        assert client.list_external_userids("alice") == []
    # The third call met the per-minute limit: WeCom blocked the API for 60 s, and the adapter waited.
    assert time_.sleeps == [60.0]
    assert [c["errcode"] for c in fake.calls("externalcontact/list")] == [0, 0, 45009, 0]


def test_the_hour_block_is_honoured_without_calling_wecom(
    fake: Control, make_wecom: Callable[..., WeComClient]
) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    fake.post("config", {"hourly_rate_limits": {"externalcontact/list": 3}})
    time_ = FakeTime(fake)
    client = make_wecom(sleep=time_.sleep, clock=time_.clock)
    for _ in range(3):
        client.list_external_userids("alice")
    # The hourly limit: WeCom blocks the API for an hour. The adapter waits a minute (it cannot tell the
    # two apart), meets the block again, and then knows it is the hour's.
    with pytest.raises(WeComRateLimited) as info:
        client.list_external_userids("alice")
    assert info.value.errcode == 45009 and info.value.retry_after == 3600.0
    assert "an hour" in str(info.value)
    assert time_.sleeps == [60.0]
    calls = len(fake.calls("externalcontact/list"))
    # While the hour runs, siyu does not call WeCom at all (each call would only be refused).
    time_.advance(1800)
    with pytest.raises(WeComRateLimited) as again:
        client.list_external_userids("alice")
    assert 1700 < again.value.retry_after <= 1800
    assert len(fake.calls("externalcontact/list")) == calls
    # WeCom (the fake) blocks for the whole hour: another process asking half an hour in is refused.
    with pytest.raises(WeComRateLimited):
        make_wecom(max_retries=0, clock=time_.clock).list_external_userids("alice")
    assert fake.calls("externalcontact/list")[-1]["errcode"] == 45009
    time_.advance(1801)
    assert client.list_external_userids("alice") == []


def test_a_welcome_code_is_taken_once_and_for_20_seconds(fake: Control, wecom: WeComClient) -> None:
    fake.post("members", {"members": [{"userid": "alice"}]})
    added = fake.post(
        "contacts",
        {
            "emit": True,
            "contacts": [
                {"external_userid": f"wm_{i}", "name": "王芳", "follow": [{"userid": "alice"}]}
                for i in range(2)
            ],
        },
    )
    first, second = (d["fields"]["WelcomeCode"] for d in added["deliveries"])
    welcome = {"welcome_code": first, "text": {"content": "欢迎"}}
    wecom.post("externalcontact/send_welcome_msg", welcome)
    # WeCom's own codes: 41051 for a code already used, 41050 for one past its 20 seconds.
    with pytest.raises(WeComError) as reused:
        wecom.post("externalcontact/send_welcome_msg", welcome)
    assert reused.value.errcode == 41051
    fake.post("clock", {"advance": 21})
    with pytest.raises(WeComError) as expired:
        wecom.post("externalcontact/send_welcome_msg", welcome | {"welcome_code": second})
    assert expired.value.errcode == 41050
