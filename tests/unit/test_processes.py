"""agentstream.devstack.processes: the local stack's output pump, and its services' lifetime."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from agentstream.devstack.processes import ServiceProcess

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


# Starts a service (which prints its pid and waits), then waits to be killed.
_PARENT = """
import asyncio, sys
from pathlib import Path
from agentstream.devstack.processes import ServiceProcess

async def main() -> None:
    service = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"]
    child = ServiceProcess("child", service, {}, Path(sys.argv[1]))
    await child.start()
    await child.wait_for_line("up", 20.0)
    print(child.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_service_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PARENT, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        child = int(await asyncio.wait_for(parent.stdout.readline(), 30.0))
        assert await asyncio.to_thread(_alive, child)
    finally:
        parent.kill()
        await parent.wait()
    deadline = time.monotonic() + 10.0
    while await asyncio.to_thread(_alive, child):
        assert time.monotonic() < deadline, "the service outlived the process that started it"
        await asyncio.sleep(0.05)
