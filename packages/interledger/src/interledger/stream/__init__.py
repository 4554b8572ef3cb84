"""STREAM (RFC 29): packets, frames, encryption and key derivation."""
