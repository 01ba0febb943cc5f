"""deploy/validate.sh in the test suite: every check runs, and passes; none is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VALIDATE = Path(__file__).parents[2] / "deploy" / "validate.sh"

# One name per kind of check, so that one disappearing from the script fails here too.
CHECKS = [
    "YAML parses",
    "k8s/nats.yaml embeds nats/nats.conf unchanged",
    "nats-server -t nats/nats.conf",
    "nats-server -t on k8s/nats-values.yaml merge block",
    "NATS permissions on a live 3-node cluster",
    "nginx -t nginx/nginx.conf",
    "compose config",
    "compose refuses to start without secrets",
    "kubectl kustomize k8s/",
    "kubernetes-validate --strict (rendered kustomization)",
    "kubernetes-validate --strict (secret.example.yaml)",
    "hadolint Dockerfile",
    "shellcheck deploy scripts",
]


def test_every_deploy_check_passes() -> None:
    # The tools come from the interpreter's venv (the dev extra), whichever venv runs the tests.
    env = {**os.environ, "VENV_BIN": str(Path(sys.executable).parent)}
    result = subprocess.run(
        ["bash", str(VALIDATE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report = result.stdout + result.stderr
    lines = report.splitlines()
    assert result.returncode == 0, report
    assert not [line for line in lines if line.startswith(("FAIL", "SKIP"))], report
    passed = [line.removeprefix("PASS ") for line in lines if line.startswith("PASS ")]
    assert [c for c in CHECKS if not any(p.startswith(c) for p in passed)] == [], report
    assert f"{len(passed)} passed, 0 failed" in lines, report
