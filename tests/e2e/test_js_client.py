"""The TypeScript client (clients/js) on the real stack: built with tsc, run by ``node --test``.

Its tests (clients/js/test) start runs, stream them to their end with the proof verified, cut
the stream mid-run and require the resumed stream to equal an uncut read, cancel a run, lose an
event on purpose and require the proof to catch it, and check the errors' types. Here the stack
is started, a slow org is added (so runs are still going when a test cuts or cancels them), and
every one of those tests must have run and passed: none skipped.
"""

from __future__ import annotations

from pathlib import Path

from agentstream.devstack.stack import LocalStack
from tests.e2e.node_runner import assert_all_passed, node_tests, run

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "js"
NODE_TESTS = 31


async def test_the_typescript_client_passes_its_tests_against_the_stack(stack: LocalStack) -> None:
    version = await run("node", "--version", cwd=REPO)
    assert int(version.strip().lstrip("v").split(".")[0]) >= 20, (
        f"Node 20+ is needed, not {version}"
    )
    # npm ci once per lock file (the Makefile's stamp); the format check; a clean build of src/
    # and test/ (tsc type-checks both, the React hook included).
    await run("make", "--no-print-directory", "clients/js/node_modules/.installed", cwd=REPO)
    await run("npm", "run", "--silent", "lint", cwd=CLIENT)
    await run("npm", "run", "--silent", "build", cwd=CLIENT)

    tap = await node_tests(stack, "dist-test/", cwd=CLIENT)
    assert_all_passed(
        tap,
        NODE_TESTS,
        (
            "streams to done, its proof verified",
            "resumes by itself with Last-Event-ID: nothing lost, nothing twice",
            "cancelRun ends a running run's stream with cancelled",
            "fails the proof with CompletenessError",
            "with a changed byte throws CompletenessError",
            "drives useRun's state machine to done",
            "useRun under React StrictMode starts a run and renders it to done, each token once",
            "useRun's cancel() ends a slow run cancelled",
        ),
    )
