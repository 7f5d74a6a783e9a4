"""What the service answers for a request its HTTP parser cannot read: an OperationOutcome too.

uvicorn answers a request that h11 refuses (a request line and headers larger than h11's buffer,
a header line that is not one) itself, before the application sees it, with a plain-text
`400 Invalid HTTP request received.`: the sweep's 200 KB Authorization header got that, where every
other error of the service is an OperationOutcome (service/app.py). Raising h11's buffer so the
application sees such a header would only move the plain-text answer to a larger size and let
every connection hold that much; so the buffer keeps a cap, MAX_HEAD_BYTES, and this protocol class
(given to uvicorn as `http`) answers what h11 refuses with an OperationOutcome: 431 (too-costly)
when the head is larger than the cap, 400 (structure) otherwise, then closes the connection as
uvicorn does.

MAX_HEAD_BYTES is 32 KiB, twice the token's own cap (service/jwtcheck.py MAX_TOKEN_BYTES, 16 KiB):
a token near that cap still reaches the gate (401), and a head past 32 KiB gets 431 here. It is set
explicitly (`h11_max_incomplete_event_size`), not left to h11's default, and the parser is this
h11 class whatever else is installed (uvicorn[standard] would otherwise pick httptools, whose
answers to such requests are its own plain text).

A client that sends its request head slowly, or not at all (slow-loris), held its connection for
ever: uvicorn times out only an idle connection between requests (`timeout_keep_alive`, armed
after an answer and cancelled by the first byte received), never a connection that has sent
nothing yet nor a head arriving a byte at a time, and neither h11 nor `--limit-concurrency` (which
answers 503 to everyone once enough connections are held) bounds it. So this class gives each
request head `read_timeout_seconds` (the configuration, passed in $FSGS_KB_CDS_READ_SECONDS):
counted from the connection for its first request and from the first byte for the next ones,
never reset by more bytes. Past it, a head begun gets 408 (an OperationOutcome) and the
connection is closed; a connection that sent nothing is closed without an answer. The body's
time is bounded in the application (service/app.py), which can log the call's row.
"""

from __future__ import annotations

import asyncio
import logging
import os
from http import HTTPStatus
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from fsgs_kb.service.config import DEFAULT_READ_TIMEOUT_SECONDS
from fsgs_kb.service.hooks import Reply, outcome

MAX_HEAD_BYTES = 32 * 1024
H11_DEFAULT_BYTES = 16 * 1024  # h11's max_incomplete_event_size when none is given
READ_TIMEOUT_ENV = "FSGS_KB_CDS_READ_SECONDS"  # set by `fsgs-kb serve` from the configuration
log = logging.getLogger("fsgs_kb.service")


def read_timeout_seconds() -> float:
    """The seconds a request head may take, as `fsgs-kb serve` passed them to its workers."""
    try:
        return float(os.environ.get(READ_TIMEOUT_ENV, DEFAULT_READ_TIMEOUT_SECONDS))
    except ValueError:
        return DEFAULT_READ_TIMEOUT_SECONDS


class OutcomeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse with an OperationOutcome, and
    a request head that does not arrive in time with 408."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_seconds = read_timeout_seconds()
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()  # uvicorn never times out a connection that sends nothing

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_head()  # the next request's head may have begun (pipelined) or been read now

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self.head_deadline = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _track_head(self) -> None:
        """The deadline ends once h11 has read the request head (the client left IDLE); a next
        request's head starts it at its first byte, and more bytes never restart it."""
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_deadline()
        elif self.head_deadline is None and self.conn.trailing_data[0] and not self.transport.is_closing():
            self._arm_head_deadline()

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        received = len(self.conn.trailing_data[0])
        if received == 0:  # nothing sent on a new connection: closed, no answer owed
            self.transport.close()
            return
        within = f"{self.head_seconds:g} s ({received} bytes received)"
        said = f"the request line and headers did not arrive within {within}"
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info("408 from %s: %s", peer, said)
        # written directly: h11 answers only a request it has read, and this one never was
        body, headers = _closing_answer(outcome(408, said, "timeout"))
        head = f"HTTP/1.1 408 {HTTPStatus(408).phrase}\r\n" + "".join(
            f"{k.decode()}: {v.decode()}\r\n" for k, v in headers
        )
        self.transport.write(head.encode("ascii") + b"\r\n" + body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size or H11_DEFAULT_BYTES
        if len(self.conn.trailing_data[0]) > limit:  # h11 refused the head for its size (its hint: 431)
            reply = outcome(431, f"the request line and headers are larger than {limit} bytes", "too-costly")
        else:
            reply = outcome(400, "not an HTTP/1.1 request: its request line or a header cannot be read", "structure")
        body, headers = _closing_answer(reply)
        try:
            for event in (
                h11.Response(status_code=reply.status, headers=headers, reason=HTTPStatus(reply.status).phrase),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # an answer had already begun on this connection: nothing more can be said
            pass
        self.transport.close()


def _closing_answer(reply: Reply) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An OperationOutcome's body and the headers of an answer after which the connection closes."""
    body = orjson.dumps(reply.body)
    return body, [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
