"""The dev chain: py-evm (through eth-tester) and its Ethereum JSON-RPC methods.

No I/O here: :class:`DevChain` takes a method name and JSON params and returns
a JSON-ready result or raises :class:`RpcError`. Every transaction is mined in
its own block at once (automine; ``evm_setAutomine false`` keeps signed
transactions waiting in a :class:`~devchain.mempool.Mempool` until ``evm_mine``
instead); block timestamps follow the wall clock plus
the offset that ``evm_increaseTime`` accumulates.

Not thread-safe: callers serialise access (the server runs it on one thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from eth.abc import (
    BlockHeaderAPI,
    ComputationAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
)
from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_abi.abi import decode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import (
    BlockNotFound,
    FilterNotFound,
    SnapshotNotFound,
    TransactionNotFound,
    ValidationError,
)
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from payment_channel.artifacts import load_artifact

from .accounts import ACCOUNTS, CHAIN_ID, FACTORY_ADDRESS, HD_PATH, INITIAL_BALANCE_WEI, MNEMONIC
from .mempool import Mempool, PooledTransaction, PoolError
from .wire import (
    EXECUTION_REVERTED,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SERVER_ERROR,
    Json,
    Params,
    RpcError,
    param,
    parse_address,
    parse_data,
    parse_hash,
    parse_quantity,
    parse_transaction,
    to_wire,
    wire_block,
    wire_log,
    wire_receipt,
    wire_transaction,
)

__all__ = ["CLIENT_VERSION", "DevChain", "RpcError"]

CLIENT_VERSION = "devchain/0.1.0/py-evm"
PRIORITY_FEE_WEI = 1_000_000_000
_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
_BLOCK_TAGS = frozenset({"latest", "earliest", "pending", "safe", "finalized"})


class DevChain:
    """A fresh dev chain: funded accounts, the ChannelFactory deployed, automine on."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._time_offset = 0
        self._next_timestamp: int | None = None
        self._snapshot_clocks: dict[int, tuple[int, int | None]] = {}
        self._backend = PyEVMBackend.from_mnemonic(
            MNEMONIC,
            genesis_state_overrides={"balance": INITIAL_BALANCE_WEI},
            num_accounts=len(ACCOUNTS),
            hd_path=HD_PATH,
        )
        # setup_tester_chain builds a fresh chain class per backend: give it our id.
        type(self._backend.chain).chain_id = CHAIN_ID
        self._tester = EthereumTester(self._backend, auto_mine_transactions=True)
        self._automine = True
        self._pool = Mempool()
        self.accounts: tuple[str, ...] = tuple(self._tester.get_accounts())
        if self.accounts != tuple(address for address, _ in ACCOUNTS):
            raise RuntimeError("genesis accounts do not match devchain.accounts.ACCOUNTS")
        self.factory_address = self._deploy_factory()
        self._methods: dict[str, Callable[[Params], Json]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }

    def _deploy_factory(self) -> ChecksumAddress:
        artifact = load_artifact("ChannelFactory")
        tx_hash = self.rpc_eth_sendTransaction(
            [{"from": self.accounts[0], "data": artifact.bytecode, "gas": hex(5_000_000)}]
        )
        receipt = self._tester.get_transaction_receipt(tx_hash)
        address = str(receipt["contract_address"])
        if receipt["status"] != 1 or address != FACTORY_ADDRESS:
            raise RuntimeError(f"ChannelFactory deployment failed (address {address})")
        return FACTORY_ADDRESS

    # -- dispatch ---------------------------------------------------------

    def has_method(self, method: str) -> bool:
        return method in self._methods

    def call(self, method: str, params: Json) -> Json:
        """Run one JSON-RPC method; raises RpcError (never anything else for bad input)."""
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(INVALID_PARAMS, "params must be an array")
        try:
            return handler(params)
        except RpcError:
            raise
        except (BlockNotFound, TransactionNotFound, FilterNotFound, SnapshotNotFound) as exc:
            raise RpcError(SERVER_ERROR, str(exc)) from exc
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise RpcError(SERVER_ERROR, f"invalid request: {exc}") from exc
        except Exception as exc:  # py-evm's own ValidationError and friends
            raise RpcError(SERVER_ERROR, f"{type(exc).__name__}: {exc}") from exc

    # -- time -------------------------------------------------------------

    def _latest_header(self) -> BlockHeaderAPI:
        """The header of the latest mined block (the chain's canonical head)."""
        return cast(BlockHeaderAPI, self._backend.chain.get_canonical_head())

    def _timestamp_for_next_block(self) -> int:
        """Wall clock + offset (or the timestamp set for it), strictly after its parent."""
        parent = int(self._latest_header().timestamp)
        if self._next_timestamp is not None:
            timestamp = self._next_timestamp
        else:
            timestamp = int(self._clock()) + self._time_offset
        return max(timestamp, parent + 1)

    def _prepare_next_block(self) -> None:
        """Stamp the pending block just before a transaction or evm_mine fills it."""
        timestamp = self._timestamp_for_next_block()
        self._next_timestamp = None
        chain = self._backend.chain
        chain.header = chain.header.copy(timestamp=timestamp)

    # -- block identifiers --------------------------------------------------

    def _block_id(self, value: Json) -> int | str:
        if isinstance(value, str) and value in _BLOCK_TAGS:
            return value
        if isinstance(value, dict):
            if "blockHash" in value:
                block = self._tester.get_block_by_hash(parse_hash(value["blockHash"], "blockHash"))
                return int(block["number"])
            if "blockNumber" in value:
                return self._block_id(value["blockNumber"])
        number = parse_quantity(value, "block number")
        if number > int(self._latest_header().block_number):
            raise RpcError(SERVER_ERROR, f"header not found: block {number} is in the future")
        return number

    # -- web3 / net ----------------------------------------------------------

    def rpc_web3_clientVersion(self, params: Params) -> Json:
        return CLIENT_VERSION

    def rpc_net_version(self, params: Params) -> Json:
        return str(CHAIN_ID)

    def rpc_net_listening(self, params: Params) -> Json:
        return True

    def rpc_eth_chainId(self, params: Params) -> Json:
        return hex(CHAIN_ID)

    def rpc_eth_syncing(self, params: Params) -> Json:
        return False

    def rpc_eth_accounts(self, params: Params) -> Json:
        return list(self.accounts)

    # -- state -----------------------------------------------------------------

    def rpc_eth_blockNumber(self, params: Params) -> Json:
        return hex(int(self._latest_header().block_number))

    def rpc_eth_getBalance(self, params: Params) -> Json:
        address = parse_address(param(params, 0))
        return hex(self._tester.get_balance(address, self._block_id(param(params, 1, "latest"))))

    def rpc_eth_getTransactionCount(self, params: Params) -> Json:
        address = parse_address(param(params, 0))
        block = self._block_id(param(params, 1, "latest"))
        waiting = self._pool.waiting(address) if block == "pending" else 0
        return hex(self._tester.get_nonce(address, block) + waiting)

    def rpc_eth_getCode(self, params: Params) -> Json:
        address = parse_address(param(params, 0))
        return self._tester.get_code(address, self._block_id(param(params, 1, "latest")))

    def rpc_eth_getStorageAt(self, params: Params) -> Json:
        address = parse_address(param(params, 0))
        slot = parse_quantity(param(params, 1), "storage slot")
        block = self._block_id(param(params, 2, "latest"))
        return self._tester.get_storage_at(address, hex(slot), block)

    # -- fees --------------------------------------------------------------------

    def _pending_base_fee(self) -> int:
        return int(self._backend.chain.header.base_fee_per_gas)

    def rpc_eth_gasPrice(self, params: Params) -> Json:
        return hex(self._pending_base_fee() + PRIORITY_FEE_WEI)

    def rpc_eth_maxPriorityFeePerGas(self, params: Params) -> Json:
        return hex(PRIORITY_FEE_WEI)

    def rpc_eth_feeHistory(self, params: Params) -> Json:
        count = parse_quantity(param(params, 0), "block count")
        newest_id = self._block_id(param(params, 1, "latest"))
        percentiles = param(params, 2, [])
        if not 1 <= count <= 1024:
            raise RpcError(INVALID_PARAMS, "block count must be between 1 and 1024")
        if not isinstance(percentiles, list):
            raise RpcError(INVALID_PARAMS, "reward percentiles must be an array")
        newest = int(self._tester.get_block_by_number(newest_id)["number"])
        oldest = max(0, newest - count + 1)
        base_fees: list[str] = []
        ratios: list[float] = []
        for number in range(oldest, newest + 1):
            block = self._tester.get_block_by_number(number)
            base_fees.append(hex(int(block["base_fee_per_gas"])))
            ratios.append(int(block["gas_used"]) / int(block["gas_limit"]))
        next_block = (
            self._tester.get_block_by_number("pending")
            if newest_id in ("latest", "pending")
            else None
        )
        if next_block is not None:
            base_fees.append(hex(int(next_block["base_fee_per_gas"])))
        else:
            base_fees.append(base_fees[-1])
        result: dict[str, Json] = {
            "oldestBlock": hex(oldest),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
        }
        if percentiles:
            result["reward"] = [[hex(PRIORITY_FEE_WEI)] * len(percentiles) for _ in ratios]
        return result

    # -- execution without a transaction -------------------------------------------

    def _simulation_vm(self, block: int | str) -> VirtualMachineAPI:
        """A VM on the state after ``block``, with no base fee (calls cost nothing)."""
        chain = self._backend.chain
        if block in ("latest", "pending", "safe", "finalized"):
            # The pending block, stamped as it would be if mined now.
            header = chain.header.copy(
                timestamp=self._timestamp_for_next_block(), base_fee_per_gas=0
            )
        else:
            number = 0 if block == "earliest" else int(block)
            header = chain.get_canonical_block_header_by_number(number).copy(base_fee_per_gas=0)
        return cast(VirtualMachineAPI, chain.get_vm(header))

    def _simulate(self, params: Params, *, estimate: bool = False) -> Json:
        tx = parse_transaction(param(params, 0))
        tx.setdefault("from", "0x" + "00" * 20)
        if not {"gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"} & tx.keys():
            tx["max_fee_per_gas"] = tx["max_priority_fee_per_gas"] = 0
        vm = self._simulation_vm(self._block_id(param(params, 1, "latest")))
        raw_tx = self._tester.normalizer.normalize_inbound_transaction(tx)
        state = vm.state
        raw_tx.setdefault("gas", vm.get_header().gas_limit)
        raw_tx.setdefault("nonce", state.get_nonce(raw_tx["from"]))
        unsigned = self._backend._get_normalized_and_unsigned_evm_transaction(raw_tx)
        spoofed = SpoofTransaction(unsigned, from_=raw_tx["from"])
        computation = _run_and_revert(state, spoofed)
        if computation.is_error:
            raise _execution_error(computation)
        if not estimate:
            return "0x" + bytes(computation.output).hex()
        return hex(_estimate_gas(state, spoofed, computation, int(raw_tx["gas"])))

    def rpc_eth_call(self, params: Params) -> Json:
        return self._simulate(params)

    def rpc_eth_estimateGas(self, params: Params) -> Json:
        return self._simulate(params, estimate=True)

    # -- transactions -------------------------------------------------------------------

    def rpc_eth_sendRawTransaction(self, params: Params) -> Json:
        raw = parse_data(param(params, 0), "raw transaction")
        if not raw:
            raise RpcError(INVALID_PARAMS, "empty raw transaction")
        tx, sender = self._check_raw_transaction(raw)
        cost = tx.gas * tx.max_fee_per_gas + tx.value
        if self._automine:
            self._check_nonce_and_funds(sender, tx.nonce, cost)
            self._prepare_next_block()
            return self._tester.send_raw_transaction("0x" + raw.hex())
        self._check_funds(sender, cost)
        pooled = _pooled(tx, sender, raw)
        try:
            self._pool.add(pooled, self._tester.get_nonce(sender, "latest"))
        except PoolError as exc:
            raise RpcError(SERVER_ERROR, str(exc)) from None
        return pooled.tx_hash

    def _check_raw_transaction(self, raw: bytes) -> tuple[SignedTransactionAPI, str]:
        """Reject what a real node's mempool would, before touching the chain."""
        try:
            tx: SignedTransactionAPI = (
                self._backend.chain.get_vm().get_transaction_builder().decode(raw)
            )
        except Exception as exc:
            raise RpcError(SERVER_ERROR, f"invalid raw transaction: {exc}") from exc
        if tx.chain_id is not None and tx.chain_id != CHAIN_ID:
            raise RpcError(SERVER_ERROR, f"invalid chain id {tx.chain_id}: expected {CHAIN_ID}")
        try:
            tx.validate()
            sender = to_checksum_address(tx.sender)
        except Exception as exc:
            raise RpcError(SERVER_ERROR, f"invalid transaction: {exc}") from exc
        return tx, sender

    def _check_nonce_and_funds(self, sender: str, nonce: int, cost: int) -> None:
        expected = self._tester.get_nonce(sender, "latest")
        if nonce < expected:
            raise RpcError(SERVER_ERROR, f"nonce too low: next nonce {expected}, tx nonce {nonce}")
        if nonce > expected:
            raise RpcError(SERVER_ERROR, f"nonce too high: next nonce {expected}, tx nonce {nonce}")
        self._check_funds(sender, cost)

    def _check_funds(self, sender: str, cost: int) -> None:
        balance = self._tester.get_balance(sender, "latest")
        if cost > balance:
            raise RpcError(
                SERVER_ERROR,
                f"insufficient funds for gas * price + value: have {balance} want {cost}",
            )

    def rpc_eth_sendTransaction(self, params: Params) -> Json:
        tx = parse_transaction(param(params, 0))
        sender = tx.get("from")
        if not self._automine:
            raise RpcError(
                SERVER_ERROR,
                "eth_sendTransaction needs automine: sign the transaction and use "
                "eth_sendRawTransaction while automine is off",
            )
        if sender not in self.accounts:
            raise RpcError(SERVER_ERROR, f"unknown account {sender}: not unlocked on this node")
        if "gas" not in tx:
            tx["gas"] = parse_quantity(self.rpc_eth_estimateGas([param(params, 0)]), "gas")
        if "gas_price" not in tx:
            tx.setdefault("max_priority_fee_per_gas", PRIORITY_FEE_WEI)
            tx.setdefault(
                "max_fee_per_gas", 2 * self._pending_base_fee() + tx["max_priority_fee_per_gas"]
            )
        fee = tx.get("gas_price") or tx["max_fee_per_gas"]
        tx["nonce"] = tx.get("nonce", self._tester.get_nonce(sender, "latest"))
        self._check_nonce_and_funds(sender, tx["nonce"], tx["gas"] * fee + tx.get("value", 0))
        self._prepare_next_block()
        return self._tester.send_transaction(tx)

    def rpc_eth_getTransactionReceipt(self, params: Params) -> Json:
        tx_hash = parse_hash(param(params, 0), "transaction hash")
        try:
            receipt = self._tester.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
        if receipt["block_number"] is None:
            return None
        tx = self._tester.get_transaction_by_hash(tx_hash)
        wire = wire_receipt(receipt)
        wire["from"] = tx["from"]
        wire["to"] = tx["to"] or None
        wire["type"] = to_wire(tx.get("type", 2))
        return wire

    def rpc_eth_getTransactionByHash(self, params: Params) -> Json:
        tx_hash = parse_hash(param(params, 0), "transaction hash")
        pooled = self._pool.get(tx_hash)
        if pooled is not None:
            return cast(Json, dict(pooled.wire))
        try:
            return wire_transaction(self._tester.get_transaction_by_hash(tx_hash))
        except TransactionNotFound:
            return None

    # -- blocks and logs --------------------------------------------------------------

    def rpc_eth_getBlockByNumber(self, params: Params) -> Json:
        block_id = param(params, 0)
        full = bool(param(params, 1, False))
        try:
            block_number = self._block_id(block_id)
        except RpcError:
            if isinstance(block_id, str) and block_id.startswith("0x"):
                return None  # a future block: null, as real nodes answer
            raise
        try:
            return wire_block(self._tester.get_block_by_number(block_number, full))
        except BlockNotFound:
            return None

    def rpc_eth_getBlockByHash(self, params: Params) -> Json:
        block_hash = parse_hash(param(params, 0), "block hash")
        full = bool(param(params, 1, False))
        try:
            return wire_block(self._tester.get_block_by_hash(block_hash, full))
        except BlockNotFound:
            return None

    @staticmethod
    def _log_criteria(criteria: Json) -> tuple[Json, Json]:
        """Parse a filter's address and topics into eth-tester's form."""
        if not isinstance(criteria, dict):
            raise RpcError(INVALID_PARAMS, "the filter is a JSON object")
        address = criteria.get("address")
        if isinstance(address, list):
            address = [parse_address(a) for a in address]
        elif address is not None:
            address = parse_address(address)
        topics = criteria.get("topics")
        if topics is not None:
            if not isinstance(topics, list):
                raise RpcError(INVALID_PARAMS, "topics must be an array")
            topics = [
                None
                if t is None
                else [parse_hash(x, "topic") for x in t]
                if isinstance(t, list)
                else parse_hash(t, "topic")
                for t in topics
            ]
        return address, topics

    def rpc_eth_getLogs(self, params: Params) -> Json:
        criteria = param(params, 0, {})
        address, topics = self._log_criteria(criteria)
        if criteria.get("blockHash") is not None:
            if criteria.get("fromBlock") is not None or criteria.get("toBlock") is not None:
                raise RpcError(INVALID_PARAMS, "blockHash excludes fromBlock/toBlock")
            number = self._block_id({"blockHash": criteria["blockHash"]})
            from_block: int | str = number
            to_block: int | str = number
        else:
            from_block = self._block_id(criteria.get("fromBlock") or "latest")
            to_block = self._block_id(criteria.get("toBlock") or "latest")
        logs = self._tester.get_logs(
            from_block=from_block, to_block=to_block, address=address, topics=topics
        )
        return [wire_log(log) for log in logs]

    # -- filters (polled with eth_getFilterChanges) ------------------------------------

    def rpc_eth_newFilter(self, params: Params) -> Json:
        """A log filter; a numeric fromBlock also collects the logs already mined."""
        criteria = param(params, 0, {})
        address, topics = self._log_criteria(criteria)
        bounds = [criteria.get("fromBlock"), criteria.get("toBlock")]
        from_block, to_block = (
            None if b is None else b if b in _BLOCK_TAGS else self._block_id(b) for b in bounds
        )
        filter_id = self._tester.create_log_filter(
            from_block=from_block, to_block=to_block, address=address, topics=topics
        )
        return hex(filter_id)

    def rpc_eth_newBlockFilter(self, params: Params) -> Json:
        return hex(self._tester.create_block_filter())

    def rpc_eth_getFilterChanges(self, params: Params) -> Json:
        filter_id = parse_quantity(param(params, 0), "filter id")
        changes = self._tester.get_only_filter_changes(filter_id)
        return [wire_log(c) if isinstance(c, dict) else c for c in changes]

    def rpc_eth_getFilterLogs(self, params: Params) -> Json:
        filter_id = parse_quantity(param(params, 0), "filter id")
        return [
            wire_log(c) for c in self._tester.get_all_filter_logs(filter_id) if isinstance(c, dict)
        ]

    def rpc_eth_uninstallFilter(self, params: Params) -> Json:
        try:
            self._tester.delete_filter(parse_quantity(param(params, 0), "filter id"))
        except FilterNotFound:
            return False
        return True

    # -- development helpers -------------------------------------------------------------

    def rpc_evm_increaseTime(self, params: Params) -> Json:
        seconds = param(params, 0)
        if isinstance(seconds, str):
            seconds = parse_quantity(seconds, "seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise RpcError(INVALID_PARAMS, f"invalid seconds: {seconds!r}")
        self._time_offset += seconds
        return self._time_offset

    def rpc_evm_setNextBlockTimestamp(self, params: Params) -> Json:
        timestamp = parse_quantity(param(params, 0), "timestamp")
        latest = int(self._latest_header().timestamp)
        if timestamp <= latest:
            raise RpcError(
                INVALID_PARAMS, f"timestamp {timestamp} is not after the latest block's {latest}"
            )
        self._next_timestamp = timestamp
        self._time_offset = timestamp - int(self._clock())
        return None

    def rpc_evm_mine(self, params: Params) -> Json:
        option = param(params, 0, None)
        if isinstance(option, dict):
            option = option.get("timestamp")
        if option is not None:
            self.rpc_evm_setNextBlockTimestamp([option])
        if self._pool:
            self._mine_pool()
            return "0x0"
        self._prepare_next_block()
        self._tester.mine_blocks(1)
        return "0x0"

    def _mine_pool(self) -> None:
        """Mine every waiting transaction, each in a block of its own as automine would.

        One that can no longer be mined (its sender's funds went meanwhile) is
        dropped, as a real node drops it.
        """
        for pooled in self._pool.take_all():
            self._prepare_next_block()
            try:
                self._tester.send_raw_transaction("0x" + pooled.raw.hex())
            except Exception:
                continue

    def rpc_evm_setAutomine(self, params: Params) -> Json:
        """Automine on (each transaction mined at once) or off (they wait for evm_mine).

        Turning it back on mines what is waiting.
        """
        enabled = param(params, 0)
        if not isinstance(enabled, bool):
            raise RpcError(INVALID_PARAMS, f"automine must be true or false, not {enabled!r}")
        self._automine = enabled
        if enabled:
            self._mine_pool()
        return None

    def rpc_anvil_dropTransaction(self, params: Params) -> Json:
        """Forget a waiting transaction (and its sender's later ones), as a mempool may."""
        tx_hash = parse_hash(param(params, 0), "transaction hash")
        self._pool.drop(tx_hash)
        return None

    def rpc_txpool_content(self, params: Params) -> Json:
        """What waits to be mined, as geth shows it (``queued`` is always empty here)."""
        pending: dict[str, dict[str, Json]] = {}
        for pooled in self._pool.snapshot():
            pending.setdefault(pooled.sender, {})[str(pooled.nonce)] = cast(Json, dict(pooled.wire))
        return {"pending": cast(Json, pending), "queued": {}}

    def rpc_evm_snapshot(self, params: Params) -> Json:
        snapshot = int(self._tester.take_snapshot())
        self._snapshot_clocks[snapshot] = (self._time_offset, self._next_timestamp)
        return hex(snapshot)

    def rpc_evm_revert(self, params: Params) -> Json:
        """Back to the snapshot (chain and clock offset); false for an unknown id."""
        snapshot = parse_quantity(param(params, 0), "snapshot id")
        try:
            self._tester.revert_to_snapshot(snapshot)
        except SnapshotNotFound:
            return False
        self._time_offset, self._next_timestamp = self._snapshot_clocks.get(
            snapshot, (self._time_offset, None)
        )
        return True


def _run_and_revert(state: StateAPI, tx: SpoofTransaction) -> ComputationAPI:
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(cast(SignedTransactionAPI, tx))
    finally:
        state.revert(snapshot)


def _estimate_gas(
    state: StateAPI, tx: SpoofTransaction, computation: ComputationAPI, cap: int
) -> int:
    """The least gas limit (within 1000) with which ``tx`` succeeds.

    Starts from the gas the run at ``cap`` consumed (before refunds), which is
    often enough; otherwise (an SSTORE needs 2300 gas left, nested calls get
    63/64 of it) steps up and bisects, usually in a few runs.
    """
    intrinsic = int(cast(SignedTransactionAPI, tx).intrinsic_gas)
    low = intrinsic + int(computation.get_gas_used())

    def succeeds(gas: int) -> bool:
        retry = SpoofTransaction(cast(SignedTransactionAPI, tx), gas=gas)
        return not _run_and_revert(state, retry).is_error

    if low >= cap or succeeds(low):
        return min(low, cap)
    # Step up (doubling) to a limit that works, then bisect back down.
    step = 2500
    high = min(low + step, cap)
    while high < cap and not succeeds(high):
        low, step = high, step * 2
        high = min(low + step, cap)
    while high - low > 1000:
        middle = (low + high) // 2
        if succeeds(middle):
            high = middle
        else:
            low = middle
    return high


def _execution_error(computation: ComputationAPI) -> RpcError:
    error = computation.error
    if isinstance(error, Revert):
        data = bytes(error.args[0]) if error.args and isinstance(error.args[0], bytes) else b""
        message = "execution reverted"
        if data[:4] == _ERROR_STRING_SELECTOR:
            try:
                message += ": " + str(decode(["string"], data[4:])[0])
            except Exception:
                pass
        return RpcError(EXECUTION_REVERTED, message, "0x" + data.hex())
    return RpcError(SERVER_ERROR, f"execution failed: {type(error).__name__} {error}".strip())


def _pooled(tx: SignedTransactionAPI, sender: str, raw: bytes) -> PooledTransaction:
    """A decoded, checked transaction as the pool keeps it."""
    tx_hash = "0x" + bytes(tx.hash).hex()
    type_id = getattr(tx, "type_id", None) or 0
    wire: dict[str, object] = {
        "hash": tx_hash,
        "nonce": hex(tx.nonce),
        "from": sender,
        "to": to_checksum_address(tx.to) if tx.to else None,
        "value": hex(tx.value),
        "gas": hex(tx.gas),
        "gasPrice": hex(tx.max_fee_per_gas),
        "input": "0x" + bytes(tx.data).hex(),
        "blockHash": None,
        "blockNumber": None,
        "transactionIndex": None,
        "type": hex(type_id),
        "chainId": hex(CHAIN_ID),
        "v": hex(tx.y_parity if type_id else cast(Any, tx).v),
        "r": hex(tx.r),
        "s": hex(tx.s),
    }
    if type_id == 2:
        wire["maxFeePerGas"] = hex(tx.max_fee_per_gas)
        wire["maxPriorityFeePerGas"] = hex(tx.max_priority_fee_per_gas)
        wire["accessList"] = []
    return PooledTransaction(
        tx_hash=tx_hash,
        raw=raw,
        sender=sender,
        nonce=tx.nonce,
        max_fee_per_gas=tx.max_fee_per_gas,
        max_priority_fee_per_gas=tx.max_priority_fee_per_gas,
        wire=wire,
    )
