"""Sans-I/O Interledger: OER, ILPv4, IL-DCP, BTP, STREAM and SPSP codecs and a connector core.

Nothing in this package opens a socket or reads a clock on its own: callers pass
bytes and times in and get values or bytes out. Malformed input raises
:class:`interledger.errors.DecodeError` only.
"""

from interledger.errors import DecodeError, EncodeError, InterledgerError

__all__ = ["DecodeError", "EncodeError", "InterledgerError"]
