"""Trying definitions before they are deployed: test files (:mod:`~starter.testing.testfile`),
mocked nodes (:mod:`~starter.testing.mocks`), a private time-skipping Temporal with a test
worker (:mod:`~starter.testing.harness`) and the runner that checks each case
(:mod:`~starter.testing.runner`). ``tideflow test``, ``tideflow deploy`` and ``tideflow shadow``
use them."""

from __future__ import annotations

from starter.testing.harness import CaseRun, HarnessError, TestServer, test_server
from starter.testing.mocks import AnswerBook, Call, MockTable
from starter.testing.runner import (
    CaseResult,
    TestReport,
    find_test_files,
    load_all,
    run_test_files,
)
from starter.testing.testfile import (
    MockAnswer,
    TestFile,
    TestFileError,
    load_test_file,
    test_file_for,
)

__all__ = [
    "AnswerBook",
    "Call",
    "CaseResult",
    "CaseRun",
    "HarnessError",
    "MockAnswer",
    "MockTable",
    "TestFile",
    "TestFileError",
    "TestReport",
    "TestServer",
    "find_test_files",
    "load_all",
    "load_test_file",
    "run_test_files",
    "test_file_for",
    "test_server",
]
