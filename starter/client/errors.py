"""The error a run's refusal (or its end) is reported with."""

from __future__ import annotations


class ControlError(RuntimeError):
    """A control request the run refused (the reason says why), or a run that has ended."""
