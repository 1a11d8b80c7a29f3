"""The event worker's accept, in process: a real listening socket with clients queued in the kernel, a real
loop, and a sibling worker played through its slot on a real AcceptBoard. A worker far ahead of its
siblings leaves the queue to them; siblings that take nothing do not hold the queue up for long."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator

import pytest

from wsgistack.event_loop import new_event_loop
from wsgistack.server.accept_share import FREE, IDLE, REBALANCE_EVERY, STUCK, AcceptBoard, AcceptShare, slack
from wsgistack.server.loop_acceptor import RESOURCE_PAUSE, LoopAcceptor

QUEUED = 40


class Setup:
    """One acceptor ("this worker") and its sibling's slot, over a listener with QUEUED clients waiting."""

    def __init__(self, listener: socket.socket, clients: list[socket.socket]):
        self.loop = new_event_loop()
        self.board = AcceptBoard()
        self.adopted: list[socket.socket] = []
        self.listener = listener
        self.clients = clients
        mine = self.board.claim()
        self.sibling: AcceptShare = self.board.share(self.board.claim())  # type: ignore[assignment]
        self.sibling.publish(0, 0)
        self.acceptor = LoopAcceptor(self.loop, [listener], lambda conn, _listening: self.adopted.append(conn),
                                     lambda: len(self.adopted), self.board.share(mine))
        self.acceptor.start()

    def accept_round(self) -> int:
        """What one wake-up of the loop on the listener takes."""
        before = len(self.adopted)
        self.acceptor._readable(self.listener)
        return len(self.adopted) - before

    def wait_over(self) -> None:
        """The wait's timer fires (run by hand: the test decides what the sibling did meanwhile)."""
        handle = self.acceptor.resume_handle
        assert handle is not None, "the acceptor is not waiting"
        handle.cancel()
        self.acceptor._resume()

    def close(self) -> None:
        for sock in self.adopted + self.clients:
            sock.close()
        self.listener.close()
        self.loop.close()
        self.board.close()


@pytest.fixture
def setup() -> Iterator[Setup]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(QUEUED)]
    made = Setup(listener, clients)
    yield made
    made.close()


def test_a_worker_leaves_the_queue_to_a_sibling_once_it_is_ahead(setup):
    # the sibling holds none: this worker takes slack() + 1, then stops listening for a moment
    assert setup.accept_round() == slack(0) + 1
    assert not setup.acceptor.listening and setup.acceptor.resume_handle is not None
    # meanwhile the sibling took 9: this worker may go on to slack() above that, no further
    setup.sibling.publish(9, 9)
    setup.wait_over()
    assert setup.acceptor.listening
    taken = setup.accept_round()
    assert len(setup.adopted) == 9 + slack(len(setup.adopted)) + 1, taken
    assert not setup.acceptor.listening


def test_siblings_that_take_nothing_do_not_hold_the_queue_up(setup):
    first = setup.accept_round()
    # the sibling takes nothing: for STUCK seconds this worker only looks again ...
    setup.wait_over()
    assert setup.accept_round() == 0
    # ... then takes over: one connection, then twice as many after each further wait
    setup.acceptor.pacer.stuck_since -= STUCK
    taken = []
    for _ in range(4):
        before = len(setup.adopted)
        setup.wait_over()
        taken.append(len(setup.adopted) - before)
        assert not setup.acceptor.listening  # ahead still: waiting again
    assert taken == [1, 2, 4, 8]
    # once the sibling takes connections again, the shares count from the start
    setup.sibling.publish(30, 30)
    setup.wait_over()
    assert setup.acceptor.pacer.stuck_since is None and setup.acceptor.pacer.unshared_next == 1
    assert setup.acceptor.listening and len(setup.adopted) == first + 15


def test_a_sibling_stuck_long_ago_counts_for_nothing_now(setup):
    setup.accept_round()
    setup.wait_over()
    setup.accept_round()
    setup.acceptor.pacer.stuck_since -= STUCK
    setup.wait_over()
    assert setup.acceptor.pacer.unshared_next == 2  # an episode of taking over, then the worker accepts freely
    setup.acceptor.pacer.waited_until -= 1.0  # ... for a second
    setup.sibling.publish(0, 0)  # the sibling's connections closed meanwhile (it took none)
    before = len(setup.adopted)
    setup.accept_round()  # ahead again: waits, and the new wait knows nothing of the old one
    assert len(setup.adopted) == before and setup.acceptor.resume_handle is not None
    assert setup.acceptor.pacer.stuck_since is None and setup.acceptor.pacer.unshared_next == 1
    setup.wait_over()
    assert len(setup.adopted) == before  # no take-over at once: the sibling gets its STUCK seconds


def test_a_take_over_that_finds_the_queue_empty_leaves_nothing_for_later(setup):
    for client in setup.clients[slack(0) + 1:]:  # all but what the first round takes give up
        client.close()
    setup.accept_round()
    while True:  # the queue's remains are connections closed by their clients: accept and drop them
        try:
            setup.listener.accept()[0].close()
        except BlockingIOError:
            break
    setup.wait_over()  # no sibling took one (there was none to take): from now on, stuck or idle?
    assert setup.accept_round() == 0  # a wake-up (the loop's, for a connection gone meanwhile): waits
    setup.acceptor.pacer.stuck_since -= STUCK
    setup.wait_over()
    assert setup.acceptor.listening and setup.acceptor.pacer.unshared == 0
    assert setup.acceptor.pacer.stuck_since is None and setup.acceptor.pacer.unshared_next == 1


