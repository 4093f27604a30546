"""Governance commands: ``token`` (the HTTP API's bearer tokens), ``audit`` (who changed
what), ``lineage`` (documents read and records written), ``encryption-key`` (a fresh payload
encryption key) and ``codec-server`` (decrypting payloads for the Temporal Web UI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from starter.cli.arguments import Commands, print_json
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add("token", _token_help, "manage the HTTP API's bearer tokens")
    tokens = p.add_subparsers(metavar="ACTION")
    create = tokens.add_parser(
        "create", help="create a token (printed once)", description="create a token"
    )
    create.set_defaults(handler=_token_create, command="token create")
    create.add_argument("name", metavar="NAME", help="the user the token acts as")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        metavar="ROLE",
        help="viewer, operator, approver or admin (repeatable)",
    )
    create.add_argument(
        "--definitions",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="limit the token to these definition slugs (shell patterns: 'invoice-*')",
    )
    create.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="a group an approval node's approvers may name (repeatable)",
    )
    create.add_argument("--expires", metavar="WHEN", help="90d, 12h, or an ISO date/time")
    listing = tokens.add_parser("list", help="list tokens (never their values)")
    listing.set_defaults(handler=_token_list, command="token list")
    listing.add_argument("--json", action="store_true")
    revoke = tokens.add_parser("revoke", help="revoke a token")
    revoke.set_defaults(handler=_token_revoke, command="token revoke")
    revoke.add_argument("name", metavar="NAME")

    p = commands.add("audit", _audit, "show the audit trail: who changed what, when")
    p.add_argument("--run", metavar="ID", help="actions on this run (workflow id)")
    p.add_argument("--user", metavar="USER", help="actions by this user")
    p.add_argument("--since", metavar="WHEN", help="2h, 7d, or an ISO date/time")
    p.add_argument("--action", metavar="ACTION", help="start, pause, approve, token.create…")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true")

    p = commands.add(
        "lineage", _lineage, "trace a document to the runs and records it led to, or a run"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--document", metavar="FILE|SHA256", help="a document or its sha256")
    which.add_argument("--run", metavar="ID", help="a run's workflow id")
    p.add_argument("--json", action="store_true")

    p = commands.add(
        "encryption-key", _encryption_key, "print a new payload encryption key (ID:BASE64KEY)"
    )
    p.add_argument("--id", default="k1", help="the key's id (default k1)")

    p = commands.add(
        "codec-server", _codec_server, "serve the payload codec for the Temporal Web UI"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="URL",
        help="the Web UI's origin (default http://localhost:8233; repeatable)",
    )


def _token_help(args: argparse.Namespace) -> int:
    raise Exit(EXIT_BAD_INPUT, "tideflow token: give an action: create, list or revoke")


def _token_create(args: argparse.Namespace) -> int:
    from starter.auth import tokens
    from starter.client import acting_user

    try:
        expires = tokens.parse_expiry(args.expires) if args.expires else None
        value = tokens.create_token(
            args.name,
            args.role,
            definitions=args.definitions,
            groups=args.group,
            expires_at=expires,
            by=acting_user(),
            via="cli",
        )
    except ValueError as e:  # TokenError too
        raise Exit(EXIT_BAD_INPUT, f"tideflow token create: {e}") from None
    scope = f", definitions {' '.join(args.definitions)}" if args.definitions else ""
    print(
        f"token for {args.name} (roles {', '.join(args.role)}{scope}); shown once, store it now:",
        file=sys.stderr,
    )
    print(value)
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    from starter.auth import tokens

    listed = tokens.list_tokens()
    if args.json:
        print_json([info.as_json() for info in listed])
        return EXIT_OK
    if not listed:
        print("no tokens (the API is open on 127.0.0.1 until one exists)")
        return EXIT_OK
    print(f"{'NAME':<20} {'STATE':<8} {'ROLES':<24} {'DEFINITIONS':<20} {'EXPIRES'}")
    for info in listed:
        expires = info.expires_at.strftime("%Y-%m-%d %H:%M") if info.expires_at else "-"
        print(
            f"{info.name:<20} {info.state:<8} {','.join(info.roles):<24} "
            f"{','.join(info.definitions) or '*':<20} {expires}"
        )
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from starter.auth import tokens
    from starter.client import acting_user

    try:
        tokens.revoke_token(args.name, by=acting_user(), via="cli")
    except tokens.TokenError as e:
        raise Exit(EXIT_FAILED, f"tideflow token revoke: {e}") from None
    print(f"revoked the token of {args.name}")
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from starter import audit

    try:
        since = audit.parse_since(args.since) if args.since else None
    except ValueError as e:
        raise Exit(EXIT_BAD_INPUT, f"tideflow audit: --since {e}") from None
    entries = audit.entries(
        run=args.run, user=args.user, since=since, action=args.action, limit=args.limit
    )
    if args.json:
        print_json([entry.as_json() for entry in entries])
        return EXIT_OK
    if not entries:
        print("no audit entries match")
        return EXIT_OK
    for entry in entries:
        when = entry.at.strftime("%Y-%m-%d %H:%M:%S")
        via = f" ({entry.via})" if entry.via else ""
        target = f" {entry.target}" if entry.target else ""
        detail = f": {entry.detail}" if entry.detail else ""
        print(f"{when}Z {entry.user}{via} {entry.action}{target} {entry.outcome}{detail}")
    return EXIT_OK


def _document_hash(text: str) -> str:
    """The sha256 a ``--document`` names: a file's, or the hash itself."""
    from starter.lineage import sha256_file

    path = Path(text).expanduser()
    if path.is_file():
        return sha256_file(path)[0]
    cleaned = text.strip().lower()
    if len(cleaned) == 64 and all(c in "0123456789abcdef" for c in cleaned):
        return cleaned
    raise Exit(EXIT_BAD_INPUT, f"tideflow lineage: {text}: neither a file nor a sha256")


