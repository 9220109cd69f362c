"""Structured logs to stdout: JSON lines when not on a terminal, readable text when on one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from service.security.redaction import redact, redact_text

# Attributes every LogRecord has; anything else was passed with extra= and is context.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        # Context goes through the one redaction every stored path uses.
        line.update({k: redact(v) for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{k}={redact(v)}" for k, v in vars(record).items() if k not in _STANDARD
        )
        base = f"{datetime.now():%H:%M:%S} {record.levelname:<7} {redact_text(record.getMessage())}"
        text = f"{base}  {context}" if context else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(level: str = "INFO", json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stdout.isatty()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log request URLs at INFO would leak webhook tokens and presigned links.
    for noisy in ("urllib3", "botocore", "boto3", "werkzeug", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs several ERROR lines for each failed connect; the RabbitMQ adapter reports the
    # classified failure itself, on the delivery attempt.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
