"""A sans-I/O JSON-RPC 2.0 client core.

It turns calls into request frames and incoming frames into responses matched
to their request by id; it never touches a socket. The asyncio adapter in
:mod:`nostream.payments.rpc_client` feeds it.
"""

from __future__ import annotations

import random
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


class JsonRpcClient:
    """Issues ids, encodes requests and matches responses to requests still pending."""

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: set[int] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def request(self, method: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A new request: its id and the frame to send."""
        request_id = self._next_id
        self._next_id += 1
        self._pending.add(request_id)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        message["params"] = {} if params is None else params
        return request_id, orjson.dumps(message)

    def forget(self, request_id: int) -> None:
        """Stop waiting for ``request_id`` (timed out or abandoned); a late answer is dropped."""
        self._pending.discard(request_id)

    def forget_all(self) -> list[int]:
        """Drop every pending request (the connection is gone); returns their ids."""
        ids = sorted(self._pending)
        self._pending.clear()
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
            if response is not None and response.id in self._pending:
                self._pending.discard(response.id)
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
