#!/usr/bin/env bash
# Check the Helm chart and every manifest without a cluster:
#   1. `helm lint --strict` of charts/chat-platform with its default values and
#      with each charts/chat-platform/ci/*-values.yaml;
#   2. renders it with each of those (CRDs included);
#   3. manifests/install/operator.yaml equals a fresh render
#      (scripts/render-manifests.sh stdout) and the chart's crds/ equal crds/;
#   4. `kubernetes-validate --strict -k $KUBE_VERSION` of every rendered object
#      and every YAML file under manifests/: built-in kinds must validate;
#      only the custom kinds ChatBot, Bot (chatbot.platform/v1alpha1) and
#      ServiceMonitor (monitoring.coreos.com/v1) may lack a schema there;
#   5. ChatBot and Bot objects against the openAPIV3Schema of the generated
#      CRDs in crds/ (when they exist), unknown fields rejected like
#      `kubectl --validate=strict`;
#   6. policy of the rendered chart: restricted pod security, no RBAC
#      wildcards, ClusterRole only when watching all namespaces;
#   7. values.schema.json rejects bad values (a string replica count, an
#      unknown key, an unknown log format) and the templates' guards fire.
#
# Usage: scripts/validate-k8s.sh [help]
#   Runs from any directory, reads no input, prints one summary line on
#   success; on failure prints what failed (with tool output) and exits 1.
#   Tools come from scripts/k8s-tools.sh (installed on first use).
#
# Environment (defaults in brackets):
#   KUBE_VERSION [1.30.0]  Kubernetes version to validate against
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=$ROOT/charts/chat-platform
INSTALL=$ROOT/manifests/install/operator.yaml
KUBE_VERSION=${KUBE_VERSION:-1.30.0}
RELEASE=chat-platform
NAMESPACE=chat-platform

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
case ${1:-} in
  "") ;;
  help | -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
REPORT=$WORK/report
: >"$REPORT"
FAILED=()

# failed NAME [OUTPUT-FILE]: record a failed check and what the tool said.
failed() {
  FAILED+=("$1")
  {
    printf -- '--- FAILED: %s\n' "$1"
    if [[ -n ${2:-} && -s $2 ]]; then cat -- "$2"; fi
  } >>"$REPORT"
}

# ------------------------------------------------------------------- tools

if ! tools_env=$(bash "$ROOT/scripts/k8s-tools.sh" env 2>"$WORK/tools.err"); then
  cat -- "$WORK/tools.err" >&2
  printf 'validate-k8s.sh: error: scripts/k8s-tools.sh could not provide helm and kubernetes-validate\n' >&2
  exit 1
fi
eval "$tools_env"
PYTHON=$(dirname "$KUBERNETES_VALIDATE")/python # the venv's: has PyYAML and jsonschema

helm_template() { # NAME OUT [helm args...]
  local name=$1 out=$2
  shift 2
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --kube-version "$KUBE_VERSION" --include-crds "$@" >"$out" 2>"$WORK/$name.err"
}

# ------------------------------------------------- 1-2. lint and render

shopt -s nullglob
values_files=("$CHART"/ci/*-values.yaml)
renders=()
if "$HELM" lint --strict "$CHART" >"$WORK/lint-default.out" 2>&1; then :; else
  failed "helm lint --strict (default values)" "$WORK/lint-default.out"
fi
if helm_template default "$WORK/render-default.yaml"; then
  renders+=("$WORK/render-default.yaml")
else
  failed "helm template (default values)" "$WORK/default.err"
fi
for f in "${values_files[@]}"; do
  name=$(basename "$f" .yaml)
  if ! "$HELM" lint --strict "$CHART" -f "$f" >"$WORK/lint-$name.out" 2>&1; then
    failed "helm lint --strict -f ci/${f##*/}" "$WORK/lint-$name.out"
  fi
  if helm_template "$name" "$WORK/render-$name.yaml" -f "$f"; then
    renders+=("$WORK/render-$name.yaml")
  else
    failed "helm template -f ci/${f##*/}" "$WORK/$name.err"
  fi
