"""InlineCalls decides which routes the event worker runs on its loop: learned from calls timed in threads,
sent back by a call on the loop that was slow and waited (server/inline_calls.py)."""

from __future__ import annotations

import time

from wsgistack.server.inline_calls import LEARN, MAX_STRIKES, ROUTES, InlineCalls

HELLO = ("GET", "/hello")
QUICK, SLOW = 20e-6, 1e-3


def _window(calls: InlineCalls, key=HELLO, quick: int = LEARN, slow: int = 0) -> None:
    """One window of LEARN calls in threads: `quick` quick ones, `slow` slow ones, the rest in between."""
    for index in range(LEARN):
        calls.threaded_call(key, 5e-6 if index < quick else 2e-3 if index < quick + slow else 100e-6)


def _slow_loop_call(calls: InlineCalls, key=HELLO) -> None:
    before = InlineCalls.waits()
    time.sleep(0.002)  # a real wait: the thread gives up the CPU, as a blocking call does
    calls.loop_call(key, 0.002, before)


def test_a_route_runs_on_the_loop_after_a_window_of_quick_calls():
    calls = InlineCalls(QUICK, SLOW)
    assert not calls.on_loop(HELLO)
    for _ in range(LEARN - 1):
        calls.threaded_call(HELLO, 5e-6)
    assert not calls.on_loop(HELLO)  # a window is LEARN calls
    calls.threaded_call(HELLO, 5e-6)
    assert calls.on_loop(HELLO)
    assert not calls.on_loop(("GET", "/other"))


def test_three_quick_calls_in_four_make_a_window_and_one_slow_call_spoils_it():
    calls = InlineCalls(QUICK, SLOW)
    _window(calls, quick=LEARN * 3 // 4 - 1)
    assert not calls.on_loop(HELLO)
    _window(calls, quick=LEARN - 1, slow=1)
    assert not calls.on_loop(HELLO)
    _window(calls, quick=LEARN * 3 // 4)
    assert calls.on_loop(HELLO)


def test_a_slow_call_that_waited_sends_the_route_back_for_twice_as_many_windows_each_time():
    calls = InlineCalls(QUICK, SLOW)
    _window(calls)
    for strikes in range(1, MAX_STRIKES + 2):
        _slow_loop_call(calls)
        assert not calls.on_loop(HELLO)
        for _ in range((1 << min(strikes, MAX_STRIKES)) - 1):
            _window(calls)
        assert not calls.on_loop(HELLO)
        _window(calls)
        assert calls.on_loop(HELLO)
    assert calls.sent_back == MAX_STRIKES + 1


def test_a_loop_call_that_was_quick_or_never_waited_keeps_the_route_on_the_loop():
    calls = InlineCalls(QUICK, SLOW)
    _window(calls)
    calls.loop_call(HELLO, SLOW / 2, InlineCalls.waits() - 1)  # waited, but quick
    before = InlineCalls.waits()
    deadline = time.monotonic() + 0.002
    while time.monotonic() < deadline:  # 2 ms on the CPU: slow, but it never waited
        pass
    calls.loop_call(HELLO, 0.002, before)
    assert calls.on_loop(HELLO) and calls.sent_back == 0


def test_the_table_of_routes_is_bounded():
    calls = InlineCalls(QUICK, SLOW)
    for number in range(ROUTES * 3):
        calls.threaded_call(("GET", f"/user/{number}"), 5e-6)
    assert len(calls.routes) <= ROUTES
