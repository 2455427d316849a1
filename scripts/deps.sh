#!/usr/bin/env bash
# Make the platform's local dependencies available on 127.0.0.1:
#   PostgreSQL, Redis, RabbitMQ (system packages) and a MongoDB-protocol
#   server (SecantusDB from PyPI; there is no mongod on these machines).
#
# Usage: scripts/deps.sh [up|env|status|stop-mongo|help]
#   up          (default) detect what is running, start what is installed,
#               install what is missing; prints one "name  url" line per
#               dependency and nothing else on success. Idempotent.
#   env         print `export VAR=url` lines for eval (no side effects):
#               DATABASE_URL POSTGRES_URL REDIS_URL AMQP_URL MONGODB_URL
#   status      one "name  up|down  url" line per dependency; exit 1 if any is down
#   stop-mongo  stop the SecantusDB that `up` started (by its pid file)
#
# Environment (defaults in brackets):
#   POSTGRES_HOST [127.0.0.1] POSTGRES_PORT [5432] POSTGRES_USER [postgres]
#   POSTGRES_DB [postgres]    REDIS_HOST [127.0.0.1] REDIS_PORT [6379]
#   AMQP_HOST [127.0.0.1]     AMQP_PORT [5672] AMQP_USER [guest] AMQP_PASSWORD [guest]
#   MONGO_HOST [127.0.0.1]    MONGO_PORT [27017]
#   MONGO_STORAGE [:memory:]  a directory path means on-disk storage there
#   CHAT_DEPS_HOME [$HOME/.cache/chat-platform/deps]  venv, logs, pid files
#                             (secantusd-PORT.pid / .log)
#   DEPS_VERBOSE [0]          1 = progress messages on stderr
#   MONGO_START_TIMEOUT [30] RABBITMQ_START_TIMEOUT [90] REDIS_START_TIMEOUT [15]
#   PG_START_TIMEOUT [60] (seconds)
#
# SecantusDB is a GPL-2.0 test tool, never shipped with the product. If
# something already answers on MONGO_PORT it is reused as is (run
# `stop-mongo` first to change MONGO_STORAGE).
set -euo pipefail

POSTGRES_HOST=${POSTGRES_HOST:-127.0.0.1}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-postgres}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}
AMQP_USER=${AMQP_USER:-guest}
AMQP_PASSWORD=${AMQP_PASSWORD:-guest}
MONGO_HOST=${MONGO_HOST:-127.0.0.1}
MONGO_PORT=${MONGO_PORT:-27017}
MONGO_STORAGE=${MONGO_STORAGE:-:memory:}

DEPS_HOME=${CHAT_DEPS_HOME:-$HOME/.cache/chat-platform/deps}
DEPS_VERBOSE=${DEPS_VERBOSE:-0}
MONGO_START_TIMEOUT=${MONGO_START_TIMEOUT:-30}
RABBITMQ_START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-90}
REDIS_START_TIMEOUT=${REDIS_START_TIMEOUT:-15}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}

SECANTUS_VERSION=0.7.0b3
VENV=$DEPS_HOME/secantus-venv
MONGO_LOG=$DEPS_HOME/secantusd-$MONGO_PORT.log
MONGO_PID=$DEPS_HOME/secantusd-$MONGO_PORT.pid
MONGO_CONF=$DEPS_HOME/secantusd.toml
REDIS_DIR=/var/lib/redis
REDIS_LOG=/var/log/redis/ci.log
RABBITMQ_LOG_DIR=/var/log/rabbitmq

postgres_url() { printf 'postgres://%s@%s:%s/%s' "$POSTGRES_USER" "$POSTGRES_HOST" "$POSTGRES_PORT" "$POSTGRES_DB"; }
redis_url() { printf 'redis://%s:%s' "$REDIS_HOST" "$REDIS_PORT"; }
amqp_url() { printf 'amqp://%s:%s@%s:%s/%%2f' "$AMQP_USER" "$AMQP_PASSWORD" "$AMQP_HOST" "$AMQP_PORT"; }
mongo_url() { printf 'mongodb://%s:%s' "$MONGO_HOST" "$MONGO_PORT"; }

