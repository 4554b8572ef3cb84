"""NIP-01 subscription filters: parsing from JSON and matching events."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .event import Event

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset({"ids", "authors", "kinds", "since", "until", "limit", "search"})

MAX_FILTER_VALUES = 1000
"""The most values one filter field (``ids``, ``authors``, ``kinds``, one tag) may list."""


class FilterError(ValueError):
    """A filter is not valid NIP-01; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Filter:
    """One NIP-01 filter. ``None`` means "no constraint" for that field.

    ``tags`` maps a single tag letter (the ``#e`` of JSON without ``#``) to the
    accepted values of that tag's first value.
    """

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    def matches(self, event: Event) -> bool:
        """True when ``event`` satisfies every constraint of this filter."""
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for letter, values in self.tags.items():
            if not any(len(t) > 1 and t[0] == letter and t[1] in values for t in event.tags):
                return False
        return True

    def is_empty_result(self) -> bool:
        """True when no event can match (an empty list in any field, or since > until)."""
        if any(s is not None and not s for s in (self.ids, self.authors, self.kinds)):
            return True
        if any(not v for v in self.tags.values()):
            return True
        return self.since is not None and self.until is not None and self.since > self.until

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the filter (lists sorted for stable output)."""
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = sorted(self.ids)
        if self.authors is not None:
            out["authors"] = sorted(self.authors)
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        for letter, values in sorted(self.tags.items()):
            out["#" + letter] = sorted(values)
        for name in ("since", "until", "limit"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _int_field(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"{name} must be an integer")
    if value < 0:
        raise FilterError(f"{name} must not be negative")
    return value


def _list_field(name: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise FilterError(f"{name} must be an array")
    if len(value) > MAX_FILTER_VALUES:
        raise FilterError(f"{name} lists more than {MAX_FILTER_VALUES} values")
    return value


def _hex_set(name: str, value: object) -> frozenset[str]:
    items = _list_field(name, value)
    for item in items:
        if not isinstance(item, str) or not _HEX64.fullmatch(item):
            raise FilterError(f"{name} must list 64-character lowercase hex strings")
    return frozenset(item for item in items if isinstance(item, str))


def parse_filter(obj: object) -> Filter:
    """Parse one filter object from decoded JSON, raising :class:`FilterError`."""
    if not isinstance(obj, dict):
        raise FilterError("filter must be a JSON object")
    ids = authors = None
    kinds: frozenset[int] | None = None
    tags: dict[str, frozenset[str]] = {}
    since = until = limit = None
    for key, value in obj.items():
        if key == "ids":
            ids = _hex_set("ids", value)
        elif key == "authors":
            authors = _hex_set("authors", value)
        elif key == "kinds":
            items = _list_field("kinds", value)
            for k in items:
                if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 65535:
                    raise FilterError("kinds must list integers between 0 and 65535")
            kinds = frozenset(k for k in items if isinstance(k, int))
        elif key == "since":
            since = _int_field("since", value)
        elif key == "until":
            until = _int_field("until", value)
        elif key == "limit":
            limit = _int_field("limit", value)
        elif isinstance(key, str) and len(key) == 2 and key[0] == "#" and key[1].isalpha():
            items = _list_field(key, value)
            if not all(isinstance(v, str) for v in items):
                raise FilterError(f"{key} must list strings")
            tags[key[1]] = frozenset(v for v in items if isinstance(v, str))
        elif key in _FIELDS:
            continue  # "search" (NIP-50) is not supported and ignored
        else:
            raise FilterError(f"unknown filter field {key!r}")
    return Filter(ids, authors, kinds, tags, since, until, limit)


def matches_any(filters: Iterable[Filter], event: Event) -> bool:
    """True when ``event`` matches at least one filter."""
    return any(f.matches(event) for f in filters)
