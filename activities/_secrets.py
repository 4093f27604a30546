"""``${{ secrets.NAME }}`` in a node's config: resolved on the worker, never in history, and
kept out of everything the node leaves behind.

The workflow leaves secret references as text (they are not evaluated there, so no secret
reaches Temporal's history); the activity wrapper replaces them with the worker's environment
variable ``TIDEFLOW_SECRET_<NAME>`` just before the node runs. Only that prefix is readable, so a
workflow author cannot read the worker's other variables (cloud credentials, say).

Every value read that way is then redacted — replaced by ``[secret NAME]`` — from what the node
leaves behind: its error message, its heartbeat details, its output and the log records written
while it runs (:func:`redacting_logs`). A value is also caught percent-encoded (in a URL) and
escaped (in JSON or a repr).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

from activities.errors import NodeConfigError

SECRET_PREFIX = "TIDEFLOW_SECRET_"
_SECRET = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def resolve_secrets(
    value: Any, environ: Mapping[str, str] | None = None, used: dict[str, str] | None = None
) -> Any:
    """A copy of ``value`` with every secret reference replaced by its value; ``used``
    collects ``{value: NAME}`` of the secrets read."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        if "secrets." not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            try:
                secret = env[SECRET_PREFIX + name]
            except KeyError:
                raise NodeConfigError(
                    f"secret {name!r} is not set on this worker "
                    f"(set the environment variable {SECRET_PREFIX}{name})"
                ) from None
            if used is not None and secret:
                used.setdefault(secret, name)
            return secret

        return _SECRET.sub(lookup, value)
    if isinstance(value, dict):
        return {k: resolve_secrets(v, env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, env, used) for v in value]
    return value


class Redactor:
    """Replaces secret values (and their encoded forms) with ``[secret NAME]``."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        """``secrets`` maps each value to the name of its secret."""
        forms: dict[str, str] = {}
        for value, name in secrets.items():
            for form in _forms(value):
                forms.setdefault(form, name)
        self._names = forms
        # Longest first, so a value containing another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: f"[secret {self._names[m.group(0)]}]", text)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value (keys included) with every secret value replaced."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        return value


def _forms(value: str) -> set[str]:
    """The ways a value shows up in text: as is, percent-encoded, JSON- and repr-escaped."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(repr(value)[1:-1])
    return {form for form in forms if form}


# --- log records --------------------------------------------------------------------------------

_active: contextvars.ContextVar[Redactor | None] = contextvars.ContextVar(
    "tideflow_secret_redactor", default=None
)
_installed = False


@contextmanager
def redacting_logs(redactor: Redactor) -> Iterator[None]:
    """Redact every log record made in this context (and the threads and tasks it starts)
    while the block runs: its message, its formatted exception and stack."""
    _install_record_factory()
    token = _active.set(redactor)
    try:
        yield
    finally:
        _active.reset(token)


def _install_record_factory() -> None:
    """Wrap logging's record factory once, so records of any logger and any handler are
    redacted when they are made (a filter would have to sit on every handler)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor = _active.get()
        if redactor:
            _redact_record(record, redactor)
        return record

    logging.setLogRecordFactory(make_record)
    _installed = True


def _redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: keep both, redacted
        message = f"{record.msg} {record.args}"
    record.msg, record.args = redactor.text(message), None
    if record.exc_info and record.exc_info[0] is not None:
        # Formatters print exc_text when it is set; without exc_info, no handler can format the
        # exception (and its messages) again by itself.
        formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redactor.text(formatted)
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redactor.text(record.stack_info)