# ---------------------------------------------------------------- helpers

log() { if [[ $DEPS_VERBOSE == 1 ]]; then printf 'deps.sh: %s\n' "$*" >&2; fi; }
have() { command -v "$1" >/dev/null 2>&1; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
  local msg=$1 f
  shift
  printf 'deps.sh: error: %s\n' "$msg" >&2
  for f in "$@"; do
    if [[ -r $f ]]; then
      printf -- '--- last lines of %s ---\n' "$f" >&2
      tail -n 30 -- "$f" >&2 || true
    fi
  done
  exit 1
}

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif have sudo; then
    sudo -n "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# Close every fd above 2 in the current (sub)shell, so daemons started from
# it do not keep the caller's pipes (e.g. a CI runner's) open.
close_fds() {
  local f n
  for f in /proc/"${BASHPID}"/fd/*; do
    n=${f##*/}
    if ((n > 2)); then exec {n}>&- 2>/dev/null || true; fi
  done
}
# closed CMD...: run CMD in a subshell with only fds 0-2 open.
closed() { (close_fds && "$@"); }

# probe HOST PORT BYTES-FORMAT N: send the bytes, print the first N bytes of
# the reply as hex. Fails on refused connection or after 3 s.
probe() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "$3" >&3
    head -c "$4" <&3 | od -An -v -tx1 | tr -d " \n"
  ' probe "$@" 2>/dev/null
}

# shellcheck disable=SC2016 # expanded by the inner bash
tcp_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$1" "$2" 2>/dev/null; }

# ------------------------------------------------------------ readiness

pg_up() {
  if have pg_isready; then
    pg_isready -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -t 3
  else # SSLRequest: a postmaster answers 'N' or 'S'
    local r
    r=$(probe "$POSTGRES_HOST" "$POSTGRES_PORT" '\x00\x00\x00\x08\x04\xd2\x16\x2f' 1) || return 1
    [[ $r == 4e || $r == 53 ]]
  fi
}

redis_up() {
  local r
  r=$(probe "$REDIS_HOST" "$REDIS_PORT" 'PING\r\n' 5) || return 1
  [[ $r == 2b504f4e47 ]] # "+PONG"
}

# AMQP 0-9-1 protocol header; a ready broker answers with a Connection.Start
# method frame: type 1, channel 0, size (4 bytes), class 10, method 10.
amqp_up() {
  local r
  r=$(probe "$AMQP_HOST" "$AMQP_PORT" 'AMQP\x00\x00\x09\x01' 11) || return 1
  [[ ${r:0:6} == 010000 && ${r:14:8} == 000a000a ]]
}

# OP_MSG {hello: 1, $db: "admin"}; a MongoDB server answers with an OP_MSG
# (opcode 2013 = dd 07 00 00 at bytes 12..15 of the reply header).
mongo_up() {
  local r
  # shellcheck disable=SC2016 # literal "$db" field name
  r=$(probe "$MONGO_HOST" "$MONGO_PORT" '\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00\x1f\x00\x00\x00\x10hello\x00\x01\x00\x00\x00\x02$db\x00\x06\x00\x00\x00admin\x00\x00' 16) || return 1
  [[ ${r:24:8} == dd070000 ]]
}

# wait_for SECONDS CHECK-FUNCTION [ALIVE-FUNCTION]: poll every 0.25 s.
# Returns 1 on timeout, 2 as soon as ALIVE-FUNCTION says the process died.
wait_for() {
  local deadline=$((SECONDS + $1)) check=$2 alive=${3:-}
  until "$check"; do
    if [[ -n $alive ]] && ! "$alive"; then
      "$check" && return 0
      return 2
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.25
  done
}

# ------------------------------------------------------------- installing

