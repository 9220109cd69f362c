"""A TCP proxy that adds network latency: what loopback lacks and every deployment has.

Each byte reaches the other side ``--delay-ms`` after it was sent, in both directions, so a
request and its answer take a round trip of twice that; a new connection pays one more
round trip before its first byte (the TCP handshake a real network charges). Bandwidth is
not limited and nothing is reordered. bench/archive_throughput.py puts one in front of the
image server and one in front of the S3 server, for the naive script and genvault alike.

    python bench/delay_proxy.py --port 9001 --target 127.0.0.1:9000 --delay-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, first: float
) -> None:
    """Copy reader to writer, each chunk sent ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    extra = first
    try:
        while True:
            try:
                data = await reader.read(256 * 1024)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay + extra, data))
            extra = 0.0
            if not data:
                break
        await sender
    except OSError:
        sender.cancel()


async def _serve(port: int, host: str, target_port: int, delay: float) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection(host, target_port)
        except OSError:
            c_writer.close()
            return
        try:
            # The handshake's round trip, charged to the first bytes the client sends.
            await asyncio.gather(
                _pump(c_reader, u_writer, delay, first=2 * delay),
                _pump(u_reader, c_writer, delay, first=0.0),
            )
        finally:
            for w in (u_writer, c_writer):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port of the server behind")
    parser.add_argument("--delay-ms", type=float, required=True, help="one way")
    args = parser.parse_args()
    host, _, target_port = args.target.rpartition(":")
    asyncio.run(_serve(args.port, host, int(target_port), args.delay_ms / 1000))


if __name__ == "__main__":
    main()
