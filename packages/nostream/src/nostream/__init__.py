"""nostream: a Nostr relay that charges for publishing."""

__version__ = "0.1.0"
