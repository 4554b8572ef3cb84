"""``publish_until_answered`` against a real WebSocket relay stand-in with scripted OKs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from nostr_pay.relay import RelayConnection
from nostr_protocol.keys import generate_secret_key, sign_event

UNAVAILABLE = "error: payment verification temporarily unavailable"


class ScriptedRelay:
    """Answers each EVENT with the next (accepted, message) of its script, and counts them."""

    def __init__(self, script: list[tuple[bool, str]]) -> None:
        self.script = script
        self.received: list[str] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            verb, event = json.loads(msg.data)
            assert verb == "EVENT"
            self.received.append(event["id"])
            accepted, message = self.script[min(len(self.received), len(self.script)) - 1]
            await ws.send_str(json.dumps(["OK", event["id"], accepted, message]))
        return ws


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(relay: ScriptedRelay) -> str:
        app = web.Application()
        app.router.add_get("/", relay.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"ws://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def publish(serve, script: list[tuple[bool, str]]) -> tuple[bool, str, list[str], str]:  # type: ignore[no-untyped-def]
    relay = ScriptedRelay(script)
    url = await serve(relay)
    event = sign_event(generate_secret_key(), kind=1, content="retry me")
    async with RelayConnection(url) as connection:
        ok = await connection.publish_until_answered(event, pauses=(0.0, 0.0))
    return ok.accepted, ok.message, relay.received, event.id


async def test_an_error_answer_is_retried_with_the_same_event(serve) -> None:  # type: ignore[no-untyped-def]
    accepted, message, received, event_id = await publish(serve, [(False, UNAVAILABLE), (True, "")])
    assert (accepted, message) == (True, "")
    assert received == [event_id, event_id]  # the same event, not a re-signed one


async def test_retries_stop_after_the_pauses_run_out(serve) -> None:  # type: ignore[no-untyped-def]
    accepted, message, received, _ = await publish(serve, [(False, UNAVAILABLE)])
    assert (accepted, message, len(received)) == (False, UNAVAILABLE, 3)


async def test_a_refusal_is_final(serve) -> None:  # type: ignore[no-untyped-def]
    refusal = "restricted: invalid payment nonce: nonce must exceed 4"
    accepted, message, received, _ = await publish(serve, [(False, refusal), (True, "")])
    assert (accepted, message, len(received)) == (False, refusal, 1)
