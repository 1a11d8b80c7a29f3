"""Metrics: what every process of the stack counts, and the one place they become Prometheus text.

A forking master (the server's arbiter, the proxy's master) gives each child a slot of shared memory
(slot.py) before the fork; the child counts into it with plain memory writes, no system call per request.
The master reads the live slots when scraped and folds a dead child's slot into its totals (registry.py),
so nothing a child counted is lost or counted twice, however many children came and went.
"""
