"""Event storage: the :class:`EventStore` interface and its SQLite implementation."""

from .base import EventStore, SaveOutcome

__all__ = ["EventStore", "SaveOutcome"]
