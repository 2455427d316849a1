#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the operator's tests:
# etcd + kube-apiserver (+ kube-controller-manager for garbage collection
# and Deployment -> ReplicaSet), built once from Debian bookworm's
# `kubernetes` source package (v1.20.2; no prebuilt binaries are reachable
# from these machines) and cached by version.
#
# Usage: scripts/kube.sh [up|build|env|down|help]
#   up     (default) build if needed, start etcd, the API server and the
#          controller manager if they are not running, wait for /readyz and
#          print the kubeconfig path. Idempotent.
#   build  only build (or find) the cached binaries.
#   env    print `export KUBECONFIG=...` for eval.
#   down   stop what `up` started.
#
# Environment (defaults in brackets):
#   KUBE_HOME [$HOME/.cache/chat-platform/kube]  binaries, state, logs, pid files
#   KUBE_ETCD_PORT [12379] KUBE_ETCD_PEER_PORT [12380] KUBE_API_PORT [16443]
#   KUBE_CM_PORT [10257]   (all below 32768: 32768-60999 is the ephemeral range)
#   KUBE_VERBOSE [0]       1 = progress messages on stderr
set -euo pipefail

KUBE_VERSION=1.20.2
DEB_VERSION=1.20.5+really1.20.2
KUBE_HOME=${KUBE_HOME:-$HOME/.cache/chat-platform/kube}
BIN=$KUBE_HOME/bin-$KUBE_VERSION
STATE=$KUBE_HOME/run
CERTS=$STATE/certs
ETCD_PORT=${KUBE_ETCD_PORT:-12379}
ETCD_PEER_PORT=${KUBE_ETCD_PEER_PORT:-12380}
API_PORT=${KUBE_API_PORT:-16443}
CM_PORT=${KUBE_CM_PORT:-10257}
KUBECONFIG_FILE=$STATE/kubeconfig
KUBE_VERBOSE=${KUBE_VERBOSE:-0}

log() { if [[ $KUBE_VERBOSE == 1 ]]; then printf 'kube.sh: %s\n' "$*" >&2; fi; }
have() { command -v "$1" >/dev/null 2>&1; }
die() {
  local msg=$1 f
  shift
  printf 'kube.sh: error: %s\n' "$msg" >&2
  for f in "$@"; do
    [[ -r $f ]] && { printf -- '--- last lines of %s ---\n' "$f" >&2; tail -n 30 -- "$f" >&2; }
  done
  exit 1
}
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; elif have sudo; then sudo -n "$@"; else die "need root for: $*"; fi
}

# ------------------------------------------------------------------ build

built() { [[ -x $BIN/kube-apiserver && -x $BIN/kube-controller-manager ]]; }

