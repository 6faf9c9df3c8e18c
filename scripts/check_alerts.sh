#!/usr/bin/env bash
# Check the Prometheus configuration, the alert rules and the dashboard's queries, and
# run the alert rules' unit tests. Installs promtool (Debian package "prometheus")
# when it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/deploy/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
  echo "==> promtool not found: installing the Debian package prometheus"
  if [ "$(id -u)" -ne 0 ]; then
    echo "promtool is missing: install it (apt-get install prometheus) or run this as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "==> $(promtool --version 2>&1 | head -n 1)"

promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml

# Every query of the Grafana dashboard must parse: check them as recording rules, with
# Grafana's $__rate_interval replaced by a fixed range.
PYTHON="$ROOT/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" - "$ROOT/deploy/grafana/levy-dashboard.json" > "$work/dashboard-queries.yml" <<'PY'
import json
import sys

def expressions(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for child in node.values():
            yield from expressions(child)
    elif isinstance(node, list):
        for child in node:
            yield from expressions(child)

with open(sys.argv[1]) as f:
    found = list(expressions(json.load(f)))
rules = [
    {"record": f"dashboard:query_{n}", "expr": expr.replace("$__rate_interval", "5m")}
    for n, expr in enumerate(found)
]
print(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
PY
echo "==> the dashboard's queries"
promtool check rules "$work/dashboard-queries.yml"
