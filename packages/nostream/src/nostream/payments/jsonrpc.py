"""A sans-I/O JSON-RPC 2.0 client core.

It turns calls into request frames (JSON-RPC batch arrays when several leave
together) and incoming frames into responses matched to their request by id,
and decides when queued requests should leave; it never touches a socket or a
clock (the caller passes ``now``). The asyncio adapter in
:mod:`nostream.payments.rpc_client` feeds it.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson


class RpcError(Exception):
    """The server answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class ProtocolViolation(ValueError):
    """A frame from the server is not JSON-RPC 2.0."""


@dataclass(frozen=True, slots=True)
class Response:
    """One answer to one request: ``error`` is None exactly when it succeeded."""

    id: int
    result: Any = None
    error: RpcError | None = None


MAX_BATCH = 256
"""Requests per batch frame by default (the node accepts up to 1,000)."""


class _Frame:
    """A sent frame: when it left and how many of its requests are still unanswered."""

    __slots__ = ("sent_at", "waiting")

    def __init__(self, sent_at: float, waiting: int) -> None:
        self.sent_at = sent_at
        self.waiting = waiting


class JsonRpcClient:
    """Issues ids, batches requests into frames, and matches responses to pending requests.

    Flow control: requests are queued (:meth:`queue`) and leave together
    (:meth:`flush`). While ``window`` frames sent less than ``patience`` seconds
    ago are still unanswered, :meth:`may_send` says to hold the queue: it then
    leaves as one batch when an answer comes (or when those frames grow old, so
    one slow request never holds the others back for long). The busier the
    server, the larger the batches, and an idle link sends each request at once.
    """

    def __init__(self, max_batch: int = MAX_BATCH, window: int = 1, patience: float = 0.01) -> None:
        if max_batch < 1 or window < 1:
            raise ValueError("max_batch and window must be at least 1")
        self.max_batch = max_batch
        self.window = window
        self.patience = patience
        self._next_id = 1
        self._pending: dict[int, _Frame | None] = {}
        """Unanswered ids -> the frame that carried them (None while queued)."""
        self._outbox: list[dict[str, Any]] = []
        self._sent: deque[_Frame] = deque()
        """Frames in the order they left; answered ones are dropped from the left."""

    @property
    def pending(self) -> int:
        """Requests queued or sent, not yet answered nor forgotten."""
        return len(self._pending)

    @property
    def queued(self) -> int:
        """Requests queued since the last :meth:`flush` (forgotten ones included)."""
        return len(self._outbox)

    def queue(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Queue a request for the next :meth:`flush`; returns its id."""
        request_id = self._next_id
        self._next_id = request_id + 1
        self._pending[request_id] = None
        self._outbox.append(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": method,
                "params": {} if params is None else params,
            }
        )
        return request_id

    def _busy(self, now: float) -> tuple[int, float | None]:
        """(unanswered frames younger than patience, when the oldest of them ages out)."""
        sent = self._sent
        while sent and sent[0].waiting == 0:
            sent.popleft()
        young = 0
        oldest: float | None = None
        for frame in reversed(sent):
            if now - frame.sent_at >= self.patience:
                break
            if frame.waiting:
                young += 1
                oldest = frame.sent_at
        return young, None if oldest is None else oldest + self.patience

    def may_send(self, now: float) -> bool:
        """Whether the queued requests should leave now (see the class docstring)."""
        return bool(self._outbox) and self._busy(now)[0] < self.window

    def wake_at(self, now: float) -> float | None:
        """When a held queue may leave even without an answer; None if it is not held."""
        if not self._outbox:
            return None
        young, ages_out = self._busy(now)
        return ages_out if young >= self.window else None

    def flush(self, now: float) -> list[tuple[list[int], bytes]]:
        """The queued requests as frames to send now: ``(ids, frame)``, ``max_batch`` at most.

        A frame of one request is a plain request object, otherwise a batch array.
        Requests forgotten while queued are left out.
        """
        outbox, self._outbox = self._outbox, []
        pending = self._pending
        live = [m for m in outbox if m["id"] in pending]
        frames: list[tuple[list[int], bytes]] = []
        for start in range(0, len(live), self.max_batch):
            chunk = live[start : start + self.max_batch]
            ids = [m["id"] for m in chunk]
            record = _Frame(now, len(ids))
            for request_id in ids:
                pending[request_id] = record
            self._sent.append(record)
            frames.append((ids, orjson.dumps(chunk[0] if len(chunk) == 1 else chunk)))
        return frames

    def _settle(self, request_id: int) -> bool:
        """Stop waiting for ``request_id``; False if it was not pending."""
        if request_id not in self._pending:
            return False
        frame = self._pending.pop(request_id)
        if frame is not None:
            frame.waiting -= 1
        return True

    def forget(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` (timed out or abandoned); a late answer is dropped."""
        self._settle(request_id)

    def forget_all(self) -> list[int]:
        """Drop every pending and queued request (the connection is gone); returns their ids."""
        ids = sorted(self._pending)
        self._pending.clear()
        self._outbox.clear()
        self._sent.clear()
        return ids

    def receive(self, frame: str | bytes) -> list[Response]:
        """Responses in ``frame`` (a single response or a batch) for pending requests.

        Answers to unknown or forgotten ids are ignored; raises ProtocolViolation when
        the frame is not JSON-RPC 2.0 at all.
        """
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise ProtocolViolation("frame is not JSON") from exc
        items = message if isinstance(message, list) else [message]
        responses: list[Response] = []
        for item in items:
            response = self._parse(item)
            if response is not None and self._settle(response.id):
                responses.append(response)
        return responses

    @staticmethod
    def _parse(item: Any) -> Response | None:
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            raise ProtocolViolation("not a JSON-RPC 2.0 object")
        request_id = item.get("id")
        if "method" in item:
            return None  # a notification or request from the server: not ours to answer
        if "error" in item:
            error = item["error"]
            if not isinstance(error, dict):
                raise ProtocolViolation("error is not an object")
            code = error.get("code")
            rpc_error = RpcError(
                code if isinstance(code, int) else -32603,
                str(error.get("message", "")),
                error.get("data"),
            )
            if not isinstance(request_id, int):
                return None  # an error about a frame we could not have sent
            return Response(id=request_id, error=rpc_error)
        if "result" not in item:
            raise ProtocolViolation("response has neither result nor error")
        if not isinstance(request_id, int):
            raise ProtocolViolation("response id is not an integer")
        return Response(id=request_id, result=item["result"])


class Backoff:
    """Exponential backoff with full jitter between ``initial`` and ``maximum`` seconds."""

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 30.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt: uniform in [initial, cap], cap doubling up to max."""
        cap = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt = min(self._attempt + 1, 64)
        return self._rng.uniform(self.initial, cap) if cap > self.initial else self.initial
