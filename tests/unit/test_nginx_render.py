"""The load-balancer tests' copy of deploy/nginx/nginx.conf differs only where it must."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from agentstream.devstack.nginx import DEPLOYED_CONF, ConfigShapeChanged, render

RUN_DIR = Path("/tmp/lb")
UPSTREAMS = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]


def rendered(conf: str) -> str:
    return render(conf, upstreams=UPSTREAMS, port=9000, run_dir=RUN_DIR, user="tester")


def test_only_the_deployment_specific_lines_change() -> None:
    deployed = DEPLOYED_CONF.read_text()
    diff = list(difflib.ndiff(deployed.splitlines(), rendered(deployed).splitlines()))
    removed = [line[2:].strip() for line in diff if line.startswith("- ")]
    added = [line[2:].strip() for line in diff if line.startswith("+ ")]

    assert [line.split()[0] for line in removed] == [
        "user",
        "pid",
        "access_log",
        "error_log",
        "server",
        "server",
        "listen",
    ]
    assert added == [
        "user tester;",
        "pid /tmp/lb/nginx.pid;",
        "access_log /tmp/lb/access.log main;",
        "error_log /tmp/lb/error.log warn;",
        *(f"server {u} max_fails=2 fail_timeout=10s;" for u in UPSTREAMS),
        "listen 127.0.0.1:9000;",
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("listen 80;", "listen 8080;"),
        ("user nginx;", "# no user line"),
        ("server gateway-2:8000 max_fails=2", "server gateway-2:8000 max_fails=3"),
        ("server gateway-1:8000", "server gw-1:8000"),
    ],
)
def test_a_config_the_substitutions_no_longer_fit_is_refused(before: str, after: str) -> None:
    deployed = DEPLOYED_CONF.read_text()
    assert before in deployed
    with pytest.raises(ConfigShapeChanged):
        rendered(deployed.replace(before, after))
