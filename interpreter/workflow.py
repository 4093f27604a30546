"""``TideflowWorkflow``: the one Temporal workflow type.

It declares what Temporal sees — the run method, the ``pause``/``resume``/``event`` signals,
the validated updates and the ``state``/``report`` queries — and hands each to the run's
implementation: :class:`~interpreter.shell.CoreShell`, the loop around the run's core, or, for
a run that format-1 code started, :class:`~interpreter.legacy.LegacyRun`, that code kept
unchanged so its history replays and the run goes on as it would have.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from interpreter.control import (
        Approve,
        ControlAnswer,
        Event,
        FailNode,
        RaiseBudget,
        RetryNode,
        RunInput,
        SetVars,
        SkipNode,
    )
    from interpreter.legacy import LegacyRun
    from interpreter.report import RunReport, RunState
    from interpreter.shell import (
        DEFINITION_KEY,
        RUN_FAILED,
        STATUS_KEY,
        VERSION_KEY,
        WORKFLOW_NAME,
        CoreShell,
    )

CORE_V2 = "tideflow-core-v2"
"""Patch id telling new runs of format-1 inputs (which run on the core) from runs that
format-1 code started (which replay and continue on :class:`~interpreter.legacy.LegacyRun`)."""

__all__ = [
    "CORE_V2",
    "DEFINITION_KEY",
    "RUN_FAILED",
    "STATUS_KEY",
    "VERSION_KEY",
    "WORKFLOW_NAME",
    "TideflowWorkflow",
]


@workflow.defn(name=WORKFLOW_NAME)
class TideflowWorkflow:
    """Runs one Tideflow plan: the input carries the plan and the run's inputs."""

    @workflow.init
    def __init__(self, input: RunInput) -> None:
        self._input = input
        self._impl: CoreShell | LegacyRun | None = None
        if input.plan is not None or input.definition is None:
            self._impl = CoreShell(input)

    def _run(self) -> CoreShell | LegacyRun:
        """The run's implementation. For a format-1 input (a source definition), a run that
        format-1 code started — its history has no marker — continues as that code would
        have; a new one runs on the core (and records the marker). Decided on first use."""
        if self._impl is None:
            if workflow.patched(CORE_V2):
                self._impl = CoreShell(self._input)
            else:
                self._impl = LegacyRun(self._input)
        return self._impl

    def _shell(self, what: str) -> CoreShell:
        impl = self._run()
        if isinstance(impl, LegacyRun):
            raise ValueError(f"runs started before the upgrade cannot {what}")
        return impl

    @workflow.run
    async def run(self, input: RunInput) -> RunReport:
        """Run the plan to its end; a failed run raises with the report as failure detail."""
        return await self._run().run(input)

    # -- signals ---------------------------------------------------------------------------

    @workflow.signal
    def pause(self) -> None:
        """Start nothing new until resumed; running nodes finish, timers keep counting."""
        self._run().pause()

    @workflow.signal
    def resume(self) -> None:
        """Start the nodes that became ready while paused."""
        self._run().resume()

    @workflow.signal
    def event(self, event: Event) -> None:
        """Deliver an event to a waiting (or later) ``wait_for_event`` node; events no node of
        this run waits for are dropped, so broadcasting an event costs runs nothing."""
        self._run().event(event)

    # -- updates ---------------------------------------------------------------------------

    @workflow.update
    def skip_node(self, request: SkipNode) -> ControlAnswer:
        """Skip a pending or failed node; downstream nodes see ``output`` if given."""
        return self._run().skip_node(request)

    @skip_node.validator
    def _validate_skip(self, request: SkipNode) -> None:
        self._run()._validate_skip(request)

    @workflow.update
    def retry_node(self, request: RetryNode) -> ControlAnswer:
        """Run a node that needs attention again; the graph resumes from it."""
        return self._run().retry_node(request)

    @retry_node.validator
    def _validate_retry(self, request: RetryNode) -> None:
        self._run()._validate_retry(request)

    @workflow.update
    def fail_node(self, request: FailNode) -> ControlAnswer:
        """Give up on a node that needs attention or waits: it fails, and so does the run
        (compensating what it did)."""
        return self._shell("fail a node: cancel the run").fail_node(request)

    @fail_node.validator
    def _validate_fail(self, request: FailNode) -> None:
        self._shell("fail a node: cancel the run")._validate_fail(request)

    @workflow.update
    def set_vars(self, request: SetVars) -> ControlAnswer:
        """Change vars; later ``when`` conditions and configs see the new values."""
        return self._run().set_vars(request)

    @set_vars.validator
    def _validate_set_vars(self, request: SetVars) -> None:
        self._run()._validate_set_vars(request)

    @workflow.update
    def approve(self, request: Approve) -> ControlAnswer:
        """Approve or reject a waiting approval node (or a node waiting for a review)."""
        return self._run().approve(request)

    @approve.validator
    def _validate_approve(self, request: Approve) -> None:
        self._run()._validate_approve(request)

    @workflow.update
    def raise_budget(self, request: RaiseBudget) -> ControlAnswer:
        """Let the run spend more; nodes the budget stopped run again."""
        return self._shell("raise a budget (they have none)").raise_budget(request)

    @raise_budget.validator
    def _validate_raise_budget(self, request: RaiseBudget) -> None:
        self._shell("raise a budget (they have none)")._validate_raise_budget(request)

    # -- queries ---------------------------------------------------------------------------

    @workflow.query
    def state(self) -> RunState:
        """The run's live state: status, per-node status and attempts, vars, history."""
        if self._impl is None:
            raise ValueError("the run has not started yet")
        return self._impl.state()

    @workflow.query
    def report(self) -> RunReport:
        """The run report so far (final once the run has ended)."""
        if self._impl is None:
            raise ValueError("the run has not started yet")
        return self._impl.report()
