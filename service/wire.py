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
"""

from __future__ import annotations

from http import HTTPStatus

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from fsgs_kb.service.hooks import outcome

MAX_HEAD_BYTES = 32 * 1024
H11_DEFAULT_BYTES = 16 * 1024  # h11's max_incomplete_event_size when none is given


class OutcomeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse with an OperationOutcome."""

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size or H11_DEFAULT_BYTES
        if len(self.conn.trailing_data[0]) > limit:  # h11 refused the head for its size (its hint: 431)
            reply = outcome(431, f"the request line and headers are larger than {limit} bytes", "too-costly")
        else:
            reply = outcome(400, "not an HTTP/1.1 request: its request line or a header cannot be read", "structure")
        body = orjson.dumps(reply.body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
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
