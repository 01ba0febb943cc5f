"""An object of each running event loop's own, made on its first use in that loop.

The gateway's shared state of open streams lives with the event loop serving them: a test that
runs several loops (or a replica started in-process) gets a fresh one in each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def loop_local(make: Callable[[], T]) -> Callable[[], T]:
    """A function answering the running loop's own ``make()``, made the first time it asks."""
    made: dict[asyncio.AbstractEventLoop, T] = {}

    def of_running_loop() -> T:
        loop = asyncio.get_running_loop()
        found = made.get(loop)
        if found is None:
            found = made[loop] = make()
        return found

    return of_running_loop
