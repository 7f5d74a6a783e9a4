"""`fsgs-kb serve`: check everything the workers will need, then hand over to uvicorn.

The configuration, the knowledge base, the FHIR map and the decision log are all opened once
here first, so a mistake is one clear line and exit 2 instead of workers dying at start-up. The
web packages are the optional extra `cds`; without them the command says how to install them.
Uvicorn loads the application by its import string in each worker (the only way it can start
several), with the configuration file's path in the environment.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import socket

from fsgs_kb.engine.errors import KBError, KBErrors
from fsgs_kb.engine.fhir import FhirMapError, default_map_path, load_map
from fsgs_kb.engine.kb import load
from fsgs_kb.service.config import ServiceConfig
from fsgs_kb.service.decisionlog import DecisionLog

CONFIG_ENV = "FSGS_KB_CDS_CONFIG"
APP = "fsgs_kb.service.app:create_app"
WIRE = "fsgs_kb.service.wire"  # what the server answers a request h11 cannot parse
EXTRA = ("starlette", "uvicorn", "jwt", "cryptography", "httpx")


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


def serve(config: ServiceConfig, host: str, port: int, workers: int) -> None:
    """Run the service until stopped (SIGINT or SIGTERM)."""
    preflight(config)
    import uvicorn  # the optional extra: checked by preflight
    from uvicorn.supervisors import Multiprocess

    # by name, as APP: the module subclasses uvicorn's, which only the optional extra provides
    wire = importlib.import_module(WIRE)

    os.environ[CONFIG_ENV] = str(config.file)
    settings = uvicorn.Config(
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
        server.run(sockets=[sock])
        return
    older = {"target": server.run} if "target" in inspect.signature(Multiprocess).parameters else {}
    Multiprocess(settings, sockets=[sock], **older).run()  # older uvicorn releases also wanted the target
