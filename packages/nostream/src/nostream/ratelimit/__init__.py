"""Rate limiting of events and messages per client."""

from .base import MemoryRateLimiter, RateLimiter

__all__ = ["MemoryRateLimiter", "RateLimiter"]
