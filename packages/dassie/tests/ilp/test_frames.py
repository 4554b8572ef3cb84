"""The BTP link's batched frame writer, read back by aiohttp on both sides of a socket."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from dassie.ilp.btp import FrameWriter, binary_frame

SIZES = (0, 1, 125, 126, 300, 65535, 65536, 70000)


def payloads() -> list[bytes]:
    return [bytes((n + i) % 251 for i in range(n)) for n in SIZES]


def test_frame_headers() -> None:
    assert binary_frame(b"abc", mask=False) == b"\x82\x03abc"
    assert binary_frame(b"x" * 126, mask=False)[:4] == b"\x82\x7e\x00\x7e"
    assert binary_frame(b"x" * 65536, mask=False)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    masked = binary_frame(b"abcde", mask=True)
    assert masked[:2] == b"\x82\x85" and len(masked) == 2 + 4 + 5
    key = masked[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(masked[6:])) == b"abcde"


async def test_batched_frames_arrive_whole_and_in_order() -> None:
    """Server side (unmasked) to an aiohttp client, then client side (masked) back."""
    got_by_server: list[bytes] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        out = FrameWriter(ws)
        assert not out.masked
        for payload in payloads():  # queued in one loop turn: one socket write
            out.send(payload)
        async for msg in ws:
            got_by_server.append(msg.data)
            if len(got_by_server) == len(SIZES):
                done.set()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"ws://127.0.0.1:{runner.addresses[0][1]}/"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, max_msg_size=1 << 20) as ws,
        ):
            got = [(await ws.receive()).data for _ in SIZES]
            assert got == payloads()
            out = FrameWriter(ws)
            assert out.masked
            for payload in got:
                out.send(payload)
            await asyncio.wait_for(done.wait(), 10)
            assert got_by_server == payloads()
            await ws.close()
            out.send(b"late")  # a closed socket drops what is queued, without an error
            out.flush()
    finally:
        await runner.cleanup()


class NoWriterSocket:
    """A socket object without aiohttp's writer: the writer falls back to send_bytes."""

    def __init__(self, expected: int) -> None:
        self.closed = False
        self.sent: list[bytes] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send_bytes(self, data: bytes) -> None:
        await asyncio.sleep(0)  # a real send may wait: order must still hold
        self.sent.append(data)
        if len(self.sent) == self.expected:
            self.all_sent.set()


async def test_fallback_sends_each_frame_in_order() -> None:
    ws = NoWriterSocket(expected=4)
    out = FrameWriter(ws)  # type: ignore[arg-type]
    for n in range(3):
        out.send(bytes([n]))
    out.flush()  # the first batch is handed over now, the last one at the end of this turn
    out.send(b"\x03")
    await asyncio.wait_for(ws.all_sent.wait(), 5)
    assert ws.sent == [b"\x00", b"\x01", b"\x02", b"\x03"]
