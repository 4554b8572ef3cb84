"""Fan-out of accepted events between relay processes."""

from .base import EventBus, LocalBus

__all__ = ["EventBus", "LocalBus"]
