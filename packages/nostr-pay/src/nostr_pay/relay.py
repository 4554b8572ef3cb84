"""Talking to a relay: its NIP-11 document over HTTP, events over a WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from nostr_protocol.event import Event


class RelayError(Exception):
    """The relay could not be reached or answered out of protocol."""


def http_url(relay_url: str) -> str:
    """``ws://host:port/x`` -> ``http://host:port/x`` (wss -> https)."""
    if relay_url.startswith("wss://"):
        return "https://" + relay_url[6:]
    if relay_url.startswith("ws://"):
        return "http://" + relay_url[5:]
    return relay_url


async def fetch_nip11(relay_url: str) -> dict[str, Any]:
    """The relay's NIP-11 information document."""
    headers = {"Accept": "application/nostr+json"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(http_url(relay_url), headers=headers) as response,
        ):
            if response.status != 200:
                raise RelayError(f"NIP-11 request to {relay_url} got HTTP {response.status}")
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RelayError(f"cannot reach {relay_url}: {exc}") from None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RelayError(f"{relay_url} sent a NIP-11 document that is not JSON") from None
    if not isinstance(doc, dict):
        raise RelayError(f"{relay_url} sent a NIP-11 document that is not an object")
    return doc


@dataclass(frozen=True, slots=True)
class OkResult:
    event_id: str
    accepted: bool
    message: str


_EOSE: dict[str, Any] = {}


RETRY_PAUSES = (0.5, 2.0)
"""Seconds before sending an event again after an ``error:`` OK."""


class RelayConnection:
    """One WebSocket to a relay: many publishes in flight (each awaits its OK) and subscriptions."""

    def __init__(self, relay_url: str, timeout: float = 30.0) -> None:
        self.url = relay_url
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._oks: dict[str, asyncio.Future[OkResult]] = {}
        self._subs: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._next_sub = 0
        self.notices: list[str] = []

    async def __aenter__(self) -> RelayConnection:
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, max_msg_size=2**22)
        except (aiohttp.ClientError, OSError) as exc:
            await self._session.close()
            raise RelayError(f"cannot connect to {self.url}: {exc}") from None
        self._reader = asyncio.create_task(self._read(self._ws))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._session is not None:
            await self._session.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = orjson.loads(msg.data)
                if not isinstance(frame, list) or not frame:
                    continue
                if frame[0] == "OK" and len(frame) >= 4:
                    future = self._oks.pop(str(frame[1]), None)
                    if future is not None and not future.done():
                        future.set_result(OkResult(str(frame[1]), bool(frame[2]), str(frame[3])))
                elif frame[0] == "EVENT" and len(frame) >= 3 and frame[1] in self._subs:
                    self._subs[frame[1]].put_nowait(frame[2])
                elif frame[0] in ("EOSE", "CLOSED") and len(frame) >= 2 and frame[1] in self._subs:
                    self._subs[frame[1]].put_nowait(_EOSE)
                elif frame[0] == "NOTICE" and len(frame) >= 2:
                    self.notices.append(str(frame[1]))
        finally:
            for future in self._oks.values():
                if not future.done():
                    future.set_exception(RelayError("the relay closed the connection"))
            self._oks.clear()

    async def publish_until_answered(
        self, event: Event, pauses: Sequence[float] = RETRY_PAUSES
    ) -> OkResult:
        """:meth:`publish`, sent again after each pause while the OK says ``error:``.

        ``error:`` means the relay could not get its payment node's answer in
        time; the node may have credited the claim all the same. It answers the
        same claim for the same event again without charging twice, so the retry
        is free, and the event is stored once its answer gets through.
        """
        result = await self.publish(event)
        for pause in pauses:
            if not result.message.startswith("error:"):
                break
            await asyncio.sleep(pause)
            result = await self.publish(event)
        return result

    async def publish(self, event: Event) -> OkResult:
        """Send ``event`` and wait for the relay's OK."""
        assert self._ws is not None, "use RelayConnection as an async context manager"
        future: asyncio.Future[OkResult] = asyncio.get_running_loop().create_future()
        self._oks[event.id] = future
        try:
            await self._ws.send_str('["EVENT",' + event.to_json().decode() + "]")
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            raise RelayError(f"no OK for {event.id} within {self.timeout:g}s") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise RelayError(f"cannot send to {self.url}: {exc}") from None
        finally:
            self._oks.pop(event.id, None)

    async def subscribe(self, *filters: dict[str, Any]) -> str:
        """Open a subscription; read it with :meth:`next_event`."""
        assert self._ws is not None, "use RelayConnection as an async context manager"
        self._next_sub += 1
        sub_id = f"sub{self._next_sub}"
        self._subs[sub_id] = asyncio.Queue()
        await self._ws.send_str(orjson.dumps(["REQ", sub_id, *filters]).decode())
        return sub_id

    async def next_event(self, sub_id: str) -> dict[str, Any] | None:
        """The subscription's next event, or None at end of stored events (EOSE)."""
        async with asyncio.timeout(self.timeout):
            item = await self._subs[sub_id].get()
        return None if item is _EOSE else item

    async def close_subscription(self, sub_id: str) -> None:
        assert self._ws is not None
        self._subs.pop(sub_id, None)
        await self._ws.send_str(orjson.dumps(["CLOSE", sub_id]).decode())

    async def query(self, *filters: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored events matching ``filters`` (REQ until EOSE, then CLOSE)."""
        sub_id = await self.subscribe(*filters)
        events: list[dict[str, Any]] = []
        while (event := await self.next_event(sub_id)) is not None:
            events.append(event)
        await self.close_subscription(sub_id)
        return events
