"""Run a blocking library call in a worker thread with our own deadline.

The event loop never blocks.  Worker threads are daemon threads, so a call stuck in a library can never
hold the process at exit; on timeout or cancellation the ``cancel`` callback (e.g. closing the socket the
library reads from) makes the thread return soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(fn: Callable[[], T], *, timeout: float, cancel: Callable[[], None] | None = None) -> T:
    """Run ``fn()`` in a daemon thread and await its result for at most ``timeout`` seconds.

    Args:
        fn: the blocking call.
        timeout: seconds to wait.
        cancel: called (on the event loop's thread) when the wait times out or is cancelled.

    Returns:
        ``fn``'s return value.

    Raises:
        TimeoutError: ``timeout`` passed first.  Whatever ``fn`` raised, re-raised here.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(value: T | None, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - ferried to the awaiting coroutine, not handled here
            result: tuple[T | None, BaseException | None] = (None, exc)
        else:
            result = (value, None)
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked (shutdown): nobody waits
            loop.call_soon_threadsafe(deliver, *result)

    threading.Thread(target=work, name=f"blocking:{getattr(fn, '__name__', 'call')}", daemon=True).start()
    try:
        async with asyncio.timeout(timeout):
            return await fut
    except (TimeoutError, asyncio.CancelledError):
        if cancel is not None:
            cancel()
        raise
