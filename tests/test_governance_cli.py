"""The governance commands as a person runs them (the installed ``tideflow`` script, in child
processes): tokens, approvals refused and accepted for the acting user on the real dev server,
and the audit trail they leave."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

from temporalio.api.enums.v1 import EventType

from tests.polling import eventually
from tests.servers.tideflow_worker import Tideflow
from tests.test_cli import Cli, cli  # noqa: F401 (cli: the fixture)

REVIEW = """
name: Cli Review
tasks:
  - id: review
    type: approval
    config: {message: ship it?, approvers: [ana, finance]}
outputs:
  by: ${{ nodes.review.output.by }}
"""


async def test_tokens_are_created_once_listed_and_revoked(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    home = {"TIDEFLOW_HOME": str(tmp_path / "tokens-home"), "TIDEFLOW_USER": "root"}
    made = await cli.process(
        "token",
        "create",
        "ana",
        "--role",
        "approver",
        "--definitions",
        "invoice-*",
        "--expires",
        "30d",
        env=home,
    )
    assert made.code == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("tft_") and "\n" not in token
    assert "shown once" in made.stderr and token not in made.stderr

    listed = await cli.process("token", "list", "--json", env=home)
    [info] = json.loads(listed.stdout)
    assert (info["name"], info["roles"], info["definitions"], info["state"]) == (
        "ana",
        ["approver"],
        ["invoice-*"],
        "active",
    )
    assert info["created_by"] == "root" and info["expires_at"]
    assert token not in listed.stdout

    again = await cli.process("token", "create", "ana", "--role", "viewer", env=home)
    assert again.code == 2 and "an active token is named 'ana'" in again.stderr
    unknown = await cli.process("token", "create", "bo", "--role", "root", env=home)
    assert unknown.code == 2
    assert unknown.stderr.strip() == (
        "tideflow token create: unknown role 'root': one of viewer, operator, approver, admin"
    )
    revoked = await cli.process("token", "revoke", "ana", env=home)
    assert revoked.code == 0 and "revoked" in revoked.stdout
    table = await cli.process("token", "list", env=home)
    assert "revoked" in table.stdout.splitlines()[1]
    missing = await cli.process("token", "revoke", "ana", env=home)
    assert missing.code == 1 and "no active token is named 'ana'" in missing.stderr

    trail = await cli.process("audit", "--user", "root", "--json", env=home)
    actions = [(e["action"], e["target"], e["outcome"]) for e in json.loads(trail.stdout)]
    assert actions == [
        ("token.create", "ana", "ok"),
        ("token.create", "ana", "refused"),
        ("token.create", "bo", "refused"),
        ("token.revoke", "ana", "ok"),
        ("token.revoke", "ana", "refused"),
    ]
    key = await cli.process("encryption-key", "--id", "k9", env=home)
    key_id, _, material = key.stdout.strip().partition(":")
    assert key_id == "k9" and len(material) == 44


async def test_approvals_take_the_acting_users_identity(
    cli: Cli,  # noqa: F811
    tideflow: Tideflow,
    tmp_path: Path,
) -> None:
    path = tmp_path / "review.yaml"
    path.write_text(textwrap.dedent(REVIEW).strip() + "\n")
    started = await cli.process("start", str(path), env={"TIDEFLOW_USER": "ops"})
    assert started.code == 0, started.stderr
    workflow_id = started.stdout.strip().split()[-1]
    handle = tideflow.client.get_workflow_handle(workflow_id)

    async def waiting() -> dict[str, str]:
        from interpreter.workflow import TideflowWorkflow

        try:
            return (await handle.query(TideflowWorkflow.state)).waiting
        except Exception:
            return {}

    await eventually(waiting, lambda w: w == {"review": "approval"}, "the review waiting")

    refused = await cli.process("approve", workflow_id, "review", env={"TIDEFLOW_USER": "mallory"})
    assert refused.code == 1
    assert refused.stderr.strip() == (
        "approve: refused: mallory may not answer 'review': only ana, finance may"
    )
    assert await waiting() == {"review": "approval"}  # nothing changed

    accepted = await cli.process(
        "approve",
        workflow_id,
        "review",
        "--comment",
        "fine",
        env={"TIDEFLOW_USER": "bo", "TIDEFLOW_ROLES": "finance"},
    )
    assert accepted.code == 0, accepted.stderr
    assert (await cli.process("result", workflow_id)).json()["outputs"] == {"by": "bo"}

    # Temporal's history names the sender of the accepted update: bo, from this host.
    history = await handle.fetch_history()
    identities = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert identities == [f"bo@{socket.gethostname()}"]

    trail = await cli.process("audit", "--run", workflow_id)
    lines = trail.stdout.splitlines()
    assert len(lines) == 3, trail.stdout
    assert " ops (cli) start " in lines[0] and lines[0].endswith(" ok")
    assert (
        " mallory (cli) approve " in lines[1] and " refused: refused: mallory may not" in lines[1]
    )
    assert " bo (cli) approve " in lines[2] and lines[2].endswith("ok: node review approved")
    since = await cli.process("audit", "--run", workflow_id, "--since", "yesterday")
    assert since.code == 2 and "neither a duration" in since.stderr
