"""Logging helpers."""

import logging


class OneLineClientErrors(logging.Filter):
    """Drop the traceback of a refused request (a 4xx such as a 403): one warning line is enough.

    Django logs ``Forbidden (Permission denied): /path`` with the PermissionDenied traceback;
    it says nothing an operator needs, and a walk of refused URLs would flood the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and record.exc_info:
            record.exc_info = None
            record.exc_text = None
        return True