done

# ------------------------------------------------------------- 3. drift

if bash "$ROOT/scripts/render-manifests.sh" stdout >"$WORK/install.yaml" 2>"$WORK/install.err"; then
  if ! cmp -s "$WORK/install.yaml" "$INSTALL"; then
    diff -u --label "manifests/install/operator.yaml (committed)" --label "fresh render" \
      "$INSTALL" "$WORK/install.yaml" 2>&1 | head -n 60 >"$WORK/install.diff" || true
    failed "manifests/install/operator.yaml is stale: run scripts/render-manifests.sh" "$WORK/install.diff"
  fi
else
  failed "scripts/render-manifests.sh stdout" "$WORK/install.err"
fi

crd_files=("$ROOT"/crds/*.yaml)
: >"$WORK/crds.out"
for f in "${crd_files[@]}"; do
  [[ -f $CHART/crds/${f##*/} ]] && cmp -s "$f" "$CHART/crds/${f##*/}" ||
    printf 'charts/chat-platform/crds/%s differs from crds/%s or is missing\n' "${f##*/}" "${f##*/}" >>"$WORK/crds.out"
done
for f in "$CHART"/crds/*.yaml; do
  [[ -f $ROOT/crds/${f##*/} ]] ||
    printf 'charts/chat-platform/crds/%s has no counterpart in crds/\n' "${f##*/}" >>"$WORK/crds.out"
done
if [[ -s $WORK/crds.out ]]; then
  failed "the chart's CRDs are not a copy of crds/: run scripts/render-manifests.sh" "$WORK/crds.out"
fi

# ------------------------------------------- 4. kubernetes-validate --strict

