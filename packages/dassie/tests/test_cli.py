import signal
import subprocess
import sys


def test_devchain_subcommand_runs_the_dev_chain() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dassie.cli", "devchain", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("ChannelFactory:"):
                break
        text = "".join(lines)
        assert "chain id 31337" in text
        assert "ChannelFactory: 0x5FbDB2315678afecb367f032d93F642f64180aa3" in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_unknown_command_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dassie.cli", "launch"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
