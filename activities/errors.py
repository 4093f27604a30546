"""Errors a node type raises. The registry maps them onto Temporal failures.

Raise :class:`RetryableNodeError` for causes that may go away (a 503, a timeout, a lock) and
:class:`PermanentNodeError` for causes that will not (a 404, a refused login, a bad document).
Any other exception is treated as retryable, like Temporal does.
"""

from __future__ import annotations


class NodeError(Exception):
    """A node failed; ``retryable`` says whether Temporal should try it again."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable


class RetryableNodeError(NodeError):
    """A cause that may go away on the next attempt."""

    retryable = True


class PermanentNodeError(NodeError):
    """A cause that another attempt cannot fix."""

    retryable = False


class NodeConfigError(PermanentNodeError):
    """The node's config (after its expressions were evaluated) does not fit its type."""
