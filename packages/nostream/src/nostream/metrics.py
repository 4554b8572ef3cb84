"""Prometheus text-format metrics kept in process memory (no client library needed)."""

from __future__ import annotations

import bisect
from collections import Counter

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    def __init__(self, buckets: tuple[float, ...] = _BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.n += 1

    def render(self, name: str) -> list[str]:
        lines = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.n}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.n}")
        return lines


class Metrics:
    """The relay's counters: connections, events accepted/rejected, query latency."""

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.events_accepted = 0
        self.events_rejected: Counter[str] = Counter()
        self.messages_received = 0
        self.query_seconds = Histogram()

    def reject(self, message: str) -> None:
        """Count a refused event by the OK message's prefix (``invalid``, ``restricted``...)."""
        reason = message.split(":", 1)[0].strip() if ":" in message else "other"
        self.events_rejected[reason or "other"] += 1

    def render(self) -> str:
        lines = [
            "# HELP nostream_connections Open WebSocket connections.",
            "# TYPE nostream_connections gauge",
            f"nostream_connections {self.connections}",
            "# HELP nostream_connections_total WebSocket connections accepted.",
            "# TYPE nostream_connections_total counter",
            f"nostream_connections_total {self.connections_total}",
            "# HELP nostream_messages_received_total Client messages received.",
            "# TYPE nostream_messages_received_total counter",
            f"nostream_messages_received_total {self.messages_received}",
            "# HELP nostream_events_accepted_total Events accepted (stored or broadcast).",
            "# TYPE nostream_events_accepted_total counter",
            f"nostream_events_accepted_total {self.events_accepted}",
            "# HELP nostream_events_rejected_total Events refused, by OK message prefix.",
            "# TYPE nostream_events_rejected_total counter",
        ]
        for reason, count in sorted(self.events_rejected.items()):
            lines.append(f'nostream_events_rejected_total{{reason="{reason}"}} {count}')
        lines += [
            "# HELP nostream_query_duration_seconds Time to answer a REQ or COUNT from storage.",
            "# TYPE nostream_query_duration_seconds histogram",
            *self.query_seconds.render("nostream_query_duration_seconds"),
        ]
        return "\n".join(lines) + "\n"
