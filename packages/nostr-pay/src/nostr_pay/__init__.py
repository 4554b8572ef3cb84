"""nostr-pay: a user's client that opens a payment channel to a relay and publishes paid notes."""
