"""Forward TCP connections from one address to another: a host service made reachable to pods.

The test MLflow (and other host programs) listen on loopback; real pods reach the host only
at its address on the node link. Rebinding those servers would change what every other test
sees, so a forwarder listens there instead. ``python -m tests.support.tcp_forward LISTEN
TARGET`` with ``host:port`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence

BUFFER = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, target_w), _pipe(target_r, client_w))

    server = await asyncio.start_server(handle, listen_host, listen_port)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m tests.support.tcp_forward LISTEN_HOST:PORT TARGET_HOST:PORT")
        return 2
    (listen_host, listen_port), (target_host, target_port) = map(_address, args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listen_host, listen_port, target_host, target_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
