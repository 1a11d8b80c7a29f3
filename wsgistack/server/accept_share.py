"""Fair shares of the listen queue: each event worker's open connections, in memory the master shares with
every worker, so that a worker far ahead of its siblings leaves the next connections to them.

Why: the workers wait on one listening socket, and a worker that wakes takes what is queued. A burst of
keep-alive connects (a load tester's, a proxy filling its upstream pool) could all land on the first worker
to wake: measured with wrk's 64 connections on 2 workers, splits went as far as 64/0, and then one core
served everything at half the throughput. With shares, the worst split seen was 22/42.

The board is one anonymous shared page made by the master before any fork. Per worker slot: its open
connections (or IDLE while it accepts nothing) and how many it ever accepted. Each value is one aligned
8-byte store or load through a memoryview (never struct.pack_into, which clears before it writes), so a
reader sees either the old value or the new one.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable

SLOTS = 256  # workers beyond this many accept without a share (never seen: a worker is a process)
FREE = -2  # no worker holds the slot
IDLE = -1  # a worker holds it but accepts nothing (booting or stopping)
_HIGH = 0  # index of the value saying how many slots were ever handed out (readers scan no further)


PAUSE = 0.001  # how long a worker ahead of its siblings leaves the queue to them before it looks again
# siblings that took nothing for this long are stuck (or the system did not run them): the worker takes
# over. Not sooner: a keep-alive connection stays where it lands, and on a busy machine a sibling may wait
# several time slices (milliseconds each) to run; a stall that short must not decide where a burst goes.
STUCK = 0.05
# waits less than this apart are one episode of waiting (STUCK counts within one); a wait after the worker
# accepted freely for longer starts afresh, so a sibling stuck long ago counts for nothing now
EPISODE_GAP = 0.01
TAKE_OVER_MOST = 64  # connections taken at once from stuck siblings, at most
# how often a worker compares its keep-alive connections with its siblings' to hand some over (see
# AcceptPacer.rebalance): once a beat, so the connections it gave up have landed before it looks again
REBALANCE_EVERY = 1.0


def slack(mine: int) -> int:
    """How far a worker may be ahead of the least loaded sibling before it waits: never for a few
    connections (short ones come and go: a wait would leave a worker idle), a quarter of its load beyond."""
    return max(8, mine // 4)


def wide_slack(mine: int) -> int:
    """The thread worker's: its load counts the connections waiting for an app thread, which come and go
    with every short request. Measured with close-per-request traffic (`-k thread -w 2`, Flask hello, wrk
    c16, Dec 1, interleaved with the code before shares): with slack() the waits over that churn cost
    5.1k req/s against 5.6k (medians of 6); with this one, 5.5k against 5.4k (medians of 8)."""
    return max(16, mine // 2)


class AcceptBoard:
    """The master's side: hands a slot to each worker it forks, takes it back when the worker is reaped."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 8 * (1 + 2 * SLOTS))
        self.values = memoryview(self._memory).cast("q")
        for slot in range(SLOTS):
            self.values[1 + 2 * slot] = FREE
        self.values[_HIGH] = 0

    def claim(self) -> int | None:
        """A free slot for a worker about to be forked (IDLE until it accepts); None when all are taken."""
        values = self.values
        for slot in range(SLOTS):
            if values[1 + 2 * slot] == FREE:
                values[1 + 2 * slot] = IDLE
                values[2 + 2 * slot] = 0
                values[_HIGH] = max(values[_HIGH], slot + 1)
                return slot
        return None

    def release(self, slot: int) -> None:
        """The worker holding the slot is gone."""
        self.values[1 + 2 * slot] = FREE

    def share(self, slot: int | None) -> AcceptShare | None:
        """The worker's side of its slot."""
        return None if slot is None else AcceptShare(self.values, slot)

    def close(self) -> None:
        """Release the shared page (the master, at exit)."""
        self.values.release()
        self._memory.close()


class AcceptShare:
    """A worker's side: says how loaded it is, and whether it is so far ahead that it should wait."""

    def __init__(self, values: memoryview, slot: int):
        self.values = values
        self.open_at = 1 + 2 * slot
        self.accepted_at = 2 + 2 * slot

    def publish(self, open_now: int, accepted: int) -> None:
        """This worker holds `open_now` connections and accepted `accepted` since it started."""
        self.values[self.open_at] = open_now
        self.values[self.accepted_at] = accepted

    def stop(self) -> None:
        """This worker accepts no more: its siblings stop measuring themselves against it."""
        self.values[self.open_at] = IDLE

    def ahead(self, mine: int, slack_of: Callable[[int], int] = slack) -> bool:
        """Whether `mine` open connections are more than slack_of(mine) above the least loaded accepting
        sibling."""
        least = self.least_other()
        return least >= 0 and mine > least + slack_of(mine)

    def least_other(self) -> int:
        """The open connections of the least loaded accepting sibling; -1 when none accepts."""
        values = self.values
        least = -1
        for at in range(1, 1 + 2 * values[_HIGH], 2):
            if at != self.open_at and values[at] >= 0 and (least < 0 or values[at] < least):
                least = values[at]
        return least

    def others_accepted(self) -> int:
        """Connections every sibling ever accepted: it grows while they take from the queue."""
        values = self.values
        return sum(values[at + 1] for at in range(1, 1 + 2 * values[_HIGH], 2)
                   if at != self.open_at and values[at] != FREE)


