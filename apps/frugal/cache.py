"""The cache where it only makes things faster or smoother: an outage is not an error.

Pages call these instead of ``django.core.cache.cache`` for reads and writes they can do
without (an estimate remembered for a while, a short claim): with Redis down, ``get`` answers
``default``, writes do nothing, and one warning a minute says so, instead of a 500.
"""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger("frugal.cache")
_WARN_EVERY_S = 60.0
_last_warning = 0.0


def _warn(action: str, exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_S:
        _last_warning = now
        logger.warning("cache unavailable (%s: %s); going on without it", action, exc)


def get(key: str, default=None):
    try:
        return cache.get(key, default)
    except Exception as exc:  # noqa: BLE001 - every backend fails in its own way
        _warn("get", exc)
        return default


def set(key: str, value, timeout: float | None = None) -> bool:  # noqa: A001 - cache's name
    try:
        cache.set(key, value, timeout)
        return True
    except Exception as exc:  # noqa: BLE001
        _warn("set", exc)
        return False


def add(key: str, value, timeout: float | None = None) -> bool | None:
    """``cache.add``; ``None`` when the cache does not answer (neither added nor refused)."""
    try:
        return cache.add(key, value, timeout)
    except Exception as exc:  # noqa: BLE001
        _warn("add", exc)
        return None


def touch(key: str, timeout: float | None = None) -> None:
    try:
        cache.touch(key, timeout)
    except Exception as exc:  # noqa: BLE001
        _warn("touch", exc)


def delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001
        _warn("delete", exc)