APT_UPDATED=0
apt_install() {
  (($# > 0)) || return 0
  have apt-get || die "missing packages ($*) and no apt-get to install them"
  local apt_log=$DEPS_HOME/apt.log
  log "installing: $*"
  if [[ $APT_UPDATED == 0 ]]; then
    as_root apt-get update >>"$apt_log" 2>&1 || die "apt-get update failed" "$apt_log"
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    >>"$apt_log" 2>&1 || die "apt-get install $* failed" "$apt_log"
}

venv_ok() {
  [[ -x $VENV/bin/secantusd-py ]] &&
    "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("SecantusDB") != sys.argv[1])' \
      "$SECANTUS_VERSION" >/dev/null 2>&1
}

ensure_venv() {
  venv_ok && return 0
  local pip_log=$DEPS_HOME/pip.log py=${PYTHON:-python3}
  log "creating $VENV with SecantusDB==$SECANTUS_VERSION"
  "$py" -m venv --clear "$VENV" >>"$pip_log" 2>&1 || die "$py -m venv $VENV failed" "$pip_log"
  "$VENV/bin/pip" install --disable-pip-version-check -q --pre "SecantusDB==$SECANTUS_VERSION" \
    >>"$pip_log" 2>&1 || die "pip install SecantusDB==$SECANTUS_VERSION failed" "$pip_log"
  venv_ok || die "SecantusDB $SECANTUS_VERSION not usable in $VENV" "$pip_log"
}

# -------------------------------------------------------------- postgres

# "VERSION NAME STATUS LOGFILE" of the Debian cluster configured on POSTGRES_PORT.
pg_cluster() {
  pg_lsclusters -h 2>/dev/null | awk -v p="$POSTGRES_PORT" '$3 == p { print $1, $2, $4, $7; exit }'
}

PG_FRESH=0
pg_start() {
  local c ver name status logf
  c=$(pg_cluster)
  if [[ -z $c ]]; then
    if [[ -n $(pg_lsclusters -h 2>/dev/null) ]]; then
      die "no PostgreSQL cluster is configured on port $POSTGRES_PORT (see pg_lsclusters)"
    fi
    # Package installed without a cluster: create one.
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
    [[ -n $ver ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    log "creating PostgreSQL cluster $ver/main on port $POSTGRES_PORT"
    as_root pg_createcluster -p "$POSTGRES_PORT" "$ver" main >>"$DEPS_HOME/postgres-start.log" 2>&1 ||
      die "pg_createcluster $ver main failed" "$DEPS_HOME/postgres-start.log"
    PG_FRESH=1
    c=$(pg_cluster)
  fi
  read -r ver name status logf <<<"$c"
  if [[ $PG_FRESH == 1 ]]; then
    # Fresh install: listen on 127.0.0.1 only, trust TCP logins from 127.0.0.1.
    printf "listen_addresses = '127.0.0.1'\n" |
      as_root tee "/etc/postgresql/$ver/$name/conf.d/90-ci.conf" >/dev/null
    pg_trust_localhost "$ver" "$name"
  fi
  if [[ $status == online ]]; then
    if [[ $PG_FRESH == 1 ]]; then
      closed as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart >>"$DEPS_HOME/postgres-start.log" 2>&1 ||
        die "PostgreSQL $ver/$name failed to restart" "$DEPS_HOME/postgres-start.log" "$logf"
    fi
    return 0 # running (maybe still starting up); pg_wait handles the rest
  fi
  log "starting PostgreSQL $ver/$name"
  closed as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start -- -t "$PG_START_TIMEOUT" \
    >>"$DEPS_HOME/postgres-start.log" 2>&1 ||
    die "PostgreSQL $ver/$name failed to start" "$DEPS_HOME/postgres-start.log" "$logf"
}

# Put "host all all 127.0.0.1/32 trust" first in pg_hba.conf (first match wins).
pg_trust_localhost() {
  local hba="/etc/postgresql/$1/$2/pg_hba.conf"
  [[ -f $hba ]] || die "$hba not found"
  if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "adding a trust rule for 127.0.0.1 to $hba"
    { printf 'host all all 127.0.0.1/32 trust # added by chat-platform scripts/deps.sh\n'; as_root cat "$hba"; } >"$DEPS_HOME/pg_hba.tmp"
    as_root cp "$DEPS_HOME/pg_hba.tmp" "$hba"
    rm -f "$DEPS_HOME/pg_hba.tmp"
  fi
}

pg_psql() {
  PGCONNECT_TIMEOUT=5 psql -X -w -q -v ON_ERROR_STOP=1 -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" \
    -U "$POSTGRES_USER" -d postgres -tA "$@"
}

# Ready, user can log in over TCP without a password, database `test` exists.
pg_finish() {
  local c logf="" err="$DEPS_HOME/postgres-check.log" has_test
  c=$(pg_cluster)
  [[ -n $c ]] && logf=${c##* }
  if ! wait_for "$PG_START_TIMEOUT" pg_up; then
    die "PostgreSQL not ready on $POSTGRES_HOST:$POSTGRES_PORT after ${PG_START_TIMEOUT}s" "$DEPS_HOME/postgres-start.log" "$logf"
  fi
  have psql || apt_install postgresql-client
  if ! has_test=$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>"$err"); then
    # Typically a fresh Debian cluster (scram for TCP): trust 127.0.0.1, reload, retry.
    [[ -n $c ]] || die "cannot log in to PostgreSQL as $POSTGRES_USER over TCP" "$err"
    local ver name
    read -r ver name _ <<<"$c"
    pg_trust_localhost "$ver" "$name"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >>"$err" 2>&1 || true
    sleep 0.5
    has_test=$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>"$err") ||
      die "cannot log in to PostgreSQL as $POSTGRES_USER over TCP with trust auth" "$err" "$logf"
  fi
  if [[ $has_test != 1 ]]; then
    log "creating database test"
    pg_psql -c 'CREATE DATABASE test' >/dev/null 2>"$err" || die "CREATE DATABASE test failed" "$err"
  fi
}

# ----------------------------------------------------------------- redis

redis_start() {
  local bind=("$REDIS_HOST")
  [[ $REDIS_HOST == 127.0.0.1 ]] && bind+=("-::1") # optional IPv6 loopback
  as_root mkdir -p "$REDIS_DIR" "$(dirname "$REDIS_LOG")"
  log "starting Redis on $REDIS_HOST:$REDIS_PORT"
  closed as_root redis-server --daemonize yes --bind "${bind[@]}" --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$REDIS_DIR" --logfile "$REDIS_LOG" >>"$DEPS_HOME/redis-start.log" 2>&1 ||
    die "redis-server failed to start" "$DEPS_HOME/redis-start.log" "$REDIS_LOG"
}

redis_finish() {
  wait_for "$REDIS_START_TIMEOUT" redis_up ||
    die "Redis not answering PING on $REDIS_HOST:$REDIS_PORT" "$DEPS_HOME/redis-start.log" "$REDIS_LOG"
}

# -------------------------------------------------------------- rabbitmq

rabbit_logs() {
  local f
  for f in "$DEPS_HOME/rabbitmq-start.log" "$RABBITMQ_LOG_DIR"/startup_err "$RABBITMQ_LOG_DIR"/startup_log \
    "$RABBITMQ_LOG_DIR"/rabbit@*.log; do
    [[ -s $f && $f != *_upgrade.log ]] && printf '%s\n' "$f"
  done
  return 0
}

RABBIT_STARTED=0
# Alive, or too early to tell (beam.smp appears a moment after -detached returns).
rabbit_alive() {
  ((SECONDS < RABBIT_STARTED + 5)) || ! have pgrep || pgrep -u rabbitmq beam.smp >/dev/null 2>&1
}

rabbit_start() {
  # On a fresh install, mirror this project's machines: node rabbit@localhost,
  # everything (AMQP, epmd, distribution) on 127.0.0.1.
  if [[ ! -e /etc/rabbitmq/rabbitmq-env.conf && ! -e /etc/rabbitmq/rabbitmq.conf ]]; then
    log "writing /etc/rabbitmq/rabbitmq-env.conf and rabbitmq.conf (127.0.0.1 only)"
    as_root mkdir -p /etc/rabbitmq
    printf '%s\n' 'NODENAME=rabbit@localhost' 'ERL_EPMD_ADDRESS=127.0.0.1' \
      'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' |
      as_root tee /etc/rabbitmq/rabbitmq-env.conf >/dev/null
    printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$AMQP_PORT" | as_root tee /etc/rabbitmq/rabbitmq.conf >/dev/null
  fi
  if as_root rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    # The Erlang node runs but the broker app is stopped (rabbitmqctl stop_app).
    log "starting the RabbitMQ app on the running node"
    closed as_root rabbitmqctl -q start_app >>"$DEPS_HOME/rabbitmq-start.log" 2>&1 || true
  else
    log "starting RabbitMQ"
    RABBIT_STARTED=$SECONDS
    closed as_root rabbitmq-server -detached >>"$DEPS_HOME/rabbitmq-start.log" 2>&1 ||
      die "rabbitmq-server -detached failed" "$DEPS_HOME/rabbitmq-start.log"
  fi
}

rabbit_finish() {
  local rc=0
  wait_for "$RABBITMQ_START_TIMEOUT" amqp_up rabbit_alive || rc=$?
  if ((rc == 2)); then
    # shellcheck disable=SC2046 # rabbit_logs prints one path per line
    die "RabbitMQ exited during startup" $(rabbit_logs)
  elif ((rc != 0)); then
    # shellcheck disable=SC2046
    die "RabbitMQ not accepting AMQP on $AMQP_HOST:$AMQP_PORT after ${RABBITMQ_START_TIMEOUT}s" $(rabbit_logs)
  fi
}

# ------------------------------------------------------------- secantusdb

mongo_pid() {
  local pid
  [[ -r $MONGO_PID ]] || return 1
  read -r pid <"$MONGO_PID" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # Only a live process that is really our secantusd-py counts.
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q secantusd-py || return 1
  printf '%s\n' "$pid"
}

mongo_alive() { mongo_pid >/dev/null; }

# Alive and not a zombie.
proc_alive() { [[ -r /proc/$1/stat ]] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

MONGO_CHILD=
mongo_starting() {
  if [[ -n $MONGO_CHILD ]]; then proc_alive "$MONGO_CHILD"; else mongo_alive; fi
}

mongo_start() {
  local storage=$MONGO_STORAGE
  if [[ $storage != :memory: ]]; then
    mkdir -p -- "$storage"
    storage=$(cd -- "$storage" && pwd)
  fi
  if mongo_alive; then
    return 0 # ours, still starting; mongo_finish waits
  fi
  if tcp_open "$MONGO_HOST" "$MONGO_PORT"; then
    die "something that is not a MongoDB server listens on $MONGO_HOST:$MONGO_PORT"
  fi
  ensure_venv
  # An explicit (empty) config file turns off secantusd.toml auto-discovery.
  [[ -f $MONGO_CONF ]] || printf '# settings come from scripts/deps.sh flags\n' >"$MONGO_CONF"
  [[ -f $MONGO_LOG ]] && mv -f -- "$MONGO_LOG" "$MONGO_LOG.1"
  log "starting SecantusDB on $MONGO_HOST:$MONGO_PORT (storage $storage)"
  (
    cd -- "$DEPS_HOME"
    close_fds
    exec setsid "$VENV/bin/secantusd-py" --config "$MONGO_CONF" --host "$MONGO_HOST" \
      --port "$MONGO_PORT" --storage-path "$storage" </dev/null >>"$MONGO_LOG" 2>&1
  ) &
  MONGO_CHILD=$!
  printf '%s\n' "$MONGO_CHILD" >"$MONGO_PID"
}

mongo_finish() {
  local rc=0
  wait_for "$MONGO_START_TIMEOUT" mongo_up mongo_starting || rc=$?
  if ((rc == 2)); then
    die "SecantusDB exited during startup" "$MONGO_LOG"
  elif ((rc != 0)); then
    die "SecantusDB not answering on $MONGO_HOST:$MONGO_PORT after ${MONGO_START_TIMEOUT}s" "$MONGO_LOG"
  fi
}

mongo_stop() {
  local pid
  if ! pid=$(mongo_pid); then
    rm -f -- "$MONGO_PID"
    mongo_up && printf 'deps.sh: the server on %s:%s was not started by deps.sh; left alone\n' \
      "$MONGO_HOST" "$MONGO_PORT" >&2
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f -- "$MONGO_PID"
}

# -------------------------------------------------------------- commands

line() { printf '%-9s %s\n' "$1" "$2"; }

cmd_up() {
  local pg=1 rd=1 mq=1 mg=1 pkgs=()
  pg_up || pg=0
  redis_up || rd=0
  amqp_up || mq=0
  mongo_up || mg=0

  # Install what is missing, in one apt-get run.
  if ((pg == 0)) && ! { have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }; then
    pkgs+=(postgresql)
    PG_FRESH=1
  fi
  ((rd == 0)) && ! have redis-server && pkgs+=(redis-server)
  ((mq == 0)) && ! have rabbitmq-server && pkgs+=(rabbitmq-server)
  if ((mg == 0)) && ! venv_ok && ! "${PYTHON:-python3}" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    pkgs+=(python3-venv)
  fi
  if ((${#pkgs[@]} > 0)); then
    apt_install "${pkgs[@]}"
  fi

  # Kick off everything that is down (RabbitMQ and SecantusDB start in the
  # background), then wait for each and print its line.
  if ((mq == 0)); then
    if tcp_open "$AMQP_HOST" "$AMQP_PORT"; then
      log "port $AMQP_PORT open but no AMQP answer yet; waiting"
    else
      rabbit_start
    fi
  fi
  ((mg == 0)) && mongo_start
  ((rd == 0)) && redis_start
  if ((pg == 0)); then
    pg_start
  fi

  pg_finish
  line postgres "$(postgres_url)"
  ((rd == 0)) && redis_finish
  line redis "$(redis_url)"
  ((mq == 0)) && rabbit_finish
  line rabbitmq "$(amqp_url)"
  ((mg == 0)) && mongo_finish
  line mongodb "$(mongo_url)"
}

cmd_env() {
  local pg
  pg=$(postgres_url)
  printf 'export DATABASE_URL=%q\n' "$pg"
  printf 'export POSTGRES_URL=%q\n' "$pg"
  printf 'export REDIS_URL=%q\n' "$(redis_url)"
  printf 'export AMQP_URL=%q\n' "$(amqp_url)"
  printf 'export MONGODB_URL=%q\n' "$(mongo_url)"
}

cmd_status() {
  local down=0 s
  if pg_up; then s=up; else s=down down=1; fi
  printf '%-9s %-5s %s\n' postgres "$s" "$(postgres_url)"
  if redis_up; then s=up; else s=down down=1; fi
  printf '%-9s %-5s %s\n' redis "$s" "$(redis_url)"
  if amqp_up; then s=up; else s=down down=1; fi
  printf '%-9s %-5s %s\n' rabbitmq "$s" "$(amqp_url)"
  if mongo_up; then s=up; else s=down down=1; fi
  printf '%-9s %-5s %s\n' mongodb "$s" "$(mongo_url)"
  return "$down"
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

main() {
  local cmd=${1:-up}
  case $cmd in
    up | stop-mongo)
      mkdir -p -- "$DEPS_HOME"
      # One `up`/`stop-mongo` at a time; -o keeps started daemons from
      # inheriting (and holding) the lock.
      if [[ -z ${_DEPS_SH_LOCKED:-} ]] && have flock; then
        _DEPS_SH_LOCKED=1 exec flock -o -w 600 "$DEPS_HOME/deps.lock" bash "${BASH_SOURCE[0]}" "$@"
      fi
      unset _DEPS_SH_LOCKED
      if [[ $cmd == up ]]; then cmd_up; else mongo_stop; fi
      ;;
    env) cmd_env ;;
    status) cmd_status ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
