"""gunicorn's access log line, its fields computed only when the line shows them.

gunicorn's ``Logger.atoms`` builds every field its format language knows for every request:
the time as text, the user from a decoded Authorization header, and an entry per request
header, response header and environ variable, each then copied again by ``SafeAtoms``. Our
line shows six of them. Under webhook load that work was about 6% of a web process's CPU
(bench/http_log.py; py-spy, bench/ingest_profile.py, put gunicorn's access logging at 14%).

``AccessLogger`` computes just those six when the configured format is ours, with gunicorn's
own expressions, so the line is the same byte for byte (tests/unit/test_http_log.py). A
deployment that sets another ``access_log_format`` gets gunicorn's full set, as before.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

# %(U)s is the path without the query string: webhook URLs carry their token there.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's Logger; for ACCESS_LOG_FORMAT, only the fields it shows."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": (request_time.seconds * 1000) + int(request_time.microseconds / 1000),
        }
