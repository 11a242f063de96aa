"""Settings for the gunicorn processes of ``bench/examples_load.py`` only: the project's settings
plus a middleware that reports each request's server time (Server-Timing header and a log)."""

from apps.frugal.settings import *  # noqa: F403
from apps.frugal.settings import MIDDLEWARE

MIDDLEWARE = ["bench.examples_load.ServerTimingMiddleware", *MIDDLEWARE]
