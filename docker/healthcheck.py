"""Container health probe for the images (standard library only, so no curl).

    python /opt/healthcheck.py PORT          GET http://127.0.0.1:PORT/health must answer 200
    python /opt/healthcheck.py PORT rpc      Ethereum JSON-RPC eth_chainId must answer a result

Exits 0 when healthy, 1 otherwise.
"""

import json
import sys
import urllib.error
import urllib.request


def probe(port: int, mode: str) -> bool:
    """Return True when the service on 127.0.0.1:port answers as expected."""
    if mode == "rpc":
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=4) as resp:
            return resp.status == 200 and "result" in json.loads(resp.read())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as resp:
        return bool(resp.status == 200)


def main(argv: list[str]) -> int:
    mode = argv[2] if len(argv) > 2 else "health"
    try:
        return 0 if probe(int(argv[1]), mode) else 1
    except (urllib.error.URLError, OSError, ValueError, IndexError):
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
