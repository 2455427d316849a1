#!/usr/bin/env bash
# Property-based fuzzing of the gateway's REST API from its own OpenAPI
# document with schemathesis (PyPI, pinned, in a private venv): valid and
# invalid requests for every operation; the run fails on any 5xx answer.
#
# Usage: scripts/fuzz-api.sh GATEWAY_URL [ACCESS_TOKEN]
#   GATEWAY_URL   e.g. http://127.0.0.1:8080 (the schema is at /api/v1/openapi.json)
#   ACCESS_TOKEN  sent as `Authorization: Bearer`, so authenticated routes are
#                 reached beyond their 401
# Prints one line `requests=N server_errors=M` last; exits non-zero on a
# server error or when schemathesis itself fails.
#
# Environment (defaults in brackets):
#   FUZZ_EXAMPLES [40]   test cases per operation (35 operations: ~1,400 requests)
#   FUZZ_SEED [1]        random seed (a failing run can be repeated)
#   TOOLS_HOME [$HOME/.cache/chat-platform/tools]
set -euo pipefail

[[ $# -ge 1 ]] || {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}
GATEWAY=$1
TOKEN=${2:-}
VERSION=4.32.5
TOOLS_HOME=${TOOLS_HOME:-$HOME/.cache/chat-platform/tools}
VENV=$TOOLS_HOME/schemathesis-$VERSION
EXAMPLES=${FUZZ_EXAMPLES:-40}
SEED=${FUZZ_SEED:-1}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  mkdir -p "$TOOLS_HOME"
  python3 -m venv --clear "$VENV" >/dev/null
  "$VENV/bin/pip" install --disable-pip-version-check -q "schemathesis==$VERSION" >"$TOOLS_HOME/schemathesis-install.log" 2>&1 || {
    tail -n 20 "$TOOLS_HOME/schemathesis-install.log" >&2
    exit 1
  }
fi

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
args=(run "$GATEWAY/api/v1/openapi.json" --url "$GATEWAY"
  --checks not_a_server_error --max-examples "$EXAMPLES" --seed "$SEED"
  --workers 2 --request-timeout 10 --suppress-health-check all
  --report ndjson --report-ndjson-path "$WORK/events.ndjson")
[[ -n $TOKEN ]] && args+=(--header "Authorization: Bearer $TOKEN")

status=0
# From the scratch directory: schemathesis keeps a cache (.schemathesis/)
# in its working directory, which must not land in the repository.
(cd "$WORK" && "$VENV/bin/schemathesis" "${args[@]}") >"$WORK/out.txt" 2>&1 || status=$?

# Every response schemathesis got, from its event log.
read -r requests server_errors < <(python3 - "$WORK/events.ndjson" <<'EOF'
import json, sys
requests = errors = 0
def walk(value):
    global requests, errors
    if isinstance(value, dict):
        response = value.get("response")
        if isinstance(response, dict) and "status_code" in response:
            requests += 1
            if response["status_code"] >= 500:
                errors += 1
        for item in value.values():
            walk(item)
    elif isinstance(value, list):
        for item in value:
            walk(item)
for line in open(sys.argv[1]):
    walk(json.loads(line))
print(requests, errors)
EOF
)
if ((status != 0 || server_errors > 0)); then
  tail -n 60 "$WORK/out.txt"
fi
echo "requests=$requests server_errors=$server_errors"
exit "$status"
