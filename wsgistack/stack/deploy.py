"""`wsgistack deploy`: a new generation of an app server beside the old one, switched to only once it proved
itself, and the old one drained; anything else stops the new one, and the old one never stopped serving.

The steps, in the supervisor of `wsgistack up` (the client only asks and prints the outcome):
1. start the next generation (new code, a new virtualenv with --python, a release folder with --chdir) on a
   socket of its own, as process NAME:next; it must import and pass its health check (the readiness check of
   its program) within the timeout;
2. a smoke request (GET --smoke-path, "/" by default) must answer below 500;
3. turn the link the proxy connects to, so new connections reach the new generation;
4. watch it for --watch seconds (3 by default): a probe of the smoke path every tenth of a second; more than a tenth of
   them answered 5xx (or not at all) turns the link back and stops the new generation;
5. stop the old generation (SIGTERM: it stops accepting and answers what it holds and what waits in its
   backlog), and the new one takes the program's name.
The supervisor's pid never changes; `--rollback` runs the previous generation's settings again, the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping

from wsgistack.stack.compose import Generation, Stack
from wsgistack.supervisor.control import CommandError
from wsgistack.supervisor.process import Process
from wsgistack.supervisor.readiness import http_status
from wsgistack.supervisor.runtime import Supervisor
from wsgistack.supervisor.states import STOPPED_STATES, ProcessState

log = logging.getLogger("wsgistack.supervisor")
CANDIDATE = "next"  # the process name of a generation being tried, in its app server's group
_PROBE_EVERY = 0.1
_MAX_BAD_SHARE = 0.1  # probes answered 5xx or not at all, of those made while watching, that fail a deploy
_OPTIONS = {"python", "chdir", "smoke_path", "watch", "timeout", "rollback"}
HISTORY = 50  # deploys kept for the dashboard (Supervisor.deploys)


class DeployFailed(Exception):
    """Why a generation was not switched to (or was switched back from)."""


class Deployer:
    """Generations of the app servers of one running stack, and the deploys between them."""

    def __init__(self, stack: Stack, supervisor: Supervisor):
        self.stack = stack
        self.supervisor = supervisor
        self.current = {server.name: Generation() for server in stack.servers}
        self.previous: dict[str, Generation] = {}
        self.busy: set[str] = set()

    async def command(self, *args: str) -> dict[str, str]:
        """The control socket's `deploy [NAME] [KEY=VALUE...]` (rollback=yes among the options, so an app server
        may be called anything)."""
        names = [arg for arg in args if "=" not in arg]
        options = dict(arg.split("=", 1) for arg in args if "=" in arg)
        unknown = set(options) - _OPTIONS
        if unknown:
            raise CommandError(f"deploy: unknown option {min(unknown)!r}")
        if self.stack.proxy is None:
            raise CommandError("deploy needs a [proxy] in front of the app server: without one, the app server "
                               "listens itself and `ctl restart` (or HUP) is the way to reload it")
        if len(names) > 1:
            raise CommandError("deploy one app server at a time")
        name = names[0] if names else self.stack.servers[0].name
        if name not in self.current:
            raise CommandError(f"no app server named {name!r} (known: {', '.join(self.current)})")
        if name in self.busy:
            raise CommandError(f"{name}: a deploy is already under way")
        try:
            watch = float(options.get("watch", 3.0))
            timeout = float(options.get("timeout", 60.0))
        except ValueError:
            raise CommandError("deploy: watch and timeout are seconds") from None
        smoke_path = options.get("smoke_path", "/")
        if not smoke_path.startswith("/"):
            raise CommandError(f"deploy: the smoke path must start with '/' (got {smoke_path!r})")
        if options.get("rollback") == "yes":
            if name not in self.previous:
                raise CommandError(f"{name}: no previous generation to roll back to")
            target = dataclasses.replace(self.previous[name], number=self._next_number(name))
        else:
            current = self.current[name]
            target = Generation(self._next_number(name), options.get("python") or current.python,
                                options.get("chdir") or current.chdir)
        self.busy.add(name)
        record = {"app": name, "generation": target.number, "started": time.time(), "seconds": 0.0,
                  "rollback": options.get("rollback") == "yes", "outcome": "deploying"}
        self.supervisor.deploys[:] = self.supervisor.deploys[-(HISTORY - 1):] + [record]
        try:
            await self._deploy(name, target, smoke_path, watch, timeout)
            record["outcome"] = "serving"
        except DeployFailed as exc:
            record["outcome"] = f"failed: {exc}"
            raise CommandError(f"{name}: generation {target.number} not deployed: {exc}; generation "
                               f"{self.current[name].number} keeps serving") from None
        finally:
            record["seconds"] = round(time.time() - record["started"], 1)
            self.busy.discard(name)
        return {name: f"generation {target.number} serving (pid {self._process(name).pid}); generation "
                      f"{self.previous[name].number} stopped"}

    def generations(self) -> Mapping[str, Generation]:
        """What runs now, for a re-read of the config (reread/update keep the generations)."""
        return dict(self.current)

    # -- the steps -------------------------------------------------------------------------------------

    def _next_number(self, name: str) -> int:
        return max(self.current[name].number, self.previous.get(name, Generation(0)).number) + 1

    def _process(self, name: str) -> Process:
        return self.supervisor.processes[f"{name}:{name}"]

    async def _deploy(self, name: str, target: Generation, smoke_path: str, watch: float, timeout: float) -> None:
        server = self.stack.server(name)
        settings = self.stack.app_program(server, target)
        old = self._process(name)
        if old.state != ProcessState.RUNNING:
            raise DeployFailed(f"the serving generation is {old.state.name}, not RUNNING: start it first")
        candidate = self.supervisor.add_process(dataclasses.replace(
            settings, name=CANDIDATE, startretries=0, autorestart="false",
            ready=dataclasses.replace(settings.ready, timeout=timeout) if settings.ready else None))
        log.info("%s: deploying generation %s (%s)", name, target.number, " ".join(settings.command))
        try:
            await self._until_started(candidate, timeout)
            url = f"http://unix:{self.stack.socket(name, target.number)}:{smoke_path}"
            protocol = server.settings.protocol  # http, or uwsgi/fastcgi behind engine = "nginx"
            status = await http_status(url, timeout=min(timeout, 30.0), protocol=protocol)
            if status is None or status >= 500:
                raise DeployFailed(f"the smoke request GET {smoke_path} answered "
                                   f"{status if status is not None else 'nothing'}")
            self.stack.point_to(name, target.number)
            try:
                await self._watch(url, protocol, watch, candidate)
            except DeployFailed:
                self.stack.point_to(name, self.current[name].number)
                raise
        except BaseException:
            candidate.stop()
            await self.supervisor.until_stopped([candidate])
            self.supervisor.remove_process(candidate)
            raise
        old.stop()
        await self.supervisor.until_stopped([old])
        self.supervisor.remove_process(old)
        self.supervisor.rename_process(candidate, settings)
        self.previous[name], self.current[name] = self.current[name], target
        log.info("%s: generation %s serving, generation %s stopped", name, target.number,
                 self.previous[name].number)

    async def _until_started(self, candidate: Process, timeout: float) -> None:
        """RUNNING (imported, health passed), or DeployFailed with the reason and its last output line."""
        deadline = time.monotonic() + timeout + 5
        while candidate.state in (ProcessState.STARTING, ProcessState.STOPPED) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if candidate.state == ProcessState.RUNNING:
            return
        reason = candidate.fatal_reason or candidate.spawn_error or f"it is {candidate.state.name}"
        if candidate.state not in STOPPED_STATES and candidate.state != ProcessState.BACKOFF:
            reason = f"not ready within {timeout:g}s"
        said = _last_line(bytes(candidate.stdout.recent))
        raise DeployFailed(f"{reason}{f' (it said: {said})' if said else ''}")

    async def _watch(self, url: str, protocol: str, seconds: float, candidate: Process) -> None:
        """Probe the new generation for `seconds`; DeployFailed when too many probes fail or it exits."""
        bad = made = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if candidate.state != ProcessState.RUNNING:
                raise DeployFailed(f"it exited while watched ({candidate.state.name})")
            status = await http_status(url, protocol=protocol)
            made += 1
            if status is None or status >= 500:
                bad += 1
            await asyncio.sleep(_PROBE_EVERY)
        if made and bad / made > _MAX_BAD_SHARE:
            raise DeployFailed(f"{bad} of {made} probes in its first {seconds:g}s answered 5xx or nothing")


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
