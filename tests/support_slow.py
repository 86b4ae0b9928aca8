"""A slow stub for timing tests: a function that sleeps before it does its work, so a test can see whether a
timed path pays for that work (its seconds grow by at least the delay)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def slowed(fn: Callable[..., Any], delay: float) -> Callable[..., Any]:
    """``fn`` that first sleeps ``delay`` seconds."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kw: Any) -> Any:
        time.sleep(delay)
        return fn(*args, **kw)

    return wrapped
