"""The running node: ledger, claim service, chains and settlement, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from . import __version__
from .claims.channels import ChannelSource
from .claims.recovery import RecoveryPool
from .claims.service import ClaimService
from .config import Config
from .ledger import LedgerStore
from .ledger.migrations import resolve_legacy_assets
from .settlement.evm import EvmChain
from .settlement.manager import SettlementManager

log = logging.getLogger(__name__)


class Node:
    """Open with :meth:`start`, close with :meth:`stop`.

    ``sources`` replaces the chains from the configuration (tests, benchmarks);
    settlement runs only on :class:`EvmChain` sources.
    """

    def __init__(self, config: Config, sources: Sequence[ChannelSource] | None = None) -> None:
        self.config = config
        self.sources: list[ChannelSource] = (
            [EvmChain(chain) for chain in config.chains] if sources is None else list(sources)
        )
        self._store: LedgerStore | None = None
        self._claims: ClaimService | None = None
        self.recovery: RecoveryPool | None = None
        """The claim signer recovery processes (``CLAIM_VERIFY_WORKERS``), if any."""
        self.settlement: SettlementManager | None = None
        self.ilp_asset_code = "ETH"
        """The Interledger asset's code (set by :func:`dassie.ilp.setup`): the asset of the
        ILP accounts of a ledger written before accounts had assets."""
        self._background: asyncio.Task[None] | None = None

    @property
    def store(self) -> LedgerStore:
        assert self._store is not None, "node not started"
        return self._store

    @property
    def claims(self) -> ClaimService:
        assert self._claims is not None, "node not started"
        return self._claims

    async def start(self) -> None:
        path = self.config.ledger_db_path
        legacy = await resolve_legacy_assets(
            path, self.config.chains, self.sources, self.ilp_asset_code
        )  # None unless the ledger is from before assets, then upgraded as it opens
        self._store = await LedgerStore.open(path, legacy)
        if self.config.verify_workers > 0:
            self.recovery = RecoveryPool(self.config.verify_workers)
            await self.recovery.start()
        self._claims = ClaimService(
            self._store, self.sources, self.config.expiry_margin, recovery=self.recovery
        )
        evm = {s.name: s for s in self.sources if isinstance(s, EvmChain)}
        if evm:
            self.settlement = SettlementManager(
                self._store,
                self._claims,
                evm,
                self.config.expiry_margin,
                self.config.poll_interval,
            )
            self._background = asyncio.create_task(self.settlement.run())

    async def stop(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        if self.settlement is not None:
            await self.settlement.close()
        if self.recovery is not None:
            await self.recovery.close()  # answers what it holds; no worker outlives the node
        if self._store is not None:
            await self._store.close()
        for source in self.sources:
            if isinstance(source, EvmChain):
                with contextlib.suppress(Exception):
                    await source.w3.provider.disconnect()

    def info(self) -> dict[str, Any]:
        chains = []
        for source in self.sources:
            config = next((c for c in self.config.chains if c.name == source.name), None)
            chains.append(
                {
                    "name": source.name,
                    "chainId": None if config is None else config.chain_id,
                    "factory": None if config is None else config.factory_address,
                    "relayAddress": source.relay_address,
                    "assets": [] if config is None else list(config.assets),
                }
            )
        return {"ilpAddress": self.config.ilp_address, "version": __version__, "chains": chains}

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``(http_status, body)``: 503 when the ledger is down, degraded when a chain is."""
        checks: dict[str, Any] = {}
        try:
            await self.store.ping()
            checks["ledger"] = {"status": "ok"}
        except Exception as exc:
            checks["ledger"] = {"status": "unavailable", "error": str(exc)[:300]}
        chains: dict[str, Any] = {}
        for source in self.sources:
            health = getattr(source, "health", None)
            chains[source.name] = health() if callable(health) else {"status": "ok"}
        checks["chains"] = chains
        if checks["ledger"]["status"] != "ok":
            status, code = "unhealthy", 503
        elif any(c.get("status") == "unreachable" for c in chains.values()):
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        return code, {"status": status, "checks": checks}
