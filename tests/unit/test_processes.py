"""agentstream.processes: the local stack's output pump."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from agentstream.processes import ServiceProcess

LONG_LINE_BYTES = 200 * 1024

# Prints one line far over asyncio's 64 KiB readline limit, then a readiness marker, then
# waits to be stopped. A pump that dies on the long line leaves the child blocked on a full
# pipe, so the marker never arrives.
_CHILD = f"""
import sys, time
sys.stdout.write("x" * {LONG_LINE_BYTES} + "\\n")
sys.stdout.write("service ready\\n")
sys.stdout.flush()
time.sleep(120)
"""


async def test_output_pump_survives_a_line_over_64_kib(tmp_path: Path) -> None:
    process = ServiceProcess("long-line", [sys.executable, "-c", _CHILD], {}, tmp_path)
    await process.start()
    try:
        await process.wait_for_line("service ready", timeout_s=20.0)
        assert process.running
    finally:
        code = await process.stop(timeout_s=10.0)
    assert code == -signal.SIGTERM
    log = process.log_path.read_bytes()
    assert log == b"x" * LONG_LINE_BYTES + b"\n" + b"service ready\n"
    first, second = process.tail().splitlines()
    assert first.startswith("xxxx") and len(first) < LONG_LINE_BYTES
    assert second == "service ready"
