"""``tideflow eval FILE --cases PATH``: how right a definition's AI steps are, on labelled cases.

Runs through the real engine: the Temporal server at ``TEMPORAL_ADDRESS`` when one answers
(with a worker in this process polling a queue of its own), otherwise the embedded server.
Scoring is :mod:`starter.evaluation`.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from starter.cli.arguments import Commands, load_definition, print_json
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add ``eval``."""
    p = commands.add(
        "eval",
        _eval,
        "run a definition over labelled cases and print its accuracy per field and label, "
        "latency, tokens and cost (exit 1 below --min-accuracy)",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--cases",
        required=True,
        type=Path,
        metavar="PATH",
        help="a folder of documents with expected.json, or a JSONL file of {inputs, expected}",
    )
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument(
        "--min-accuracy",
        type=float,
        metavar="X",
        help="exit 1 when the accuracy over every field is below X (0.9 or 90)",
    )
    p.add_argument(
        "--model",
        help="run every AI node on this model (a catalogue name or local:NAME)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how far numbers may be off (default 0.01, or 0.01%% when larger)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N cases")


async def _eval(args: argparse.Namespace) -> int:
    from activities import WorkerSettings
    from starter.embedded import embedded_temporal
    from starter.evaluation import CasesError, load_cases, run_cases, score, with_model

    definition = load_definition(args.file)
    if args.model:
        from activities._models import check_model_name

        try:
            check_model_name(args.model)
        except ValueError as e:
            raise Exit(EXIT_BAD_INPUT, f"--model: {e}") from None
        definition = with_model(definition, args.model)
    document_input = _document_input(definition)
    try:
        cases = load_cases(args.cases, document_input)
    except CasesError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    if args.limit:
        cases = cases[: args.limit]
    folder = (args.cases if args.cases.is_dir() else args.cases.parent).resolve()
    settings = WorkerSettings.from_env().for_development()
    # A queue of this evaluation's own: its runs go to the worker below, with these settings.
    queue = f"tideflow-eval-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(
        update={"task_queue": queue, "file_roots": [*settings.file_roots, folder]}
    )
    quiet = args.json

    def progress(number: int, total: int, result: object) -> None:
        if not quiet:
            from starter.evaluation import CaseResult

            assert isinstance(result, CaseResult)
            status = result.report.status if result.report else "not started"
            print(
                f"[{number}/{total}] {result.case.id}: {status} in {result.seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    async with embedded_temporal(settings) as client:
        results = await run_cases(client, definition, cases, task_queue=queue, progress=progress)
    scores = score(results, tolerance=args.tolerance)
    if args.json:
        print_json({"definition": args.file, "cases_path": str(args.cases), **scores.as_json()})
    else:
        from starter.evaluation_table import print_scores

        print_scores(args.file, scores)
    if args.min_accuracy is not None:
        wanted = args.min_accuracy / 100 if args.min_accuracy > 1 else args.min_accuracy
        if scores.accuracy < wanted:
            print(
                f"eval: accuracy {scores.accuracy:.1%} is below --min-accuracy {wanted:.1%}",
                file=sys.stderr,
            )
            return EXIT_FAILED
    return EXIT_OK


def _document_input(definition: object) -> str:
    """The input a case document is given as: the definition's only input, else
    ``document``."""
    inputs = getattr(definition, "inputs", None) or {}
    names = list(inputs)
    return names[0] if len(names) == 1 else "document"
