"""Which Celery broker this checkout uses, decided once and shared by the web and the workers.

``CELERY_BROKER_URL`` in the environment always wins. Without it, ``runstack`` (``make run``)
decides when it starts: Redis on localhost when it answers, else kombu's filesystem transport
under ``var/`` (one host only). It writes the choice to ``var/broker_url``, and every process of
this checkout reads it from there (settings import it; nothing probes the network at import), so
a web process and a worker can never disagree. Before any choice was made: the filesystem
broker.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
FILESYSTEM = "filesystem://"
CHOICE_FILE = "broker_url"


def redis_answers(url: str, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections at the Redis URL's host and port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout
        ):
            return True
    except OSError:
        return False


def configured_broker(var_dir: Path) -> str:
    """The broker URL: the environment's, else the recorded choice, else the filesystem broker."""
    explicit = os.environ.get("CELERY_BROKER_URL")
    if explicit:
        return explicit
    try:
        recorded = (var_dir / CHOICE_FILE).read_text().strip()
    except OSError:
        recorded = ""
    return recorded or FILESYSTEM


def choose_broker(var_dir: Path) -> str:
    """Decide (environment, else Redis if it answers now, else filesystem) and record it."""
    url = os.environ.get("CELERY_BROKER_URL") or (
        DEFAULT_REDIS if redis_answers(DEFAULT_REDIS) else FILESYSTEM
    )
    path = var_dir / CHOICE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(url + "\n")
    tmp.replace(path)  # atomic: a process starting now reads the old or the new choice
    return url
