"""``python -m starter.cli``: the ``tideflow`` command line."""

from starter.cli import entry

entry()
