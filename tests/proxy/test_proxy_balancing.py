"""proxy/upstream.py: which server `Upstream.pick` chooses, and how failures and health take servers out.

Pure: the groups are built from the settings dataclasses; their pools are created but never connect.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest

from wsgistack.config.addresses import Address
from wsgistack.proxy.settings import ServerSettings, UpstreamSettings
from wsgistack.proxy.upstream import Upstream, UpstreamServer

FOREVER = math.inf


def server(name: str, weight: int = 1, backup: bool = False, max_fails: int | None = None,
           fail_timeout: float | None = None) -> ServerSettings:
    """A server called `name` (its address is unix:NAME, so picks read as letters)."""
    return ServerSettings(Address("unix", path=name), weight=weight, backup=backup, max_fails=max_fails,
                          fail_timeout=fail_timeout)


def group(*servers: ServerSettings | str, balance: str = "round_robin", hash_header: str | None = None,
          max_fails: int = 1, fail_timeout: float = 10.0) -> Upstream:
    specs = tuple(server(spec) if isinstance(spec, str) else spec for spec in servers)
    return Upstream(UpstreamSettings(name="app", servers=specs, balance=balance, hash_header=hash_header,
                                     max_fails=max_fails, fail_timeout=fail_timeout))


def letter(chosen: UpstreamServer | None) -> str:
    return "-" if chosen is None else chosen.name.removeprefix("unix:")


def picks(upstream: Upstream, count: int, client_ip: str = "10.0.0.1",
          headers: list[tuple[str, str]] | None = None) -> str:
    return "".join(letter(upstream.pick(client_ip, headers or [])) for _ in range(count))


def by_name(upstream: Upstream) -> dict[str, UpstreamServer]:
    return {letter(s): s for s in upstream.servers}


# --- round robin --------------------------------------------------------------------------------------------

def test_round_robin_alternates_over_equal_servers():
    assert picks(group("a", "b", "c"), 9) == "abcabcabc"


def test_smooth_weighted_round_robin_interleaves():
    upstream = group(server("a", weight=5), server("b"), server("c"))
    sequence = picks(upstream, 14)
    assert sequence[:7] == "aabacaa"  # nginx's order: a a b a c a a, not a a a a a b c
    assert sequence[7:] == sequence[:7]
    assert Counter(sequence[:7]) == {"a": 5, "b": 1, "c": 1}
    assert "aaa" not in sequence[:7]


def test_weights_hold_over_many_picks():
    upstream = group(server("a", weight=3), server("b", weight=2), server("c"))
    assert Counter(picks(upstream, 600)) == {"a": 300, "b": 200, "c": 100}


def test_round_robin_skips_a_down_server_and_takes_it_back():
    upstream = group("a", "b", "c")
    servers = by_name(upstream)
    servers["b"].down_until = FOREVER
    assert set(picks(upstream, 6)) == {"a", "c"}
    servers["b"].down_until = 0.0
    assert Counter(picks(upstream, 30)) == {"a": 10, "b": 10, "c": 10}


def test_one_server_is_always_the_choice():
    upstream = group("a")
    assert picks(upstream, 3) == "aaa"


# --- least_conn ---------------------------------------------------------------------------------------------

def test_least_conn_prefers_the_fewest_active_requests():
    upstream = group("a", "b", "c", balance="least_conn")
    servers = by_name(upstream)
    servers["a"].active, servers["b"].active, servers["c"].active = 3, 1, 2
    assert picks(upstream, 4) == "bbbb"
    servers["b"].active = 5
    assert picks(upstream, 2) == "cc"


def test_least_conn_divides_by_weight():
    upstream = group(server("a", weight=4), server("b"), balance="least_conn")
    servers = by_name(upstream)
    servers["a"].active, servers["b"].active = 3, 1  # 0.75 against 1.0
    assert letter(upstream.pick("10.0.0.1", [])) == "a"
    servers["a"].active = 5  # 1.25 against 1.0
    assert letter(upstream.pick("10.0.0.1", [])) == "b"


def test_least_conn_ties_go_round_robin():
    upstream = group("a", "b", "c", balance="least_conn")
    servers = by_name(upstream)
    servers["c"].active = 1
    assert sorted(picks(upstream, 4)) == ["a", "a", "b", "b"]


def test_least_conn_follows_requests_in_flight():
    upstream = group("a", "b", "c", balance="least_conn")
    # each pick is a request that stays in flight: they spread one per server, then again
    chosen = []
    for _ in range(6):
        picked = upstream.pick("10.0.0.1", [])
        picked.active += 1
        chosen.append(letter(picked))
    assert Counter(chosen) == {"a": 2, "b": 2, "c": 2}


# --- ip_hash and hash ---------------------------------------------------------------------------------------

IPS = [f"10.{i % 7}.{i // 7 % 256}.{i * 37 % 256}" for i in range(600)]


def test_ip_hash_sends_an_ip_to_the_same_server():
    upstream = group("a", "b", "c", balance="ip_hash")
    for ip in IPS[:50]:
        assert len(set(picks(upstream, 5, client_ip=ip))) == 1


def test_ip_hash_spreads_many_ips_over_every_server():
    upstream = group("a", "b", "c", balance="ip_hash")
    counts = Counter(letter(upstream.pick(ip, [])) for ip in IPS)
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) >= len(IPS) // 10, counts


def test_ip_hash_moves_only_the_keys_of_a_server_that_goes_down():
    upstream = group("a", "b", "c", balance="ip_hash")
    before = {ip: letter(upstream.pick(ip, [])) for ip in IPS}
    by_name(upstream)["b"].down_until = FOREVER
    during = {ip: letter(upstream.pick(ip, [])) for ip in IPS}
    for ip in IPS:
        if before[ip] == "b":
            assert during[ip] in ("a", "c")
        else:
            assert during[ip] == before[ip], ip
    by_name(upstream)["b"].down_until = 0.0
    assert {ip: letter(upstream.pick(ip, [])) for ip in IPS} == before


def test_ip_hash_retry_goes_to_another_server():
    upstream = group("a", "b", "c", balance="ip_hash")
    first = upstream.pick("10.0.0.9", [])
    second = upstream.pick("10.0.0.9", [], tried={first})
    third = upstream.pick("10.0.0.9", [], tried={first, second})
    assert len({first, second, third}) == 3
    assert upstream.pick("10.0.0.9", [], tried={first, second, third}) is None


def test_hash_header_keeps_a_user_on_one_server():
    upstream = group("a", "b", "c", balance="hash", hash_header="X-User")
    for user in ("alice", "bob", "carol", "dave"):
        # the header's name matches in any case; the client's IP plays no part
        chosen = {letter(upstream.pick(f"10.0.0.{i}", [(name, user)]))
                  for i, name in enumerate(["X-User", "x-user", "X-USER", "x-User"])}
        assert len(chosen) == 1, (user, chosen)


def test_hash_header_spreads_users_over_every_server():
    upstream = group("a", "b", "c", balance="hash", hash_header="x-user")
    counts = Counter(letter(upstream.pick("10.0.0.1", [("X-User", f"user-{i}")])) for i in range(600))
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) >= 60, counts


def test_hash_without_the_header_goes_round_robin():
    upstream = group("a", "b", "c", balance="hash", hash_header="x-user")
    assert picks(upstream, 6, headers=[("X-Other", "1")]) == "abcabc"


def test_hash_moves_only_the_keys_of_an_unhealthy_server():
    upstream = group("a", "b", "c", "d", balance="hash", hash_header="x-user")
    users = [[("X-User", f"user-{i}")] for i in range(300)]
    before = [letter(upstream.pick("10.0.0.1", headers)) for headers in users]
    by_name(upstream)["c"].unhealthy = True
    after = [letter(upstream.pick("10.0.0.1", headers)) for headers in users]
    assert all(b == a for b, a in zip(before, after) if b != "c")
    assert "c" not in after and "c" in before


# --- backups ------------------------------------------------------------------------------------------------

def test_backup_gets_nothing_while_a_primary_is_up():
    upstream = group("a", "b", server("z", backup=True))
    servers = by_name(upstream)
    assert "z" not in picks(upstream, 50)
    servers["a"].down_until = FOREVER
    assert picks(upstream, 5) == "bbbbb"
    servers["b"].unhealthy = True
    assert picks(upstream, 5) == "zzzzz"
    servers["a"].down_until = 0.0
    assert picks(upstream, 5) == "aaaaa"


def test_backups_are_balanced_among_themselves():
    upstream = group("a", server("y", backup=True), server("z", backup=True, weight=2))
    by_name(upstream)["a"].unhealthy = True
    assert Counter(picks(upstream, 30)) == {"y": 10, "z": 20}


def test_backup_takes_the_retry_when_every_primary_was_tried():
    upstream = group("a", "b", server("z", backup=True))
    servers = by_name(upstream)
    assert letter(upstream.pick("10.0.0.1", [], tried={servers["a"], servers["b"]})) == "z"
    assert upstream.pick("10.0.0.1", [], tried=set(upstream.servers)) is None


def test_nothing_when_every_server_is_down():
    upstream = group("a", server("z", backup=True))
    for each in upstream.servers:
        each.down_until = FOREVER
    assert upstream.pick("10.0.0.1", []) is None


# --- tried --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash"])
def test_tried_servers_are_not_picked_again(balance):
    upstream = group("a", "b", "c", balance=balance)
    servers = by_name(upstream)
    for _ in range(5):
        assert letter(upstream.pick("10.0.0.1", [], tried={servers["a"], servers["c"]})) == "b"
    assert upstream.pick("10.0.0.1", [], tried=set(upstream.servers)) is None


# --- passive health: max_fails within fail_timeout ----------------------------------------------------------

def test_max_fails_failures_within_fail_timeout_take_a_server_out_for_fail_timeout():
    upstream = group("a", "b", max_fails=2, fail_timeout=10.0)
    a = by_name(upstream)["a"]
    a.record_failure("connect failed", now=100.0)
    assert a.available(100.0)
    a.record_failure("connect failed", now=101.0)
    assert not a.available(101.0)
    assert not a.available(110.9)
    assert a.available(111.0)


def test_failures_further_apart_than_fail_timeout_do_not_add_up():
    upstream = group("a", "b", max_fails=2, fail_timeout=10.0)
    a = upstream.servers[0]
    a.record_failure("reset", now=100.0)
    a.record_failure("reset", now=111.0)  # the first one's window has passed
    assert a.available(111.0)
    a.record_failure("reset", now=112.0)
    assert not a.available(112.0)


def test_a_success_clears_the_failure_count():
    upstream = group("a", "b", max_fails=2)
    a = upstream.servers[0]
    a.record_failure("reset", now=100.0)
    a.record_success()
    a.record_failure("reset", now=101.0)
    assert a.available(101.0)


def test_a_failed_server_is_not_picked_until_fail_timeout_has_passed():
    upstream = group("a", "b", max_fails=1, fail_timeout=5.0)
    servers = by_name(upstream)
    servers["a"].record_failure("connect failed", now=time.monotonic())
    assert picks(upstream, 6) == "bbbbbb"
    # the same failure, long enough ago: the server is back
    servers["a"].down_until = 0.0
    servers["a"].record_failure("connect failed", now=time.monotonic() - 5.1)
    assert Counter(picks(upstream, 6)) == {"a": 3, "b": 3}


def test_max_fails_0_never_marks_a_server_down():
    upstream = group("a", "b", max_fails=0)
    a = by_name(upstream)["a"]
    for second in range(20):
        a.record_failure("timed out", now=100.0 + second / 10)
    assert a.available(102.0)
    assert "a" in picks(upstream, 4)


def test_server_parameters_override_the_group():
    upstream = group(server("a", max_fails=0), server("b", max_fails=3, fail_timeout=2.0), "c",
                     max_fails=1, fail_timeout=10.0)
    servers = by_name(upstream)
    assert (servers["a"].max_fails, servers["b"].max_fails, servers["c"].max_fails) == (0, 3, 1)
    assert (servers["b"].fail_timeout, servers["c"].fail_timeout) == (2.0, 10.0)
    for s in servers.values():
        s.record_failure("reset", now=50.0)
    assert [s.available(50.0) for s in servers.values()] == [True, True, False]
    servers["b"].record_failure("reset", now=50.5)
    servers["b"].record_failure("reset", now=51.0)
    assert not servers["b"].available(52.9)
    assert servers["b"].available(53.0)


def test_failures_while_down_do_not_extend_the_window():
    upstream = group("a", "b", max_fails=1, fail_timeout=10.0)
    a = upstream.servers[0]
    a.record_failure("reset", now=100.0)
    assert not a.available(100.0)
    a.record_failure("reset", now=105.0)  # a request that was already on its way
    assert a.available(110.0)


# --- active health ------------------------------------------------------------------------------------------

def test_an_unhealthy_server_is_skipped_until_it_is_healthy_again():
    upstream = group("a", "b", "c")
    servers = by_name(upstream)
    servers["c"].unhealthy = True
    assert set(picks(upstream, 10)) == {"a", "b"}
    assert not servers["c"].available(time.monotonic())
    servers["c"].unhealthy = False
    assert "c" in picks(upstream, 3)


def test_every_primary_unhealthy_and_no_backup_is_none():
    upstream = group("a", "b", balance="least_conn")
    for each in upstream.servers:
        each.unhealthy = True
    assert upstream.pick("10.0.0.1", []) is None


# --- reload -------------------------------------------------------------------------------------------------

def test_a_reload_keeps_the_state_of_servers_that_stay():
    old = group("a", "b")
    by_name(old)["a"].down_until = FOREVER
    new = Upstream(UpstreamSettings(name="app", servers=(server("a"), server("c"))), reuse=old.servers)
    assert by_name(new)["a"] is by_name(old)["a"]
    assert picks(new, 3) == "ccc"
