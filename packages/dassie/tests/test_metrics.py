"""``GET /metrics``: aggregates that move with what the node does, and no identifiers."""

from pathlib import Path

import aiohttp
import orjson

from dassie.metrics import account_kind, family
from dassie.testing import TOKEN, claim_params, make_channel, running_node


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return await response.text()


def sample(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ", 1)[1])
    return None


async def test_metrics_follow_accepted_claims(tmp_path: Path) -> None:
    async with running_node(tmp_path / "ledger.db") as running:
        before = await scrape(running.url)
        assert sample(before, 'dassie_claims_accepted_total{currency="ETH"}') is None
        assert sample(before, "dassie_channels_paying") == 0

        channel = make_channel(deposit=10**6)
        running.source.add(channel)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                running.url + "/trpc", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as ws,
        ):
            for rid, (amount, nonce) in enumerate([(100, 1), (250, 2), (250, 3)]):
                params = claim_params(channel.channel_id, amount, nonce)
                frame = {"jsonrpc": "2.0", "id": rid, "method": "payment.verifyPaymentClaim"}
                await ws.send_bytes(orjson.dumps({**frame, "params": params}))
                await ws.receive()  # the third pays nothing more: insufficient-payment

        after = await scrape(running.url)
        assert sample(after, 'dassie_claims_accepted_total{currency="ETH"}') == 2
        assert sample(after, 'dassie_claims_credited_total{currency="ETH"}') == 250
        revenue = 'account="revenue/relay/TEST/ETH",asset="TEST/ETH"'
        assert sample(after, f"dassie_ledger_balance{{{revenue}}}") == -250
        receivables = 'account="assets/channel/TEST",asset="TEST/ETH"'
        assert sample(after, f"dassie_ledger_balance{{{receivables}}}") == 250
        assert sample(after, f"dassie_ledger_accounts{{{receivables}}}") == 1
        assert sample(after, "dassie_channels_paying") == 1
        assert sample(after, 'dassie_chain_up{chain="TEST"}') == 1
        assert channel.channel_id[2:] not in after  # aggregates only


def test_account_kinds_drop_ids_only() -> None:
    assert account_kind("assets/channel/LOCAL/0x" + "ab" * 32) == "assets/channel/LOCAL"
    assert account_kind("liabilities/prepaid/" + "cd" * 32) == "liabilities/prepaid"
    assert account_kind("revenue/relay/LOCAL/ETH") == "revenue/relay/LOCAL/ETH"
    assert account_kind("expenses/gas/BASE") == "expenses/gas/BASE"


def test_family_escapes_labels() -> None:
    lines = family("x_total", "counter", "Help.", [({"a": 'q"\\\n'}, 3)])
    assert lines == ["# HELP x_total Help.", "# TYPE x_total counter", 'x_total{a="q\\"\\\\\\n"} 3']