cmd_build() {
  built && return 0
  mkdir -p "$KUBE_HOME"
  local logf=$KUBE_HOME/build.log src=$KUBE_HOME/src
  : >"$logf"
  local pkgs=()
  have go || pkgs+=(golang-go)
  have etcd || pkgs+=(etcd-server)
  have rsync || pkgs+=(rsync)
  have openssl || pkgs+=(openssl)
  [[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || pkgs+=(golang-github-modern-go-reflect2-dev)
  if ((${#pkgs[@]} > 0)); then
    log "installing ${pkgs[*]}"
    as_root apt-get update >>"$logf" 2>&1 || die "apt-get update failed" "$logf"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" \
      >>"$logf" 2>&1 || die "apt-get install ${pkgs[*]} failed" "$logf"
  fi

  local orig=$KUBE_HOME/kubernetes_$DEB_VERSION.orig.tar.gz
  if [[ ! -s $orig ]]; then
    # A private source list with deb-src entries, so the machine's apt setup is untouched.
    local apt_dir=$KUBE_HOME/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$apt_dir/sources.list.sources"
    local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list.sources" -o "Dir::Etc::SourceParts=-"
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives")
    log "downloading the kubernetes source package"
    apt-get "${opts[@]}" update >>"$logf" 2>&1 || die "apt-get update (deb-src) failed" "$logf"
    (cd "$KUBE_HOME" && apt-get "${opts[@]}" source --download-only "kubernetes=$DEB_VERSION-2" >>"$logf" 2>&1 ||
      apt-get "${opts[@]}" source --download-only kubernetes >>"$logf" 2>&1) ||
      die "apt-get source kubernetes failed" "$logf"
    [[ -s $orig ]] || die "$orig not downloaded" "$logf"
  fi

  rm -rf "$src"
  mkdir -p "$src"
  log "extracting"
  tar -xzf "$orig" -C "$src" --strip-components=1 >>"$logf" 2>&1 || die "extracting $orig failed" "$logf"
  # Go 1.19 needs reflect2 1.0.2; the vendored 1.0.1 crashes the API server on
  # the first custom-resource validation error.
  rm -f "$src"/vendor/github.com/modern-go/reflect2/*.go "$src"/vendor/github.com/modern-go/reflect2/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$src/vendor/github.com/modern-go/reflect2/"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$src/vendor/github.com/modern-go/reflect2/" 2>/dev/null || true

  log "building kube-apiserver and kube-controller-manager (~5 min)"
  (
    cd "$src"
    export HOME=$KUBE_HOME/home GOCACHE=$KUBE_HOME/gocache GOFLAGS= GO111MODULE=off
    mkdir -p "$HOME"
    make generated_files && make WHAT=cmd/kube-apiserver && make WHAT=cmd/kube-controller-manager
  ) >>"$logf" 2>&1 || die "building Kubernetes $KUBE_VERSION failed" "$logf"
  mkdir -p "$BIN"
  cp "$src"/_output/bin/kube-apiserver "$src"/_output/bin/kube-controller-manager "$BIN/"
  rm -rf "$src" "$KUBE_HOME/gocache"
  built || die "binaries missing after the build" "$logf"
}

# -------------------------------------------------------------- running

pid_alive() { [[ -r $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

api_ready() {
  [[ -r $CERTS/token ]] || return 1
  curl -sfk --max-time 2 -H "Authorization: Bearer $(cat "$CERTS/token")" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

wait_for() { # SECONDS NAME CHECK
  local deadline=$((SECONDS + $1))
  until "$3"; do
    pid_alive "$2" || die "$2 exited during start-up" "$STATE/$2.log"
    ((SECONDS < deadline)) || die "$2 not ready after $1 s" "$STATE/$2.log"
    sleep 0.5
  done
}

etcd_ready() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q true; }

start() { # NAME CMD...
  local name=$1
  shift
  log "starting $name"
  (
    for f in /proc/"${BASHPID}"/fd/*; do
      n=${f##*/}
      ((n > 2)) && { exec {n}>&- 2>/dev/null || true; }
    done
    exec setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1
  ) &
  printf '%s\n' "$!" >"$STATE/$name.pid"
}

certs() {
  [[ -s $CERTS/sa.key && -s $CERTS/token ]] && return 0
  mkdir -p "$CERTS"
  openssl genrsa -out "$CERTS/sa.key" 2048 2>/dev/null
  openssl rsa -in "$CERTS/sa.key" -pubout -out "$CERTS/sa.pub" 2>/dev/null
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CERTS/token"
  printf '%s,admin,admin,system:masters\n' "$(cat "$CERTS/token")" >"$CERTS/tokens.csv"
}

write_kubeconfig() {
  cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: https://127.0.0.1:$API_PORT
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      token: $(cat "$CERTS/token")
contexts:
  - name: local
    context: {cluster: local, user: admin, namespace: default}
current-context: local
EOF
}

cmd_up() {
  cmd_build
  mkdir -p "$STATE"
  certs
  write_kubeconfig
  if ! pid_alive etcd; then
    rm -rf "$STATE/etcd-data"
    start etcd etcd --name default --data-dir "$STATE/etcd-data" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
  fi
  wait_for 30 etcd etcd_ready
  if ! pid_alive kube-apiserver; then
    start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
      --bind-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$CERTS" --insecure-port=0 \
      --service-cluster-ip-range=10.0.0.0/24 \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$CERTS/sa.pub" --service-account-signing-key-file="$CERTS/sa.key" \
      --token-auth-file="$CERTS/tokens.csv" --authorization-mode=RBAC --advertise-address=127.0.0.1 \
      --allow-privileged=true --disable-admission-plugins=ServiceAccount
  fi
  wait_for 60 kube-apiserver api_ready
  if ! pid_alive kube-controller-manager; then
    # Only the controllers the tests rely on: owner-reference garbage
    # collection and Deployments -> ReplicaSets (no nodes, so no pods run).
    start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
      --controllers=garbagecollector,deployment,replicaset --leader-elect=false \
      --bind-address=127.0.0.1 --secure-port="$CM_PORT" --port=0 \
      --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE"
  fi
  printf 'kubeconfig %s\n' "$KUBECONFIG_FILE"
}

cmd_down() {
  local name
  for name in kube-controller-manager kube-apiserver etcd; do
    if pid_alive "$name"; then
      kill -TERM "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
  done
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

main() {
  local cmd=${1:-up}
  case $cmd in
    up | build)
      mkdir -p "$KUBE_HOME"
      if [[ -z ${_KUBE_SH_LOCKED:-} ]] && have flock; then
        _KUBE_SH_LOCKED=1 exec flock -o -w 1200 "$KUBE_HOME/lock" bash "${BASH_SOURCE[0]}" "$@"
      fi
      if [[ $cmd == up ]]; then cmd_up; else cmd_build; fi
      ;;
    env) printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE" ;;
    down) cmd_down ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