class AcceptPacer:
    """The fair-share policy of one worker's accept loop, whatever runs it (server/loop_acceptor.py on an
    asyncio loop, the thread worker on its selector): before each accept, whether to take the connection or
    to leave the queue to the siblings for PAUSE; after each such wait, whether they look stuck.

    Stuck siblings (they took nothing for STUCK seconds) are taken over from: 1 connection, then twice as
    many after each further wait, so a queue never waits long on them.

    Shares decide only where a connection lands, and a keep-alive connection stays there. A worker that
    took connections while its sibling could not (the sibling still importing the app at start-up, or
    replaced after --max-requests) would keep them all: measured on a cold start, wrk's 64 connections all
    on one of 2 workers in 2 of 4 runs, at half the throughput. So a worker far ahead hands some over
    (rebalance): its next responses say `Connection: close`, and the client's new connection goes to the
    sibling, since this worker, still ahead, leaves the queue to it.
    """

    def __init__(self, share: AcceptShare, slack_of: Callable[[int], int] = slack):
        self.share = share
        self.slack_of = slack_of  # how far ahead of the least loaded sibling the worker may be
        self.others_before = 0  # the siblings' accepted total when this worker began to wait
        self.stuck_since: float | None = None
        self.waited_until = 0.0  # monotonic: when the last wait ended
        self.unshared = 0  # connections still to take whatever the shares say (a take-over in progress)
        self.unshared_next = 1
        self.to_hand_over = 0  # keep-alive connections still to close after their response (rebalance)
        self.rebalanced_at = 0.0

    def may_accept(self, load: int) -> bool:
        """Before an accept, with the worker's `load` (open connections): take it, or wait?"""
        if self.unshared > 0:
            self.unshared -= 1
            return True
        return not self.ahead(load)

    def ahead(self, load: int) -> bool:
        """Whether a worker holding `load` connections is far enough ahead of a sibling to wait."""
        return self.share.ahead(load, self.slack_of)

    def rebalance(self, load: int) -> None:
        """At most once per REBALANCE_EVERY (call it as often as convenient): when `load` is more than the
        slack ahead of the least loaded sibling, hand half the difference over. Half: the sibling gains
        what this worker gives, so the two meet in the middle rather than swap places."""
        now = time.monotonic()
        if now - self.rebalanced_at < REBALANCE_EVERY:
            return
        self.rebalanced_at = now
        least = self.share.least_other()
        ahead = least >= 0 and load > least + self.slack_of(load)
        self.to_hand_over = (load - least) // 2 if ahead else 0

    def keeps_connection(self) -> bool:
        """Whether a response may keep its connection open; False while connections are being handed over.
        App threads ask too: two at once may hand over one more than due, which the next look corrects."""
        if self.to_hand_over <= 0:
            return True
        self.to_hand_over -= 1
        return False

    def begin_wait(self) -> None:
        """The worker leaves the queue alone for a while."""
        if time.monotonic() - self.waited_until > EPISODE_GAP:
            self.stuck_since = None
            self.unshared_next = 1
        self.others_before = self.share.others_accepted()

    def end_wait(self) -> bool:
        """The wait is over: True when the siblings took nothing for STUCK seconds (take_over is due)."""
        now = time.monotonic()
        self.waited_until = now
        if self.share.others_accepted() != self.others_before:
            self.stuck_since = None
            self.unshared_next = 1
        elif self.stuck_since is None:  # busy siblings, or an empty queue
            self.stuck_since = now
        elif now - self.stuck_since >= STUCK:
            return True
        return False

    def take_over(self) -> None:
        """The next `unshared_next` accepts are taken whatever the shares say (the caller makes them now:
        an allowance left over would take a burst that came when the siblings are well again)."""
        self.unshared = self.unshared_next
        self.unshared_next = min(2 * self.unshared_next, TAKE_OVER_MOST)

    def took_over(self, taken: int) -> None:
        """The take-over's accepts are made: `taken` connections."""
        self.unshared = 0
        if not taken:  # the queue was empty: nobody was stuck
            self.stuck_since = None
            self.unshared_next = 1
