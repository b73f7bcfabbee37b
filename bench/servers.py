"""Small MLLP servers the benchmark runs in their own processes.

``echo``: the floor — a bare asyncio MLLP server that answers every frame
with a fixed ACK without parsing it. ``sink``: a destination system that
answers AA quickly (MSA-2 copied from MSH-10) and counts what it got.

    python -m bench.servers echo|sink PORT
"""
from __future__ import annotations

import asyncio
import signal
import sys

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
FIXED_ACK = VT + b"MSH|^~\\&|ECHO||BENCH||20250101000000||ACK^R01^ACK|1|P|2.5.1\rMSA|AA|1\r" + FS + CR


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(FS + CR)
            writer.write(FIXED_ACK)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, reader, writer) -> None:
        try:
            while True:
                data = await reader.readuntil(FS + CR)
                self.count += 1
                msh = data[data.index(VT) + 1:data.index(b"\r")].split(b"|")
                ctrl = msh[9] if len(msh) > 9 else b""
                writer.write(VT + b"MSH|^~\\&|SINK||LABGATE||20250101000000||ACK^R01^ACK|S"
                             + ctrl + b"|P|2.5.1\rMSA|AA|" + ctrl + b"\r" + FS + CR)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()


async def serve(kind: str, port: int) -> None:
    handler = _echo if kind == "echo" else Sink().handle
    server = await asyncio.start_server(handler, "127.0.0.1", port, limit=4 * 1024 * 1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
