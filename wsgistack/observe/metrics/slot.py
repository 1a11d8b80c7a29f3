"""A process's metrics in shared memory: one writer (the child that counts), one reader (its master).

The master creates the slot before the fork. The child adds a series by writing its key entry (family,
label values, where its numbers are) and only then the series count, so the master, which reads the count
first, never reads a half-written entry; numbers are aligned 8-byte stores, as the heartbeat's. Counts are
written in place, so what a child counted is still there after it died, however it died: the master folds
it into its totals at the reap (registry.py).

Layout: a header (the series count), MAX_SERIES key entries of KEY_BYTES, then the numbers (doubles).
"""

from __future__ import annotations

import mmap
import struct

from wsgistack.observe.metrics.families import OTHER, Family

MAX_SERIES = 1024
VALUE_COUNT = 32768  # doubles: 256 KiB, touched (and so allocated) only as far as series use them
KEY_BYTES = 128
_ENTRY = struct.Struct("<HHI")  # family index, key length, first number's index
KEY_MAX = KEY_BYTES - _ENTRY.size
_HEADER = 64
_SEPARATOR = "\x1f"

Series = tuple[Family, tuple[str, ...], list[float]]


class MetricSlot:
    """Shared memory for one process's series of `families` (the writer and reader agree on that tuple)."""

    def __init__(self, families: tuple[Family, ...]):
        self.families = families
        self._index = {family: i for i, family in enumerate(families)}
        self._memory = mmap.mmap(-1, _HEADER + MAX_SERIES * KEY_BYTES + VALUE_COUNT * 8)
        view = memoryview(self._memory)
        self._count = view[:8].cast("d")
        self._keys = view[_HEADER:_HEADER + MAX_SERIES * KEY_BYTES]
        self.values = view[_HEADER + MAX_SERIES * KEY_BYTES:].cast("d")
        self._views = (view, self._count, self._keys, self.values)
        self._offsets: dict[tuple[Family, tuple[str, ...]], int] = {}  # the writer's
        self._used = 0  # the writer's: numbers given out
        self._known: list[tuple[Family, tuple[str, ...], int]] = []  # the reader's: entries parsed so far

    # -- the writer (the child) ------------------------------------------------------------------------

    def offset(self, family: Family, labels: tuple[str, ...] = ()) -> int:
        """Where the numbers of `family` with these label values start; the series is added if new. A full
        slot, or label values too long for a key, fold into the family's series whose values are _OTHER."""
        found = self._offsets.get((family, labels))
        if found is not None:
            return found
        key = _SEPARATOR.join(labels).encode("utf-8", "replace")
        room = len(self._offsets) < MAX_SERIES - len(self.families) and \
            self._used + family.width <= VALUE_COUNT - len(self.families) * _widest(self.families)
        if len(key) > KEY_MAX or not room:
            other = (OTHER,) * len(labels)
            if labels == other:  # only reachable for a family whose overflow series is not there yet
                return self._add(family, labels, key[:KEY_MAX])
            at = self._offsets.get((family, other))
            return at if at is not None else self._add(family, other, _SEPARATOR.join(other).encode())
        return self._add(family, labels, key)

    def _add(self, family: Family, labels: tuple[str, ...], key: bytes) -> int:
        number = len(self._offsets)
        start = number * KEY_BYTES
        entry = _ENTRY.pack(self._index[family], len(key), self._used) + key
        self._keys[start:start + len(entry)] = entry
        at = self._used
        self._used += family.width
        self._offsets[(family, labels)] = at
        self._count[0] = number + 1  # last: the entry above is whole before the reader can see it
        return at

    # -- the reader (the master) -----------------------------------------------------------------------

    def read(self) -> list[Series]:
        """Every series the child added, with a copy of its numbers as they are now."""
        count = int(self._count[0])
        keys = self._keys
        for number in range(len(self._known), min(count, MAX_SERIES)):
            start = number * KEY_BYTES
            index, length, at = _ENTRY.unpack_from(keys, start)
            raw = bytes(keys[start + _ENTRY.size:start + _ENTRY.size + length]).decode("utf-8", "replace")
            family = self.families[index]
            labels = tuple(raw.split(_SEPARATOR)) if family.labels else ()
            self._known.append((family, labels, at))
        values = self.values
        return [(family, labels, values[at:at + family.width].tolist()) for family, labels, at in self._known]

    def close(self) -> None:
        """Release the shared memory (the master, once it folded what the child counted)."""
        for view in reversed(self._views):
            view.release()
        self._memory.close()


def _widest(families: tuple[Family, ...]) -> int:
    return max(family.width for family in families)
