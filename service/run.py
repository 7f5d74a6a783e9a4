"""`fsgs-kb serve`: check everything the workers will need, then hand over to uvicorn.

The configuration, the knowledge base, the FHIR map and the decision log are all opened once
here first, so a mistake is one clear line and exit 2 instead of workers dying at start-up. The
web packages are the optional extra `cds`; without them the command says how to install them.
Uvicorn loads the application by its import string in each worker (the only way it can start
several), with the configuration file's path in the environment.

A stop (SIGINT, SIGTERM) is a clean shutdown (in-flight calls finish and are logged), then exit
130 or 143 as `fsgs-kb --help` says, with no error line: a stop that was asked for is no error.
Uvicorn alone did otherwise: one worker re-raised the signal after shutting down (SIGTERM: killed
by it; SIGINT: KeyboardInterrupt, printed as `error[cli.interrupted]`), several exited 0. Here the
signal is recorded by a handler of ours: one worker's uvicorn restores it and re-raises into it,
and the supervisor of several has its handlers wrapped. A stop signal ignored when the command
started (a shell's background job ignores SIGINT) stays ignored, as for `batch`
(engine/batch/job.py), in the supervisor and in each worker (`ignore_inherited`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir import FhirMapError, default_map_path, load_map
from fsgs_kb.engine.kb import load
from fsgs_kb.service.config import ServiceConfig
from fsgs_kb.service.decisionlog import DecisionLog

CONFIG_ENV = "FSGS_KB_CDS_CONFIG"
APP = "fsgs_kb.service.app:create_app"
WIRE = "fsgs_kb.service.wire"  # what the server answers a request h11 cannot parse
UVWORKER = "fsgs_kb.service.uvworker"  # uvicorn's settings, keeping ignored stop signals ignored in workers
EXTRA = ("starlette", "uvicorn", "jwt", "cryptography", "httpx")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
IGNORED_ENV = "FSGS_KB_CDS_IGNORED_SIGNALS"  # the stop signals ignored when the command started


def ignore_inherited() -> None:
    """In a worker: ignore again the stop signals the command was started with ignored (uvicorn
    handles both in each worker, whatever they were). Called from the app factory, which uvicorn
    calls in the main thread once its handlers are in place."""
    for name in filter(None, os.environ.get(IGNORED_ENV, "").split(",")):
        signal.signal(int(name), signal.SIG_IGN)


class Stops:
    """The stop signals received, first one first: the exit status is 128 + the first."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.ignored = [s for s in STOP_SIGNALS if signal.getsignal(s) is signal.SIG_IGN]

    def note(self, signum: int, frame: Any) -> None:
        self.received.append(signum)

    def install(self) -> None:
        """Ours for each stop signal not ignored: what one worker's uvicorn restores and re-raises into."""
        for signum in STOP_SIGNALS:
            if signum not in self.ignored:
                signal.signal(signum, self.note)

    def wrap(self) -> None:
        """Around the handlers the supervisor of several workers installed: noted, then theirs; an
        ignored signal ignored again."""
        for signum in STOP_SIGNALS:
            theirs = signal.getsignal(signum)
            if signum in self.ignored or not callable(theirs):
                signal.signal(signum, signal.SIG_IGN if signum in self.ignored else theirs)
                continue
            signal.signal(signum, self._noting(theirs))

    def _noting(self, theirs: Callable[[int, Any], Any]) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            self.received.append(signum)
            theirs(signum, frame)

        return handler

    def first(self) -> int | None:
        return self.received[0] if self.received else None


def missing_extra() -> list[str]:
    """The packages of the `cds` extra that cannot be imported."""
    missing = []
    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def preflight(config: ServiceConfig) -> None:
    """Open what every worker opens; raise KBErrors for what cannot be used."""
    missing = missing_extra()
    if missing:
        raise KBErrors(
            [
                KBError(
                    "service.extra_missing",
                    f"the CDS Hooks service needs the 'cds' extra ({', '.join(missing)} not installed)",
                    hint="pip install 'fsgs-kb[cds]'",
                )
            ]
        )
    load(config.rules)
    try:
        load_map(config.fhir_map or default_map_path())
    except FhirMapError as exc:
        raise KBErrors(
            [KBError("service.fhir_map", p.message, exc.file, p.line, p.col, p.pointer) for p in exc.problems]
        ) from None
    DecisionLog(config.decision_log, config.mask_key()).close()


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, made with proto IPPROTO_TCP.

    uvicorn's own socket for several workers has proto 0, and asyncio sets TCP_NODELAY only on
    connections whose proto is IPPROTO_TCP: with Nagle's algorithm left on, every answer waited
    for the client's delayed ACK, 40 ms a call (measured: /healthz 0.7 ms with one worker, 44 ms
    with two). Accepted connections inherit the listener's proto, so asyncio sets it on each."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise KBErrors(
            [KBError("service.listen", f"cannot listen on {host}:{port}: {exc.strerror}", hint="use another --port")]
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(config: ServiceConfig, host: str, port: int, workers: int) -> int | None:
    """Run the service until stopped; the stop signal that stopped it (SIGINT or SIGTERM), None
    when it ended otherwise."""
    preflight(config)
    import uvicorn  # the optional extra: checked by preflight
    from uvicorn.supervisors import Multiprocess

    # by name, as APP: the module subclasses uvicorn's, which only the optional extra provides
    wire = importlib.import_module(WIRE)

    stops = Stops()
    os.environ[CONFIG_ENV] = str(config.file)
    os.environ[IGNORED_ENV] = ",".join(str(int(s)) for s in stops.ignored)
    os.environ[wire.READ_TIMEOUT_ENV] = repr(config.read_timeout_seconds)  # the head's time, in each worker
    settings = importlib.import_module(UVWORKER).Settings(  # made after IGNORED_ENV is set: it reads it
        APP,
        factory=True,
        workers=workers,
        http=wire.OutcomeH11Protocol,  # what h11 cannot parse is answered with an OperationOutcome too
        h11_max_incomplete_event_size=wire.MAX_HEAD_BYTES,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        log_level="info",
    )
    sock = listen(host, port)
    logging.getLogger("uvicorn.error").info("fsgs-kb serving on %s:%d with %d worker(s)", host, port, workers)
    server = uvicorn.Server(settings)
    if workers == 1:
        stops.install()
        server.run(sockets=[sock])
    else:
        older = {"target": server.run} if "target" in inspect.signature(Multiprocess).parameters else {}
        supervisor = Multiprocess(settings, sockets=[sock], **older)  # older releases also wanted the target
        stops.wrap()  # the supervisor installs its handlers when made
        supervisor.run()
    stopped = stops.first()
    if stopped is not None:
        logging.getLogger("uvicorn.error").info("fsgs-kb stopped by %s", signal.Signals(stopped).name)
    return stopped
