"""Bounds on what a definition and its expressions may hold.

Every definition reaches libyaml, pydantic and the CEL parser, in the CLI, the HTTP API and every
worker. None of them bounds its own work: a 43 KB ``1+1+…`` expression overflows the CEL parser's
stack (the process dies with SIGSEGV), 50,000 nested brackets overflow libyaml's composer, and a
399-byte alias bomb expands to billions of values. These limits are checked before that work
starts, each with a located problem naming the limit. The defaults are far above anything written
by hand (docs/decisions.md, "Limits: definitions and expressions", says why each is where it is).
"""

from __future__ import annotations

from typing import Final

MAX_DOCUMENT_BYTES: Final = 32 * 1024 * 1024
"""Size of one definition file (UTF-8 bytes), or of the JSON of a definition sent by a client."""

MAX_NESTING: Final = 64
"""Lists and mappings inside one another, counted from the top of the document."""

MAX_VALUES: Final = 2_000_000
"""Values and keys of one document (a 100,000-node definition holds about 1.3 million)."""

MAX_ALIAS_VALUES: Final = 100_000
"""Values that YAML aliases (``*name``) may add to a document, in all."""

MAX_NODES: Final = 100_000
"""Nodes of one definition (``tasks``, ``steps`` or ``nodes``)."""

MAX_EXPRESSIONS: Final = 500_000
"""``${{ … }}`` expressions in one definition (a 100,000-node chain reading two nodes each
holds 200,000)."""

MAX_EXPRESSION_CHARS: Final = 4_096
"""Characters of one ``${{ … }}`` expression."""

MAX_EXPRESSION_TERMS: Final = 500
"""Operators of one expression (arithmetic, comparison, logic, ``?:``, field access, calls)."""

MAX_EXPRESSION_DEPTH: Final = 32
"""Brackets and parentheses inside one another in one expression."""

MAX_PROBLEMS: Final = 1_000
"""Problems reported for one definition; past them the loader stops, and the rest are counted."""
