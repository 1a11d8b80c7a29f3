"""limit_req and limit_conn: rates, settings tables, keys, the leaky bucket on a fake clock, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgistack.proxy.limits import (
    LimitConn,
    LimitConnSettings,
    LimitReq,
    LimitReqSettings,
    Verdict,
    key_of,
    parse_key,
    parse_rate,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(rate: float, burst: int = 0, nodelay: bool = False, max_keys: int = 100_000):
    clock = FakeClock()
    return LimitReq(LimitReqSettings(rate=rate, burst=burst, nodelay=nodelay), clock, max_keys), clock


# --- parse_rate ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, rate", [
    ("10r/s", 10.0), ("600r/m", 10.0), ("1r/s", 1.0), ("1r/m", 1 / 60), ("30r/m", 0.5), (" 5r/s ", 5.0),
    ("100000r/s", 100000.0),
])
def test_parse_rate(text, rate):
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", [
    "10/s", "10 r/s", "10r/h", "10R/S", "r/s", "", "0r/s", "0r/m", "-1r/s", "1.5r/s", "0.5r/s", "10", "ten r/s",
    10, 10.0, None, True,
])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_parse_rate_reason_names_the_text_and_the_form():
    with pytest.raises(ValueError, match=r"'10/s' is not a rate like 10r/s"):
        parse_rate("10/s")
    with pytest.raises(ValueError, match="more than 0"):
        parse_rate("0r/s")


# --- keys ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    ("client_ip", "client_ip"), ("$remote_addr", "client_ip"), ("$binary_remote_addr", "client_ip"),
    (" client_ip ", "client_ip"), ("header:X-Api-Key", "header:X-Api-Key"), ("header:x-api-key", "header:X-Api-Key"),
    ("HEADER: authorization", "header:Authorization"), ("$http_x_api_key", "header:X-Api-Key"),
    ("$http_authorization", "header:Authorization"),
])
def test_parse_key(text, key):
    assert parse_key(text) == key


@pytest.mark.parametrize("text", ["", "ip", "remote_addr", "header:", "header:a b", "header:x:y", "$http_", "$uri",
                                  None, 3])
def test_parse_key_refuses(text):
    with pytest.raises(ValueError):
        parse_key(text)


def test_key_of_client_ip_and_headers():
    headers = [("Host", "a"), ("x-api-key", "k1"), ("X-Api-Key", "k2"), ("X-Empty", "")]
    assert key_of("client_ip", "10.0.0.1", headers) == "10.0.0.1"
    assert key_of("client_ip", "", headers) is None
    assert key_of("header:X-Api-Key", "10.0.0.1", headers) == "k1"  # the first one, names case-insensitive
    assert key_of("header:Authorization", "10.0.0.1", headers) is None  # absent: not limited
    assert key_of("header:X-Empty", "10.0.0.1", headers) is None  # empty: not limited, as nginx does
    with pytest.raises(ValueError):
        key_of("$remote_addr", "10.0.0.1", headers)


# --- settings tables ----------------------------------------------------------------------------------------

def test_limit_req_from_table_full_and_defaults():
    full = LimitReqSettings.from_table(
        {"rate": "600r/m", "burst": 20, "nodelay": True, "key": "$http_x_api_key", "status": 503})
    assert full == LimitReqSettings(rate=10.0, burst=20, nodelay=True, key="header:X-Api-Key", status=503)
    assert LimitReqSettings.from_table({"rate": "5r/s"}) == LimitReqSettings(rate=5.0)
    assert LimitReqSettings(rate=1).status == 429 and LimitReqSettings(rate=1).key == "client_ip"


@pytest.mark.parametrize("table, message", [
    ({"rate": "10/s"}, r"^rate: '10/s' is not a rate like 10r/s"),
    ({}, r"^rate: missing"),
    ({"burst": 3}, r"^rate: missing"),
    ({"rate": "1r/s", "brust": 3}, r"^unknown key 'brust' \(known: rate, burst, nodelay, key, status\)"),
    ({"rate": "1r/s", "burst": -1}, r"^burst: "),
    ({"rate": "1r/s", "burst": 1.5}, r"^burst: "),
    ({"rate": "1r/s", "burst": True}, r"^burst: "),
    ({"rate": "1r/s", "nodelay": "maybe"}, r"^nodelay: "),
    ({"rate": "1r/s", "key": "ip"}, r"^key: 'ip' is not client_ip"),
    ({"rate": "1r/s", "status": 200}, r"^status: 200 is not an error status"),
    ({"rate": "1r/s", "status": 600}, r"^status: "),
    ({"rate": "1r/s", "status": "x"}, r"^status: "),
    ({"rate": 10}, r"^rate: "),
])
def test_limit_req_from_table_refuses(table, message):
    with pytest.raises(ValueError, match=message):
        LimitReqSettings.from_table(table)


def test_from_table_refuses_a_non_table():
    with pytest.raises(ValueError, match="is not a table"):
        LimitReqSettings.from_table("10r/s")
    with pytest.raises(ValueError, match="is not a table"):
        LimitConnSettings.from_table(10)


def test_limit_conn_from_table():
    assert LimitConnSettings.from_table({"max": 10}) == LimitConnSettings(max=10, key="client_ip", status=503)
    assert LimitConnSettings.from_table({"max": 1, "key": "header:X-User", "status": 429}) == \
        LimitConnSettings(max=1, key="header:X-User", status=429)
    for table, message in [({}, "^max: missing"), ({"max": 0}, "^max: "), ({"max": 2, "rate": "1r/s"}, "^unknown key"),
                           ({"max": 2, "status": 399}, "^status: ")]:
        with pytest.raises(ValueError, match=message):
            LimitConnSettings.from_table(table)


# --- the leaky bucket ---------------------------------------------------------------------------------------

def test_five_a_second_no_burst_passes_one_of_a_tight_loop_then_one_a_second_later():
    limit, clock = limiter(5)
    verdicts = [limit.check("1.2.3.4") for _ in range(20)]
    assert [v.allowed for v in verdicts] == [True] + [False] * 19
    assert verdicts[0] == Verdict(True)
    clock.advance(1)
    assert limit.check("1.2.3.4").allowed
    assert not limit.check("1.2.3.4").allowed


def test_refused_requests_do_not_extend_the_wait():
    limit, clock = limiter(5)
    assert limit.check("a").allowed
    for _ in range(100):
        assert not limit.check("a").allowed
    clock.advance(0.2)  # exactly one request's worth at 5r/s
    assert limit.check("a").allowed


def test_each_key_has_its_own_bucket_and_none_is_not_limited():
    limit, _ = limiter(1)
    assert limit.check("a").allowed and limit.check("b").allowed
    assert not limit.check("a").allowed
    assert all(limit.check(None) == Verdict(True) for _ in range(50))
    assert len(limit) == 2


def test_burst_nodelay_passes_burst_plus_one_at_once():
    limit, _ = limiter(1, burst=3, nodelay=True)
    verdicts = [limit.check("k") for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True, True, True, True, False, False]
    assert all(v.delay == 0 for v in verdicts)


def test_burst_without_nodelay_spaces_requests_at_the_rate():
    limit, _ = limiter(10, burst=3)
    verdicts = [limit.check("k") for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, True, False]
    assert [v.delay for v in verdicts[:4]] == pytest.approx([0, 0.1, 0.2, 0.3])


def test_bucket_drains_over_time():
    limit, clock = limiter(2, burst=4, nodelay=True)
    assert all(limit.check("k").allowed for _ in range(5))  # excess 4 = burst
    assert not limit.check("k").allowed
    clock.advance(0.5)  # one request drained
    assert limit.check("k").allowed
    assert not limit.check("k").allowed
    clock.advance(1.0)  # two drained
    assert limit.check("k").allowed and limit.check("k").allowed
    assert not limit.check("k").allowed
    clock.advance(10)  # empty again: a full burst passes
    assert all(limit.check("k").allowed for _ in range(5))
    assert not limit.check("k").allowed


def test_a_clock_stepping_back_neither_drains_nor_breaks():
    limit, clock = limiter(1)
    assert limit.check("k").allowed
    clock.advance(-5)
    assert not limit.check("k").allowed
    clock.advance(6)
    assert limit.check("k").allowed


@pytest.mark.parametrize("rate, burst, elapsed, retry_after", [
    (1, 0, 0, 1),          # one second until a request's worth drains
    (5, 0, 0, 1),          # 0.2 s, rounded up to a whole second, at least 1
    ("1r/m", 0, 0, 60),
    ("1r/m", 0, 30, 30),   # half drained already
    ("1r/m", 2, 0, 60),    # the fourth request of a burst of 2
    ("6r/m", 0, 0, 10),
    (10, 5, 0, 1),
])
def test_retry_after(rate, burst, elapsed, retry_after):
    rate = parse_rate(rate) if isinstance(rate, str) else rate
    limit, clock = limiter(rate, burst=burst, nodelay=True)
    for _ in range(burst + 1):
        assert limit.check("k").allowed
    clock.advance(elapsed)
    verdict = limit.check("k")
    assert not verdict.allowed
    assert verdict.retry_after == retry_after
    clock.advance(retry_after)
    assert limit.check("k").allowed  # the promise holds


def test_bad_arguments():
    with pytest.raises(ValueError):
        LimitReq(LimitReqSettings(rate=0))
    with pytest.raises(ValueError):
        LimitReq(LimitReqSettings(rate=1), max_keys=0)


# --- memory bound -------------------------------------------------------------------------------------------

def test_least_recently_seen_key_is_forgotten_past_max_keys():
    limit, _ = limiter(1, max_keys=3)
    for key in "abc":
        assert limit.check(key).allowed
    assert not limit.check("a").allowed  # a is now the most recently seen, b the least
    assert limit.check("d").allowed
    assert len(limit) == 3
    assert limit.check("b").allowed  # forgotten, so it starts again (which evicts c)
    assert not limit.check("a").allowed and not limit.check("d").allowed  # remembered
    assert len(limit) == 3


def test_drained_keys_are_dropped_when_new_keys_come():
    limit, clock = limiter(1)
    limit.check("a")
    limit.check("b")
    clock.advance(1)  # both buckets are empty: their next request would start from 0
    limit.check("c")
    assert len(limit) == 1
    assert limit.check("a") == Verdict(True)


def reference_check(buckets, key, now, rate, burst):
    """The bucket with no memory bound and nothing forgotten, to compare with."""
    if key not in buckets:
        buckets[key] = (0.0, now)
        return True
    stored, last = buckets[key]
    excess = max(0.0, stored - rate * (now - last) + 1)
    if excess > burst + 1e-9:
        return False
    buckets[key] = (excess, now)
    return True


@given(rate=st.integers(1, 10), burst=st.integers(0, 5),
       steps=st.lists(st.tuples(st.floats(0, 1.5), st.sampled_from("abcdef")), max_size=150))
def test_dropping_drained_keys_changes_no_verdict(rate, burst, steps):
    limit, clock = limiter(rate, burst=burst, nodelay=True)
    buckets: dict = {}
    for gap, key in steps:
        clock.advance(gap)
        assert limit.check(key).allowed == reference_check(buckets, key, clock.now, rate, burst)


@given(rate=st.sampled_from([1 / 60, 0.5, 1.0, 3.0, 10.0, 100.0]), burst=st.integers(0, 8),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_accepted_in_any_window_at_most_burst_plus_one_plus_rate_times_length(rate, burst, gaps):
    limit, clock = limiter(rate, burst=burst, nodelay=True)
    accepted = []
    for gap in gaps:
        clock.advance(gap)
        if limit.check("k").allowed:
            accepted.append(clock.now)
    # every window [accepted[i], accepted[j]] holds j - i + 1 accepted requests
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            assert j - i + 1 <= burst + 1 + rate * (accepted[j] - start) + 1e-6


@given(rate=st.integers(1, 20), burst=st.integers(0, 8), gaps=st.lists(st.floats(0, 1), max_size=100))
def test_delays_never_exceed_burst_over_rate(rate, burst, gaps):
    limit, clock = limiter(rate, burst=burst)
    for gap in gaps:
        clock.advance(gap)
        verdict = limit.check("k")
        assert 0 <= verdict.delay <= burst / rate + 1e-9
        assert verdict.allowed or verdict.retry_after >= 1


# --- limit_conn ---------------------------------------------------------------------------------------------

def test_limit_conn_acquire_release():
    conns = LimitConn(LimitConnSettings(max=2))
    assert conns.acquire("a") and conns.acquire("a")
    assert not conns.acquire("a")
    assert conns.active("a") == 2
    assert conns.acquire("b")
    conns.release("a")
    assert conns.active("a") == 1
    assert conns.acquire("a")
    conns.release("a")
    conns.release("a")
    assert conns.active("a") == 0
    assert len(conns) == 1  # keys at 0 are forgotten
    conns.release("b")
    assert len(conns) == 0


def test_limit_conn_none_key_is_never_limited():
    conns = LimitConn(LimitConnSettings(max=1))
    assert all(conns.acquire(None) for _ in range(10))
    conns.release(None)
    assert conns.active(None) == 0 and len(conns) == 0


def test_limit_conn_release_of_an_unknown_key_is_harmless():
    conns = LimitConn(LimitConnSettings(max=1))
    conns.release("ghost")
    assert conns.active("ghost") == 0 and conns.acquire("ghost") and not conns.acquire("ghost")


def test_limit_conn_with_header_keys():
    conns = LimitConn(LimitConnSettings(max=1, key="header:X-User"))
    alice = key_of(conns.settings.key, "10.0.0.1", [("x-user", "alice")])
    anonymous = key_of(conns.settings.key, "10.0.0.1", [])
    assert conns.acquire(alice) and not conns.acquire(alice)
    assert conns.acquire(anonymous) and conns.acquire(anonymous)