def test_a_closed_connection_ends_the_wait_once_the_worker_is_no_longer_ahead(setup):
    setup.accept_round()
    assert setup.acceptor.resume_handle is not None
    setup.adopted.pop().close()
    setup.acceptor.closed_one()  # 8 left, still more than slack() above the sibling's 0? no: 8 == 0 + 8
    assert setup.acceptor.listening and setup.acceptor.resume_handle is None
    # and the slot says what is left, for the siblings
    assert setup.board.values[setup.acceptor.share.open_at] == len(setup.adopted)


def test_a_stopped_worker_is_no_measure_for_its_siblings(setup):
    setup.accept_round()
    setup.acceptor.stop()
    assert not setup.acceptor.listening and setup.acceptor.resume_handle is None
    assert setup.board.values[setup.acceptor.share.open_at] == IDLE
    # the sibling, alone now, is never "ahead", however many it holds
    assert not setup.sibling.ahead(1000)


def kept(acceptor: LoopAcceptor, responses: int) -> list[bool]:
    """Whether each of the next `responses` responses keeps its connection."""
    return [acceptor.keeps_connection() for _ in range(responses)]


def test_a_worker_far_ahead_hands_half_the_difference_over(setup):
    setup.adopted.extend(socket.socket() for _ in range(31))  # this worker holds 31, the sibling 3
    setup.sibling.publish(3, 3)
    setup.acceptor.rebalance()
    # 31 > 3 + slack(31): (31 - 3) // 2 = 14 responses say Connection: close, the ones after keep theirs
    assert kept(setup.acceptor, 16) == [False] * 14 + [True] * 2
    # the next look comes a beat later, and finds the two even (the clients went to the sibling)
    setup.acceptor.pacer.rebalanced_at -= REBALANCE_EVERY
    while len(setup.adopted) > 17:
        setup.adopted.pop().close()
    setup.sibling.publish(17, 17)
    setup.acceptor.rebalance()
    assert all(kept(setup.acceptor, 20))


def test_a_look_within_the_beat_hands_nothing_more_over(setup):
    setup.acceptor.rebalance()  # the sibling holds none, nor this worker
    setup.adopted.extend(socket.socket() for _ in range(20))
    setup.acceptor.rebalance()  # soon after: not looked at again, though 20 > 0 + slack(20)
    assert all(kept(setup.acceptor, 20))


def test_no_hand_over_within_the_slack_nor_to_a_sibling_that_does_not_accept(setup):
    setup.adopted.extend(socket.socket() for _ in range(10))
    setup.sibling.publish(2, 2)
    setup.acceptor.rebalance()  # 10 is not more than 2 + slack(10) = 10
    assert all(kept(setup.acceptor, 10))
    setup.adopted.extend(socket.socket() for _ in range(20))
    setup.sibling.stop()  # booting or stopping: it would take none of them
    setup.acceptor.pacer.rebalanced_at -= REBALANCE_EVERY
    setup.acceptor.rebalance()
    assert all(kept(setup.acceptor, 30))


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EPERM], ids=["EMFILE", "EPERM"])
def test_a_failing_accept_waits_and_warns_once(setup, caplog, code):
    class Exhausted(socket.socket):
        def accept(self):
            raise OSError(code, os.strerror(code))

    exhausted = Exhausted(fileno=os.dup(setup.listener.fileno()))
    try:
        with caplog.at_level(logging.WARNING, logger="wsgistack.server"):
            setup.acceptor._readable(exhausted)
            handle = setup.acceptor.resume_handle
            assert not setup.acceptor.listening and handle is not None
            assert handle.when() - setup.loop.time() == pytest.approx(RESOURCE_PAUSE, abs=0.05)
            setup.wait_over()
            setup.acceptor._readable(exhausted)
    finally:
        exhausted.close()
    warnings = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert warnings == [f"cannot accept connections: {os.strerror(code)} (they wait in the listen queue)"]
    assert setup.adopted == []


def test_the_board_hands_out_slots_and_takes_them_back():
    board = AcceptBoard()
    try:
        first, second = board.claim(), board.claim()
        assert (first, second) == (0, 1)
        a, b = board.share(first), board.share(second)
        assert not a.ahead(100)  # both IDLE: no sibling accepts, so nobody is ahead of one
        b.publish(3, 7)
        assert a.ahead(3 + slack(12) + 1) and not a.ahead(3 + slack(11))
        assert a.others_accepted() == 7
        board.release(second)
        assert board.values[b.open_at] == FREE
        assert not a.ahead(100) and a.others_accepted() == 0
        assert board.claim() == second  # a freed slot is handed out again, with its count cleared
        assert a.others_accepted() == 0
    finally:
        board.close()
