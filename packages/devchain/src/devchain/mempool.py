"""Transactions waiting to be mined while automine is off (``evm_setAutomine``).

With automine on, the dev chain mines every transaction in a block of its own
at once and this pool stays empty. With automine off, signed transactions wait
here until ``evm_mine``, as they wait in a real node's mempool, so that code
which must cope with slow or lost transactions (a settlement stuck behind a low
fee, a transaction dropped from the mempool) can be tested:

* a transaction with the nonce of one already waiting replaces it only if it
  raises both the fee cap and the tip by at least 10% (the rule of geth and
  most clients); otherwise it is refused as underpriced;
* ``anvil_dropTransaction`` forgets a waiting transaction, and with it the
  sender's later ones, which could never be mined after the gap.

Pure bookkeeping: no chain access. The caller says what the chain's next nonce
for a sender is.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLACEMENT_BUMP_PERCENT = 10


class PoolError(ValueError):
    """The pool refuses the transaction (the message is what a node would answer)."""


@dataclass(frozen=True, slots=True)
class PooledTransaction:
    """A signed transaction waiting to be mined."""

    tx_hash: str
    raw: bytes
    sender: str
    nonce: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    wire: dict[str, object]
    """The JSON-RPC transaction object (``blockNumber`` null), for ``eth_getTransactionByHash``."""


def _bumped(old: int, new: int) -> bool:
    return new * 100 >= old * (100 + REPLACEMENT_BUMP_PERCENT)


class Mempool:
    """Waiting transactions, each sender's in nonce order after the chain's next nonce."""

    def __init__(self) -> None:
        self._by_hash: dict[str, PooledTransaction] = {}
        self._by_sender: dict[str, list[PooledTransaction]] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, tx_hash: str) -> PooledTransaction | None:
        return self._by_hash.get(tx_hash.lower())

    def waiting(self, sender: str) -> int:
        """How many of ``sender``'s transactions wait (they follow the chain's nonce)."""
        return len(self._by_sender.get(sender, ()))

    def add(self, tx: PooledTransaction, chain_nonce: int) -> PooledTransaction | None:
        """Add ``tx``; returns the transaction it replaced, if any (raises PoolError)."""
        queue = self._by_sender.setdefault(tx.sender, [])
        if tx.nonce < chain_nonce:
            raise PoolError(f"nonce too low: next nonce {chain_nonce}, tx nonce {tx.nonce}")
        index = tx.nonce - chain_nonce
        if index < len(queue):
            old = queue[index]
            if old.tx_hash == tx.tx_hash:
                raise PoolError(f"already known: {tx.tx_hash}")
            if not (
                _bumped(old.max_fee_per_gas, tx.max_fee_per_gas)
                and _bumped(old.max_priority_fee_per_gas, tx.max_priority_fee_per_gas)
            ):
                raise PoolError(
                    "replacement transaction underpriced: raise the fee cap and the tip "
                    f"by {REPLACEMENT_BUMP_PERCENT}% or more"
                )
            queue[index] = tx
            del self._by_hash[old.tx_hash]
            self._by_hash[tx.tx_hash] = tx
            return old
        if index > len(queue):
            expected = chain_nonce + len(queue)
            raise PoolError(f"nonce too high: next nonce {expected}, tx nonce {tx.nonce}")
        queue.append(tx)
        self._by_hash[tx.tx_hash] = tx
        return None

    def drop(self, tx_hash: str) -> list[str]:
        """Forget ``tx_hash`` and its sender's later transactions; returns the hashes dropped."""
        tx = self._by_hash.get(tx_hash.lower())
        if tx is None:
            return []
        queue = self._by_sender[tx.sender]
        index = queue.index(tx)
        dropped = queue[index:]
        del queue[index:]
        if not queue:
            del self._by_sender[tx.sender]
        for gone in dropped:
            del self._by_hash[gone.tx_hash]
        return [gone.tx_hash for gone in dropped]

    def snapshot(self) -> list[PooledTransaction]:
        """Every waiting transaction, each sender's in nonce order (the pool is unchanged)."""
        return sorted(self._by_hash.values(), key=lambda tx: (tx.sender, tx.nonce))

    def take_all(self) -> list[PooledTransaction]:
        """Empty the pool: every waiting transaction, each sender's in nonce order."""
        order = self.snapshot()
        self._by_hash.clear()
        self._by_sender.clear()
        return order
