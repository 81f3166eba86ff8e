"""A small HTTP/1.1 load generator, run as its own process so that it does not share the
server's CPU time slices or GIL: keep-alive connections on raw asyncio streams.

    python -m benchmarks.load_client PORT PATH REQUESTS CONCURRENCY

Prints one JSON object: requests, seconds, requests_per_s, p50_ms, p99_ms, errors.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import List


async def connection(port: int, path: str, count: int, latencies: List[float],
                     errors: List[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(1)
    finally:
        writer.close()


async def load(port: int, path: str, requests: int, concurrency: int) -> dict:
    latencies: List[float] = []
    errors: List[int] = []
    per_connection = requests // concurrency
    start = time.perf_counter()
    await asyncio.gather(*(connection(port, path, per_connection, latencies, errors)
                           for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies), "seconds": seconds,
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": len(errors),
    }


def main() -> None:
    port, path, requests, concurrency = sys.argv[1:5]
    result = asyncio.run(load(int(port), path, int(requests), int(concurrency)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
