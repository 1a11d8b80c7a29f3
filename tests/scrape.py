"""Reading a /metrics endpoint in the tests: one GET over TCP or a unix socket, parsed with prometheus_client's
own parser, and sums over the samples that match some labels."""

from __future__ import annotations

import socket
import time

from prometheus_client.parser import text_string_to_metric_families


def get(address: str, target: str = "/metrics", accept: str = "", raw: bytes | None = None,
        timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased fields, body) of one request to `address` (unix:PATH or HOST:PORT)."""
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address[5:])
    else:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    with sock:
        fields = f"Accept: {accept}\r\n" if accept else ""
        sock.sendall(raw if raw is not None else f"GET {target} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), found, body


class Scrape:
    """One scrape's samples, and how long it took."""

    def __init__(self, address: str):
        started = time.monotonic()
        status, _, body = get(address)
        self.seconds = time.monotonic() - started
        assert status == 200, body
        self.text = body.decode()
        self.samples = [sample for family in text_string_to_metric_families(self.text) for sample in family.samples]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels`."""
        return sum(sample.value for sample in self.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    def labels(self, name: str, label: str) -> set[str]:
        """The values `label` takes among the samples named `name`."""
        return {sample.labels[label] for sample in self.samples if sample.name == name and label in sample.labels}
