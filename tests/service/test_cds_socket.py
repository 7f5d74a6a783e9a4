"""The listening socket: every accepted connection gets TCP_NODELAY.

Upstream: asyncio sets TCP_NODELAY only on connections whose socket proto is IPPROTO_TCP, and the
socket uvicorn binds for several workers has proto 0, so each answer waited for the client's
delayed ACK (40 ms a call with two workers). Wrapper: `listen` makes the socket with
IPPROTO_TCP. Both halves are checked on real sockets and a real asyncio server."""

from __future__ import annotations

import asyncio
import socket

from fsgs_kb.service.run import listen


def accepted_nodelay(sock: socket.socket) -> int:
    """TCP_NODELAY on the server side of one connection accepted by asyncio from `sock`."""
    found: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raw = transport.get_extra_info("socket")
            found.append(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if found:
                break
            await asyncio.sleep(0.01)  # until the server side has seen the connection
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    return found[0]


def test_upstream_a_proto_0_listener_leaves_nagle_on() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn binds it for several workers
    sock.bind(("127.0.0.1", 0))
    assert sock.proto == 0
    assert accepted_nodelay(sock) == 0


def test_wrapper_listen_gives_every_connection_nodelay() -> None:
    sock = listen("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert accepted_nodelay(sock) != 0
