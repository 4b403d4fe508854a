"""How fast the rehearsal provider answers, measured from a plain asyncio HTTP client.

The executor and batch benchmarks run against this server, so its own cost
must stay far below DSPy's (~3-5 ms per prediction). The server runs as a
separate process (as the other benchmarks use it) and the client speaks raw
HTTP/1.1 keep-alive, so what is measured is the server, not a client library.

    /work/venv/bin/python bench/bench_provider.py [--requests 4000]

Prints requests/s and median latency for several concurrency levels, each run
three times (median of runs reported), side by side with a baseline: a bare
asyncio protocol that answers every request with a canned completion of the
same size (the floor any Python server on this loop could reach). The machine
is shared, so read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

BODY = json.dumps({
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `answer` (str):\n"},
        {"role": "user", "content": "[[ ## question ## ]]\nWhat is the capital of France?\n\nRespond with the corresponding output "
                                    "fields, starting with the field `[[ ## answer ## ]]`, and then ending with the marker for "
                                    "`[[ ## completed ## ]]`."},
    ],
}).encode()
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


async def _client(port: int, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        started = time.perf_counter()
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
    writer.close()


async def _run(port: int, total: int, concurrency: int) -> tuple[float, float]:
    latencies: list[float] = []
    per_client = max(1, total // concurrency)
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, per_client, latencies) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


CANNED = json.dumps({
    "id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 60, "completion_tokens": 8, "total_tokens": 68},
}).encode()


def _baseline_server(latency_ms: float) -> None:
    """Answer every complete request with CANNED after latency_ms: no parsing beyond Content-Length."""
    response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(CANNED), CANNED)

    class Canned(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                length = int(self.buffer[:end].lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length:]
                if latency_ms:
                    asyncio.get_running_loop().call_later(latency_ms / 1000, self.transport.write, response)
                else:
                    self.transport.write(response)

    async def serve():
        server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", 0, backlog=2048)
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
        await server.serve_forever()

    asyncio.run(serve())


def _start(latency_ms: float, baseline: bool) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--baseline-server"] if baseline else [sys.executable, "-m", "runner.rehearsal.server", "--port", "0"]
    process = subprocess.Popen([*command, "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, int(line.rsplit(":", 1)[1].split("/")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        _baseline_server(args.latency_ms)
        return
    print(f"{'latency_ms':>10} {'conns':>6} {'rehearsal req/s':>16} {'baseline req/s':>15} {'ratio':>6} "
          f"{'rehearsal med ms':>17} {'baseline med ms':>16}")
    for latency_ms, concurrencies in ((0, (1, 10, 100)), (50, (200,))):
        servers = {name: _start(latency_ms, baseline=name == "baseline") for name in ("rehearsal", "baseline")}
        try:
            for concurrency in concurrencies:
                total = args.requests if latency_ms == 0 else min(args.requests, 2000)
                runs: dict[str, list[tuple[float, float]]] = {"rehearsal": [], "baseline": []}
                for _ in range(3):  # interleaved, so load from elsewhere hits both alike
                    for name, (_, port) in servers.items():
                        runs[name].append(asyncio.run(_run(port, total, concurrency)))
                rate = {name: statistics.median(r for r, _ in found) for name, found in runs.items()}
                median = {name: statistics.median(m for _, m in found) for name, found in runs.items()}
                print(f"{latency_ms:>10} {concurrency:>6} {rate['rehearsal']:>16.0f} {rate['baseline']:>15.0f} "
                      f"{rate['rehearsal'] / rate['baseline']:>6.2f} {median['rehearsal']:>17.2f} {median['baseline']:>16.2f}")
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait()


if __name__ == "__main__":
    main()