mapfile -t manifest_files < <(find "$ROOT/manifests" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
objects=0
warned_custom=0
if ((${#renders[@]} + ${#manifest_files[@]} > 0)); then
  set +e
  "$KUBERNETES_VALIDATE" --strict -k "$KUBE_VERSION" "${renders[@]}" "${manifest_files[@]}" >"$WORK/kv.out" 2>&1
  kv_rc=$?
  set -e
  objects=$(grep -c ' passed for resource ' "$WORK/kv.out" || true)
  # Only the custom kinds may lack a schema; a built-in kind without one
  # means a wrong or removed apiVersion.
  grep '^WARN' "$WORK/kv.out" |
    grep -Ev "Couldn't find schema for kind (ChatBot|Bot) with api version chatbot\.platform/v1alpha1 |Couldn't find schema for kind ServiceMonitor with api version monitoring\.coreos\.com/v1 " \
      >"$WORK/kv.warn" || true
  warned_custom=$(grep -c "^WARN.*Couldn't find schema" "$WORK/kv.out" || true)
  if ((kv_rc != 0)) || grep -q '^ERROR' "$WORK/kv.out"; then
    grep -v '^INFO\|^WARN' "$WORK/kv.out" | sed "s#$WORK/render-#rendered chart: #; s#$ROOT/##" >"$WORK/kv.err"
    failed "kubernetes-validate --strict -k $KUBE_VERSION" "$WORK/kv.err"
  fi
  if [[ -s $WORK/kv.warn ]]; then
    sed "s#$WORK/render-#rendered chart: #; s#$ROOT/##" "$WORK/kv.warn" >"$WORK/kv.warn2"
    failed "kubernetes-validate: objects of unknown kind/apiVersion (only ChatBot, Bot, ServiceMonitor may lack a schema)" "$WORK/kv.warn2"
  fi
fi

# ------------------------ 5-6. custom resources against the CRDs; chart policy

cat >"$WORK/check.py" <<'PY'
"""Custom resources against the generated CRD schemas, and chart policy."""
import copy, os, sys
import yaml, jsonschema

root, mode = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
problems = []

def docs(path):
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if isinstance(d, dict) and d.get("kind"):
                yield d

def name(d):
    return f'{d["kind"]}/{d.get("metadata", {}).get("name", "?")}'

def strict(schema):
    """An openAPIV3Schema as draft-07 JSON schema: nullable, int-or-string,
    and unknown fields rejected where the API server would prune them."""
    if not isinstance(schema, dict):
        return schema
    s = {}
    for k, v in schema.items():
        if k.startswith("x-kubernetes-"):
            continue
        if k == "properties":
            s[k] = {name: strict(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            s[k] = strict(v)
        elif k in ("anyOf", "allOf", "oneOf"):
            s[k] = [strict(sub) for sub in v]
        else:
            s[k] = v
    if schema.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("type") == "object" and "properties" in s and "additionalProperties" not in s \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        s["additionalProperties"] = False
    if s.pop("nullable", False):
        t = s.get("type")
        if t:
            s["type"] = [t, "null"]
        elif "anyOf" in s:
            s["anyOf"] = s["anyOf"] + [{"type": "null"}]
        if "enum" in s and None not in s["enum"]:
            s["enum"] = s["enum"] + [None]
    return s

if mode == "crs":
    crd_dir, files = args[0], args[1:]
    schemas = {}
    for fn in sorted(os.listdir(crd_dir)):
        if not fn.endswith(".yaml"):
            continue
        for crd in docs(os.path.join(crd_dir, fn)):
            if crd["kind"] != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                sch = (v.get("schema") or {}).get("openAPIV3Schema")
                if sch:
                    top = strict(sch)
                    # apiVersion, kind, metadata are the API server's to check.
                    props = top.setdefault("properties", {})
                    for k in ("apiVersion", "kind"):
                        props.setdefault(k, {"type": "string"})
                    props["metadata"] = {"type": "object"}
                    schemas[(f'{group}/{v["name"]}', kind)] = top
    checked = 0
    for path in files:
        for d in docs(path):
            key = (d.get("apiVersion"), d["kind"])
            if not key[0] or not key[0].startswith("chatbot.platform/"):
                continue
            where = f'{os.path.relpath(path, root) if path.startswith(root) else "rendered chart"}: {name(d)}'
            if key not in schemas:
                problems.append(f"{where}: no CRD in crds/ defines {key[1]} {key[0]}")
                continue
            v = jsonschema.Draft7Validator(schemas[key])
            errs = sorted(v.iter_errors(d), key=lambda e: list(e.absolute_path))
            for e in errs[:10]:
                loc = ".".join(str(p) for p in e.absolute_path) or "(root)"
                problems.append(f"{where}: {loc}: {e.message}")
            checked += 1
    print(checked)

elif mode == "policy":
    # args: default-render all-on-render (optional)
    for path in args:
        objs = list(docs(path))
        label = os.path.basename(path)
        kinds = {o["kind"] for o in objs}
        watch_all = not any(
            o["kind"] == "Deployment" and any(
                e.get("name") == "WATCH_NAMESPACE" and e.get("value")
                for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", []))
            for o in objs)
        if watch_all and not {"ClusterRole", "ClusterRoleBinding"} <= kinds:
            problems.append(f"{label}: watching all namespaces needs a ClusterRole and ClusterRoleBinding")
        if not watch_all and kinds & {"ClusterRole", "ClusterRoleBinding"}:
            problems.append(f"{label}: watchNamespace is set, yet a ClusterRole/ClusterRoleBinding is rendered")
        for o in objs:
            if o["kind"] in ("Role", "ClusterRole"):
                for r in o.get("rules", []):
                    for field in ("apiGroups", "resources", "verbs"):
                        if "*" in r.get(field, []):
                            problems.append(f"{label}: {name(o)}: wildcard in {field}")
                    if r.get("resources") == ["secrets"] and set(r["verbs"]) & {"update", "delete", "deletecollection"}:
                        problems.append(f"{label}: {name(o)}: the operator must not update or delete Secrets")
            if o["kind"] == "Deployment":
                pod = o["spec"]["template"]["spec"]
                psc = pod.get("securityContext", {})
                if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                    problems.append(f"{label}: {name(o)}: pod needs runAsNonRoot and seccomp RuntimeDefault")
                for c in pod["containers"]:
                    sc = c.get("securityContext", {})
                    if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                            or "ALL" not in sc.get("capabilities", {}).get("drop", []):
                        problems.append(f"{label}: {name(o)}/{c['name']}: needs allowPrivilegeEscalation false, "
                                        "readOnlyRootFilesystem, capabilities drop ALL")
                    ports = {p.get("name") for p in c.get("ports", [])}
                    for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                        g = c.get(probe, {}).get("httpGet", {})
                        if g.get("path") != path_ or g.get("port") != "admin" or "admin" not in ports:
                            problems.append(f"{label}: {name(o)}/{c['name']}: {probe} must GET {path_} on port admin")
    print(len(args))

for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

crs_checked=none
if ((${#crd_files[@]} > 0)); then
  if crs_checked=$("$PYTHON" "$WORK/check.py" "$ROOT" crs "$ROOT/crds" "${renders[@]}" "${manifest_files[@]}" 2>"$WORK/crs.err"); then :; else
    failed "custom resources against the CRDs in crds/" "$WORK/crs.err"
  fi
fi
if ((${#renders[@]} > 0)); then
  if ! "$PYTHON" "$WORK/check.py" "$ROOT" policy "${renders[@]}" >/dev/null 2>"$WORK/policy.err"; then
    failed "policy of the rendered chart" "$WORK/policy.err"
  fi
fi

# ------------------------------------- 7. bad values are rejected

# expect_rejected NAME EXPECTED-MESSAGE VALUES-YAML
rejected=0
expect_rejected() {
  local name=$1 expected=$2 out=$WORK/bad-$1
  printf '%s\n' "$3" >"$out.yaml"
  if "$HELM" template "$RELEASE" "$CHART" --kube-version "$KUBE_VERSION" -f "$out.yaml" >"$out.out" 2>&1; then
    printf 'values accepted:\n%s\n' "$3" >"$out.why"
    failed "bad values were accepted ($name)" "$out.why"
  elif ! grep -qF -- "$expected" "$out.out"; then
    { printf 'expected the error to mention: %s\ngot:\n' "$expected"; cat -- "$out.out"; } >"$out.why"
    failed "bad values were rejected for another reason ($name)" "$out.why"
  else
    rejected=$((rejected + 1))
  fi
}
schema_msg="values don't meet the specifications of the schema"
expect_rejected replicas-string "$schema_msg" $'operator:\n  replicas: "two"'
expect_rejected unknown-key "$schema_msg" $'operator:\n  replica: 1'
expect_rejected log-format "$schema_msg" $'operator:\n  logFormat: xml'
expect_rejected image-pull-policy "$schema_msg" $'image:\n  pullPolicy: Sometimes'
expect_rejected two-active-operators "operator.replicas must be 1" \
  $'operator:\n  replicas: 2\n  leaderElection:\n    enabled: false'
expect_rejected chatbot-without-spec "chatBot.spec is required" $'chatBot:\n  enabled: true'

# ------------------------------------------------------------------ report

if ((${#FAILED[@]} > 0)); then
  cat -- "$REPORT" >&2
  printf 'validate-k8s.sh: %d check(s) failed:\n' "${#FAILED[@]}" >&2
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
if [[ $crs_checked == none ]]; then
  crs_note="ChatBot/Bot not checked against a CRD (crds/ has none yet)"
else
  crs_note="$crs_checked ChatBot/Bot object(s) valid against crds/"
fi
printf 'validate-k8s.sh: ok: chart linted and rendered with %d values set(s); %d objects valid for Kubernetes %s (strict) in %d rendering(s) + %d file(s) under manifests/, %d custom resource(s) left to their CRDs; %s; %d bad values file(s) rejected\n' \
  "$((${#values_files[@]} + 1))" "$objects" "$KUBE_VERSION" "${#renders[@]}" "${#manifest_files[@]}" "$warned_custom" "$crs_note" "$rejected"
