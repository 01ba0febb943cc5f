"""Running a command to its end from a test: its exit code and output, never left running."""

from __future__ import annotations

import asyncio
from pathlib import Path


async def run_to_end(
    *argv: str, timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``argv`` with no input; its exit code and its output (stdout and stderr together).

    Past ``timeout_s`` it is killed and TimeoutError raised.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return await process.wait(), output.decode(errors="replace")