def _lineage(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from starter import lineage

    if args.document:
        digest = _document_hash(args.document)
        runs = lineage.of_document(digest)
        if args.json:
            print_json({"document": digest, "runs": [asdict(run) for run in runs]})
            return EXIT_OK
        if not runs:
            print(f"document {digest}: no run read it")
            return EXIT_FAILED
        print(f"document {digest}: {len(runs)} run(s)")
        for run in runs:
            _print_run(run, indent="  ")
        return EXIT_OK
    found = lineage.of_run(args.run)
    if args.json:
        print_json(asdict(found))
        return EXIT_OK
    if found.definition is None and not found.documents and not found.records:
        print(f"run {args.run}: no lineage recorded")
        return EXIT_FAILED
    _print_run(found)
    return EXIT_OK


def _print_run(run: Any, indent: str = "") -> None:
    version = f" {run.version}" if run.version else ""
    print(f"{indent}run {run.workflow_id} ({run.definition or 'unknown definition'}{version})")
    for doc in run.documents:
        how = f"read by {doc.node}" if doc.node else "input"
        print(f"{indent}  document {doc.sha256} {doc.uri or ''} ({how})".rstrip())
    for record in run.records:
        rows = f", {record.rows} row(s)" if record.rows is not None else ""
        keys = f", keys {record.keys}" if record.keys else ""
        print(
            f"{indent}  wrote {record.target} (node {record.node}, {record.node_type}{rows}{keys})"
        )
    if not run.records:
        print(f"{indent}  wrote no records")


def _encryption_key(args: argparse.Namespace) -> int:
    from activities.encryption import new_key

    print(f"{args.id}:{new_key()}")
    print(
        "put it first in TIDEFLOW_ENCRYPTION_KEYS (keep the older keys after it until no run "
        "needs them) on every client, worker and API",
        file=sys.stderr,
    )
    return EXIT_OK


def _codec_server(args: argparse.Namespace) -> int:
    from starter.codec_server import serve

    return serve(host=args.host, port=args.port, cors_origins=args.cors_origin or None)
