"""deploy/nats/nats.conf as a real 3-node cluster: each user may do exactly what its role needs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agentstream.devstack.stack import binary_path

CHECK = Path(__file__).parents[2] / "deploy" / "nats" / "check_permissions.py"


async def test_the_deployed_nats_permissions_hold_on_a_live_cluster() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHECK),
        binary_path("nats-server"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(120):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = output.decode()
    assert process.returncode == 0, report
    assert "0 failed" in report, report
