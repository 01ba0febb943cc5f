"""deploy/nginx/nginx.conf run for real in front of local gateways.

The tests exercise the committed file, not a look-alike: ``render`` changes only what names the
deployment (which gateways, which port, where the pid and logs go, which user) and keeps every
proxy setting as it is. Each substitution must match the file, so a change to the committed
config that a substitution no longer fits fails loudly instead of silently testing less.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentstream.devstack.processes import ServiceProcess, free_port

DEPLOYED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "nginx.conf"

_READY_TIMEOUT_S = 15.0
# The deployment's upstream servers (compose service names); their parameters are kept.
_UPSTREAM_SERVER = re.compile(
    r"^(?P<indent>[ \t]*)server gateway-\d+:\d+(?P<params>[^;]*);\n", re.M
)
# Any upstream server line (a ``server {`` block is not one).
_ANY_UPSTREAM_SERVER = re.compile(r"^[ \t]*server [^\s{]", re.M)


class ConfigShapeChanged(ValueError):
    """The committed config no longer has a line a substitution expects."""


def _substitute(conf: str, pattern: str, replacement: str, *, count: int | None = 1) -> str:
    """``conf`` with ``pattern`` replaced, failing unless it matched ``count`` times (or any)."""
    rendered, matched = re.subn(pattern, lambda _: replacement, conf, flags=re.M)
    if matched == 0 or (count is not None and matched != count):
        raise ConfigShapeChanged(f"expected {count or 'some'} match(es) of {pattern!r}, {matched}")
    return rendered


def _upstreams(conf: str, servers: Sequence[str]) -> str:
    """The deployment's ``server gateway-N:8000 …;`` lines replaced by one line per server."""
    found = list(_UPSTREAM_SERVER.finditer(conf))
    params = {m["params"] for m in found}
    if not found or len(params) != 1:
        raise ConfigShapeChanged(f"expected upstream servers with one set of parameters: {params}")
    indent, (shared,) = found[0]["indent"], params
    lines = "".join(f"{indent}server {server}{shared};\n" for server in servers)
    first, last = found[0].start(), found[-1].end()
    if len(_ANY_UPSTREAM_SERVER.findall(conf)) != len(found):
        raise ConfigShapeChanged("an upstream server is not a gateway-N line")
    if _UPSTREAM_SERVER.sub("", conf[first:last]).strip():
        raise ConfigShapeChanged("the upstream servers are no longer one block of lines")
    return conf[:first] + lines + conf[last:]


def render(conf: str, *, upstreams: Sequence[str], port: int, run_dir: Path, user: str) -> str:
    """``conf`` for one machine: ``upstreams`` (``host:port``) as the gateways, listening on
    127.0.0.1:``port``, pid and logs under ``run_dir``, workers as ``user``."""
    conf = _upstreams(conf, upstreams)
    conf = _substitute(conf, r"(?<=^user )\S+;", f"{user};")
    conf = _substitute(conf, r"(?<=^pid )\S+;", f"{run_dir}/nginx.pid;")
    conf = _substitute(conf, r"/var/log/nginx/", f"{run_dir}/", count=None)
    return _substitute(conf, r"(?<=listen )80;", f"127.0.0.1:{port};")


@dataclass(frozen=True)
class LoadBalancer:
    """A running nginx: where it listens and its process."""

    url: str
    process: ServiceProcess
    conf_path: Path


def nginx_binary() -> str:
    """The nginx executable (Debian installs it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def write_conf(gateway_urls: Sequence[str], run_dir: Path, port: int, conf: str | None) -> Path:
    """The rendered config (of ``conf``, else the deployed one) written into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rendered = render(
        DEPLOYED_CONF.read_text() if conf is None else conf,
        upstreams=[url.removeprefix("http://") for url in gateway_urls],
        port=port,
        run_dir=run_dir,
        user=getpass.getuser(),
    )
    conf_path = run_dir / "nginx.conf"
    conf_path.write_text(rendered)
    return conf_path


@contextlib.asynccontextmanager
async def load_balancer(
    gateway_urls: Sequence[str], run_dir: Path, *, conf: str | None = None
) -> AsyncIterator[LoadBalancer]:
    """nginx with the deployed config (or ``conf``) in front of ``gateway_urls``, stopped after.

    nginx runs in the foreground (``daemon off``) as the stack's other parts do, so it is
    stopped, and dies with its parent, like them.
    """
    port = free_port()
    conf_path = await asyncio.to_thread(write_conf, gateway_urls, run_dir, port, conf)
    # -e: the log nginx writes to before it has read the config, else a compiled-in path.
    argv = [nginx_binary(), "-c", str(conf_path), "-p", f"{run_dir}/", "-e", "stderr"]
    process = ServiceProcess("nginx", [*argv, "-g", "daemon off;"], {}, run_dir)
    url = f"http://127.0.0.1:{port}"
    await process.start()
    try:
        await process.wait_http_ok(f"{url}/lb-healthz", _READY_TIMEOUT_S)
        yield LoadBalancer(url=url, process=process, conf_path=conf_path)
    finally:
        await process.stop()
