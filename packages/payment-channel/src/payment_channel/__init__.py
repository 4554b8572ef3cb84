"""The payment-channel contract and the claims that spend from it.

Sans-I/O: hashing, signing and recovering claims (:mod:`.claim`), the Nostr
``payment`` tag (:mod:`.tag`), and the contract's compiled artifacts
(:mod:`.artifacts`). No network, no chain access.
"""
