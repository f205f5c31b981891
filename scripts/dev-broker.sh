#!/usr/bin/env bash
# A real Kafka-protocol broker on loopback for end-to-end tests and benchmarks: nisshi 0.8.1.
#
#   scripts/dev-broker.sh install                 build nisshi once per machine (about 12 minutes)
#   scripts/dev-broker.sh run [opts] -- CMD ...   start a broker, run CMD with KAFKA_BROKERS and
#                                                 BUSFLOW_TEST_BROKERS set, stop the broker
#   scripts/dev-broker.sh start [opts]            start in the background; prints the address
#   scripts/dev-broker.sh stop                    stop the broker `start` started
#
# Options: --port N (default: a free port), --storage memory|sqlite:FILE (default memory),
#          --partitions N (busflow topics, default 6), --state-dir DIR (default /tmp/busflow-dev-broker)
#
# The broker is always addressed as 127.0.0.1 (it is IPv4 only here). The script stops exactly
# the process it started, by PID, and leaves nothing running.
set -euo pipefail

NISSHI_VERSION=0.8.1
NISSHI_BIN="${NISSHI_BIN:-}"
STATE_DIR="${BUSFLOW_BROKER_STATE:-/tmp/busflow-dev-broker}"
PORT=""
STORAGE="memory"
PARTITIONS=6
TOPICS=(bus.raw bus.positions bus.rejected bus.latest)

log() { printf 'dev-broker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_nisshi() {
  if [[ -n "$NISSHI_BIN" && -x "$NISSHI_BIN" ]]; then return 0; fi
  if command -v nisshi >/dev/null 2>&1; then NISSHI_BIN="$(command -v nisshi)"; return 0; fi
  if [[ -x "$HOME/.cargo/bin/nisshi" ]]; then NISSHI_BIN="$HOME/.cargo/bin/nisshi"; return 0; fi
  return 1
}

install_nisshi() {
  if find_nisshi && "$NISSHI_BIN" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
    log "nisshi $NISSHI_VERSION already installed at $NISSHI_BIN"
    return 0
  fi
  log "building nisshi $NISSHI_VERSION from crates.io (once per machine; about 12 minutes on 2 cores)"
  # It declares rustc 1.96 but builds on 1.95. Built outside the checkout so clones share it.
  (cd "${TMPDIR:-/tmp}" && cargo install nisshi --version "$NISSHI_VERSION" --locked \
      --ignore-rust-version --no-default-features --features dynostore,libsql)
  find_nisshi || die "nisshi was installed but is not on PATH or in ~/.cargo/bin"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

parse_opts() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --port) PORT="$2"; shift 2 ;;
      --storage) STORAGE="$2"; shift 2 ;;
      --partitions) PARTITIONS="$2"; shift 2 ;;
      --state-dir) STATE_DIR="$2"; shift 2 ;;
      --) shift; REST=("$@"); return 0 ;;
      *) die "unknown option $1" ;;
    esac
  done
  REST=()
}

storage_url() {
  case "$STORAGE" in
    memory) echo "memory://busflow/" ;;
    # nisshi reads sqlite:///x as the relative path x; an absolute path needs a fourth slash.
    sqlite:*) echo "sqlite:///$(realpath -m "${STORAGE#sqlite:}")" ;;
    *) die "--storage must be memory or sqlite:FILE, not $STORAGE" ;;
  esac
}

# Starts the broker in the background; sets BROKER_PID and BROKER_ADDR.
start_broker() {
  find_nisshi || install_nisshi
  mkdir -p "$STATE_DIR"
  [[ -n "$PORT" ]] || PORT="$(free_port)"
  BROKER_ADDR="127.0.0.1:$PORT"
  local url="tcp://$BROKER_ADDR"
  log "starting nisshi on $BROKER_ADDR (storage $(storage_url)); log: $STATE_DIR/broker.log"
  "$NISSHI_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine "$(storage_url)" >"$STATE_DIR/broker.log" 2>&1 &
  BROKER_PID=$!
  echo "$BROKER_PID" >"$STATE_DIR/broker.pid"
  echo "$BROKER_ADDR" >"$STATE_DIR/broker.addr"
  local waited=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      tail -n 20 "$STATE_DIR/broker.log" >&2 || true
      die "nisshi exited during startup (see $STATE_DIR/broker.log)"
    fi
    sleep 0.2
    waited=$((waited + 1))
    if [[ $waited -gt 150 ]]; then stop_broker; die "nisshi did not listen on $BROKER_ADDR within 30 s"; fi
  done
  for t in "${TOPICS[@]}"; do
    local extra=()
    # The latest-state topic keeps one record per vehicle.
    [[ "$t" == bus.latest ]] && extra=(--config cleanup.policy=compact)
    if ! out=$("$NISSHI_BIN" topic create "$t" --partitions "$PARTITIONS" --broker "$url" "${extra[@]}" 2>&1); then
      if grep -qi "exist" <<<"$out"; then continue; fi
      log "$out"
      stop_broker
      die "could not create topic $t"
    fi
  done
  log "ready at $BROKER_ADDR (pid $BROKER_PID), topics: ${TOPICS[*]} x $PARTITIONS partitions"
}

stop_broker() {
  local pid="${BROKER_PID:-}"
  if [[ -z "$pid" && -f "$STATE_DIR/broker.pid" ]]; then pid="$(cat "$STATE_DIR/broker.pid")"; fi
  [[ -n "$pid" ]] || { log "no broker to stop"; return 0; }
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "broker $pid did not stop on SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
    log "stopped broker (pid $pid)"
  fi
  rm -f "$STATE_DIR/broker.pid" "$STATE_DIR/broker.addr"
  BROKER_PID=""
}

cmd="${1:-}"
[[ -n "$cmd" ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift
case "$cmd" in
  install) install_nisshi ;;
  start)
    parse_opts "$@"
    start_broker
    echo "$BROKER_ADDR"
    ;;
  stop)
    parse_opts "$@"
    stop_broker
    ;;
  run)
    parse_opts "$@"
    [[ ${#REST[@]} -gt 0 ]] || die "run needs a command after --"
    trap 'stop_broker' EXIT INT TERM
    start_broker
    export KAFKA_BROKERS="$BROKER_ADDR" BUSFLOW_TEST_BROKERS="$BROKER_ADDR"
    set +e
    "${REST[@]}"
    status=$?
    set -e
    exit $status
    ;;
  *) die "unknown command $cmd (install, run, start, stop)" ;;
esac
