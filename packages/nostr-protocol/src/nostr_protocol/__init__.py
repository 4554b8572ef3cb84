"""Sans-I/O Nostr: events, filters and relay messages, with no sockets."""
