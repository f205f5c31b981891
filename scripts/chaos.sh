#!/usr/bin/env bash
# Fault-injection scenarios against real processes on one machine (release builds, nisshi broker).
#
#   scripts/chaos.sh broker-outage [--outage SECONDS]   (default 30)
#       simulator, pipeline and gateway run against nisshi with the sqlite engine; the broker is
#       stopped for the outage and restarted on the same port and data. Passes when no process
#       exits, the gateway keeps serving its last state during the outage and reports the source
#       as stale in /readyz and /metrics, fresh positions reach the gateway after the restart, the
#       simulator delivered everything (or said what it could not), and the pipeline's books
#       balance: raw in = positions + rejected + duplicates, with raw in = simulator delivered.
#   scripts/chaos.sh gateway-restart [--clients N]       (default 1000)
#       N SSE viewers (busflow load --reconnect --verify-state) while the gateway is stopped and
#       started again under them. Passes when every viewer reconnects, no vehicle is ever shown
#       outside a viewport, and at the end every viewer holds exactly the gateway's vehicles for
#       its viewport (no ghosts, none missing) after the input stopped.
#   scripts/chaos.sh slow-clients [--clients N]          (default 1000)
#       N normal SSE viewers while the gateway ingests 2,000 updates/s, first alone (30 s), then
#       beside 20 stalled streams (never read) and 20 trickling ones (1 byte/s) over the whole
#       city that reconnect whenever they are cut off (30 s), then alone again (30 s). Passes when
#       the normal viewers' p99 latency with the slow ones is within 2x of the runs without them
#       (2 x max(worse p99 of the two, 25 ms)),
#       the gateway's RSS grows by less than 48 MB, and the slow streams are disconnected as slow
#       consumers. Add --unprotected to run it with eviction switched off by configuration
#       (huge buffer, 1 h timeout). Before the client queue kept one pending event per vehicle
#       (always on since #16, so no flag turns it off) the memory check then failed; it now
#       shows what eviction alone adds.
#   scripts/chaos.sh pipeline-kills
#       the SIGKILL test: 12 kills at random moments, exactly-once and per-vehicle order checked
#       (cargo test -p busflow-pipeline --test kill; it also runs in .ci/run).
#   scripts/chaos.sh all
#
# Options: --out DIR (logs, reports; default /tmp/busflow-chaos). Every process it starts is
# stopped by PID on exit. Exit status 0 only when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-}
[ -n "$scenario" ] || { sed -n '2,30p' "$0"; exit 2; }
shift
outage=30 clients=1000 out=/tmp/busflow-chaos unprotected=
while [ $# -gt 0 ]; do
  case "$1" in
    --outage) outage=$2; shift ;;
    --clients) clients=$2; shift ;;
    --out) out=$2; shift ;;
    --unprotected) unprotected=1 ;;
    *) echo "chaos: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/busflow/target}"
bin=$CARGO_TARGET_DIR/release/busflow
t0=$(date +%s)
say() { printf '[chaos %4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

pids=()
broker_dir=
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  [ -z "$broker_dir" ] || scripts/dev-broker.sh stop --state-dir "$broker_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
alive() { kill -0 "$1" 2>/dev/null; }
http() { curl -sS --max-time 5 "$@"; }
wait_ready() { # url seconds
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$1 not ready after $2 s"
    sleep 0.3
  done
}
# A Prometheus sample: metric name with labels as printed, e.g. 'x_total{topic="a"}'.
metric() { # url name-prefix
  http "$1" | awk -v m="$2" 'index($0, m) == 1 { v = $NF } END { print (v == "" ? 0 : v) }'
}
# Vehicles the gateway holds, and the newest `ts` among them (ms).
gateway_state() { # base-url
  http "$1/v1/vehicles?bbox=145.3,-17.5,146.2,-16.4" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["count"], max([v["ts"] for v in d["vehicles"]] or [0]))'
}
start_broker() { # port storage
  broker_dir=$out/broker
  scripts/dev-broker.sh start --port "$1" --storage "$2" --state-dir "$broker_dir" | tail -1
}

build() {
  say "building release busflow"
  # No scenario uses `busflow sql`; without it the release build skips DataFusion.
  cargo build --release --locked -p busflow --no-default-features 2>&1 | tail -1
  cargo build --release --locked -p busflow-bench 2>&1 | tail -1
  scripts/dev-broker.sh install
}

broker_outage() {
  local port gw_port pipe_metrics topics
  port=$(free_port); gw_port=$(free_port); pipe_metrics=$(free_port)
  rm -f "$out/broker.db"
  say "broker-outage: nisshi (sqlite) on 127.0.0.1:$port, outage ${outage}s"
  start_broker "$port" "sqlite:$out/broker.db"
  local brokers=127.0.0.1:$port
  local tag="chaos.outage.$(date +%s)"
  topics=(--topic-raw "$tag.raw" --topic-positions "$tag.positions" --topic-rejected "$tag.rejected" --topic-latest "$tag.latest")
  "$bin" pipeline --brokers "$brokers" "${topics[@]}" --group-id "$tag" \
    --metrics-addr "127.0.0.1:$pipe_metrics" > "$out/outage-pipeline.log" 2>&1 &
  local pipe=$!; pids+=("$pipe")
  "$bin" gateway --brokers "$brokers" "${topics[@]}" --http-addr "127.0.0.1:$gw_port" \
    > "$out/outage-gateway.log" 2>&1 &
  local gw=$!; pids+=("$gw")
  local run_s=$(( 30 + outage + 40 ))
  "$bin" simulate --brokers "$brokers" "${topics[@]}" --vehicles 300 --hz 1 --date 2026-11-24 --start 08:00 \
    --duration "${run_s}s" --no-progress > "$out/outage-simulate.log" 2>&1 &
  local sim=$!; pids+=("$sim")
  local base=http://127.0.0.1:$gw_port
  wait_ready "$base/readyz" 60
  sleep 20
  read -r before_count before_ts < <(gateway_state "$base")
  [ "$before_count" -gt 0 ] || fail "no vehicles at the gateway before the outage"
  say "before the outage: gateway holds $before_count vehicles"

  say "stopping the broker"
  scripts/dev-broker.sh stop --state-dir "$broker_dir" > /dev/null
  local outage_start=$(date +%s) readyz_status= readyz_body= age=0
  while [ $(( $(date +%s) - outage_start )) -lt "$outage" ]; do
    sleep 5
    for p in "$sim" "$pipe" "$gw"; do alive "$p" || fail "process $p exited during the outage (see $out/outage-*.log)"; done
    read -r count _ < <(gateway_state "$base") || fail "gateway did not answer during the outage"
    [ "$count" -gt 0 ] || fail "gateway dropped its state during the outage"
    readyz_status=$(curl -s -o "$out/readyz.json" -w '%{http_code}' --max-time 5 "$base/readyz" || true)
    readyz_body=$(cat "$out/readyz.json" 2>/dev/null || true)
    age=$(metric "$base/metrics" busflow_gateway_source_age_seconds)
    say "outage +$(( $(date +%s) - outage_start ))s: gateway serves $count vehicles; /readyz $readyz_status $readyz_body; source age ${age}s"
  done
  # The last probe came after most of the outage: the source must be reported stale by then.
  python3 - "$age" "$outage" <<'EOF' || fail "the gateway's source age (${age}s) does not show the outage"
import sys
age, outage = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if age >= outage / 2 else 1)
EOF
  case "$readyz_body" in
    *'"status":"degraded"'*) ;;
    *) fail "/readyz did not report the stale source during the outage: $readyz_status $readyz_body" ;;
  esac

  say "restarting the broker on the same port and data"
  local restart_ms=$(( $(date +%s) * 1000 ))
  start_broker "$port" "sqlite:$out/broker.db"
  local deadline=$(( $(date +%s) + 90 )) newest=0
  while :; do
    read -r count newest < <(gateway_state "$base")
    [ "$newest" -gt "$restart_ms" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "no position newer than the restart reached the gateway within 90 s"
    sleep 1
  done
  say "fresh positions at the gateway $(( ($(date +%s) * 1000 - restart_ms) / 1000 ))s after the restart"
  # The probe runs every second; give it a few to see the brokers again.
  deadline=$(( $(date +%s) + 15 ))
  while :; do
    readyz_status=$(curl -s -o "$out/readyz.json" -w '%{http_code}' --max-time 5 "$base/readyz" || true)
    readyz_body=$(cat "$out/readyz.json" 2>/dev/null || true)
    case "$readyz_status $readyz_body" in *'200 '*'"status":"ok"'*) break ;; esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "/readyz did not recover: $readyz_status $readyz_body"
    sleep 1
  done
  say "after recovery: /readyz $readyz_status $readyz_body"

  say "waiting for the simulator to finish"
  local sim_rc=0
  wait "$sim" || sim_rc=$?
  tail -3 "$out/outage-simulate.log"
  local delivered
  delivered=$(grep -aoE '[0-9]+ delivered' "$out/outage-simulate.log" | tail -1 | cut -d' ' -f1)
  [ -n "$delivered" ] || fail "the simulator printed no summary"
  if [ "$sim_rc" -ne 0 ]; then
    grep -aq 'were not delivered' "$out/outage-simulate.log" \
      || fail "the simulator failed without reporting undelivered records"
    say "the simulator reported undelivered records (exit $sim_rc)"
  fi
  # The pipeline catches up on everything that was delivered.
  local m=http://127.0.0.1:$pipe_metrics/metrics in=0
  deadline=$(( $(date +%s) + 120 ))
  while :; do
    in=$(metric "$m" "busflow_pipeline_events_in_total")
    [ "${in%.*}" -ge "$delivered" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "pipeline consumed $in of $delivered raw records"
    sleep 1
  done
  sleep 3 # outputs of the last batch acknowledged
  local pos rej dup
  pos=$(metric "$m" "busflow_pipeline_events_out_total{topic=\"$tag.positions\"}")
  rej=$(metric "$m" "busflow_pipeline_events_out_total{topic=\"$tag.rejected\"}")
  dup=$(metric "$m" "busflow_pipeline_duplicates_total")
  say "accounting: raw in $in (simulator delivered $delivered) = positions $pos + rejected $rej + duplicates $dup ?"
  python3 - "$in" "$delivered" "$pos" "$rej" "$dup" <<'EOF' || fail "the books do not balance"
import sys
i, d, p, r, u = (float(x) for x in sys.argv[1:])
sys.exit(0 if i == d and i == p + r + u else 1)
EOF
  for p in "$pipe" "$gw"; do alive "$p" || fail "process $p exited"; done
  say "stopping pipeline and gateway (SIGTERM)"
  for p in "$pipe" "$gw"; do
    kill -TERM "$p"; local rc=0; wait "$p" || rc=$?
    [ "$rc" -eq 0 ] || fail "process $p exited with $rc on SIGTERM"
  done
  pids=()
  scripts/dev-broker.sh stop --state-dir "$broker_dir" > /dev/null; broker_dir=
  say "broker-outage: PASS"
}

gateway_restart() {
  local port gw_port
  port=$(free_port); gw_port=$(free_port)
  say "gateway-restart: $clients viewers"
  start_broker "$port" memory
  local brokers=127.0.0.1:$port tag="chaos.restart.$(date +%s)"
  local topics=(--topic-raw "$tag.raw" --topic-positions "$tag.positions" --topic-rejected "$tag.rejected" --topic-latest "$tag.latest")
  local gw_args=(gateway --brokers "$brokers" "${topics[@]}" --http-addr "127.0.0.1:$gw_port"
    --max-connections $(( clients + 200 )) --max-connections-per-ip $(( clients + 200 )))
  "$bin" pipeline --brokers "$brokers" "${topics[@]}" --group-id "$tag" > "$out/restart-pipeline.log" 2>&1 &
  local pipe=$!; pids+=("$pipe")
  "$bin" "${gw_args[@]}" > "$out/restart-gateway-1.log" 2>&1 &
  local gw=$!; pids+=("$gw")
  "$bin" simulate --brokers "$brokers" "${topics[@]}" --vehicles 400 --hz 1 --duration 50s --date 2026-11-24 --start 08:00 \
    --no-progress > "$out/restart-simulate.log" 2>&1 &
  local sim=$!; pids+=("$sim")
  local base=http://127.0.0.1:$gw_port
  wait_ready "$base/readyz" 60
  sleep 5
  "$bin" load --gateway "127.0.0.1:$gw_port" --clients "$clients" --transport sse --viewport-km 4 \
    --ramp 5s --duration 60s --reconnect --verify-state --no-progress \
    --report "$out/restart-load.json" > "$out/restart-load.log" 2>&1 &
  local load=$!; pids+=("$load")
  sleep 20
  say "restarting the gateway under $clients viewers (SIGTERM, then start again on the same port)"
  kill -TERM "$gw"; local rc=0; wait "$gw" || rc=$?
  [ "$rc" -eq 0 ] || fail "gateway exited with $rc on SIGTERM"
  "$bin" "${gw_args[@]}" > "$out/restart-gateway-2.log" 2>&1 &
  gw=$!; pids+=("$gw")
  wait_ready "$base/readyz" 60
  say "gateway ready again; the simulator stops at 50 s so the final state can be compared"
  wait "$sim" || true
  rc=0; wait "$load" || rc=$?
  cat "$out/restart-load.log" | tail -14
  python3 - "$out/restart-load.json" "$clients" <<'EOF' || fail "viewers did not all recover correctly (see $out/restart-load.json)"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
rows = r["per_client"]
reconnected = sum(1 for c in rows if c["reconnects"] >= 1 and c["snapshots"] >= 2)
problems = []
if r["connected"] != n: problems.append(f"{r['connected']}/{n} connected")
if reconnected != n: problems.append(f"{reconnected}/{n} reconnected with a fresh snapshot")
if r["violations"]: problems.append(f"{r['violations']} viewport violations")
if r["verified"] != n: problems.append(f"{r['verified']}/{n} verified against the gateway")
if r["ghosts"] or r["missing"]: problems.append(f"{r['ghosts']} ghosts, {r['missing']} missing")
print("viewers:", n, "reconnected:", reconnected, "violations:", r["violations"],
      "verified:", r["verified"], "ghosts:", r["ghosts"], "missing:", r["missing"])
if problems:
    print("problems:", "; ".join(problems)); sys.exit(1)
EOF
  [ "$rc" -eq 0 ] || fail "busflow load exited with $rc"
  for p in "$pipe" "$gw"; do kill -TERM "$p"; wait "$p" || true; done
  pids=()
  scripts/dev-broker.sh stop --state-dir "$broker_dir" > /dev/null; broker_dir=
  say "gateway-restart: PASS"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

slow_clients() {
  local port gw_port
  port=$(free_port); gw_port=$(free_port)
  say "slow-clients: $clients normal viewers, then 20 stalled + 20 trickling streams beside them"
  start_broker "$port" memory
  local brokers=127.0.0.1:$port tag="chaos.slow.$(date +%s)"
  local topics=(--topic-raw "$tag.raw" --topic-positions "$tag.positions" --topic-rejected "$tag.rejected" --topic-latest "$tag.latest")
  local extra=()
  [ -z "$unprotected" ] || extra=(--client-buffer 100000000 --slow-client-timeout 1h)
  "$bin" gateway --brokers "$brokers" "${topics[@]}" --http-addr "127.0.0.1:$gw_port" \
    --max-connections $(( clients + 500 )) --max-connections-per-ip $(( clients + 500 )) \
    --max-vehicles-per-stream 100000 "${extra[@]}" > "$out/slow-gateway.log" 2>&1 &
  local gw=$!; pids+=("$gw")
  local base=http://127.0.0.1:$gw_port
  wait_ready "$base/readyz" 60
  "$CARGO_TARGET_DIR/release/bench-feed" --brokers "$brokers" --topic "$tag.positions" --rate 2000 \
    --vehicles 2000 --seconds 160 > "$out/slow-feed.log" 2>&1 &
  local feed=$!; pids+=("$feed")
  sleep 8
  local load_args=(load --gateway "127.0.0.1:$gw_port" --clients "$clients" --transport sse
    --viewport-km 3 --ramp 5s --duration 30s --no-progress)
  say "run A: $clients viewers alone"
  "$bin" "${load_args[@]}" --report "$out/slow-A.json" > "$out/slow-A.log" 2>&1 || fail "busflow load (A) failed"
  local rss_a; rss_a=$(rss_kb "$gw")
  say "run B: the same viewers beside 20 stalled and 20 trickling streams"
  python3 scripts/slow_clients.py "127.0.0.1:$gw_port" --stalled 20 --trickle 20 --seconds 42 \
    > "$out/slow-attackers.json" 2> "$out/slow-attackers.log" &
  local attackers=$!; pids+=("$attackers")
  sleep 4
  "$bin" "${load_args[@]}" --report "$out/slow-B.json" > "$out/slow-B.log" 2>&1 &
  local load=$!; pids+=("$load")
  local rss_max=$rss_a r
  while alive "$load"; do
    r=$(rss_kb "$gw" 2>/dev/null || echo 0)
    [ "$r" -le "$rss_max" ] || rss_max=$r
    sleep 1
  done
  wait "$load" || fail "busflow load (B) failed"
  wait "$attackers" || true
  alive "$gw" || fail "the gateway exited"
  local cut
  cut=$(metric "$base/metrics" 'busflow_gateway_disconnects_total{reason="slow_consumer"}')
  # A second run without them: the baseline is the worse of the two, so drift in what else the
  # machine does is not blamed on the slow clients.
  say "run A2: the viewers alone again"
  "$bin" "${load_args[@]}" --report "$out/slow-A2.json" > "$out/slow-A2.log" 2>&1 || fail "busflow load (A2) failed"
  python3 - "$out/slow-A.json" "$out/slow-B.json" "$rss_a" "$rss_max" "$cut" "$out/slow-attackers.json" "$out/slow-A2.json" <<'PY' \
    || fail "slow clients hurt the others (see $out/slow-*.json)"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rss_a, rss_max, cut = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
attack = json.load(open(sys.argv[6]))
a2 = json.load(open(sys.argv[7]))
pa = max(a["produce_latency"]["p99_ms"], a2["produce_latency"]["p99_ms"])
pb = b["produce_latency"]["p99_ms"]
print(f"runs without slow clients: p99 {a['produce_latency']['p99_ms']:.0f} ms before, {a2['produce_latency']['p99_ms']:.0f} ms after")
limit = 2 * max(pa, 25.0)
growth_mb = (rss_max - rss_a) / 1024
print(f"normal viewers p99 (produce -> arrival): alone {pa:.0f} ms, beside slow clients {pb:.0f} ms (limit {limit:.0f} ms)")
print(f"p50: {a['produce_latency']['p50_ms']:.0f} -> {b['produce_latency']['p50_ms']:.0f} ms; events/s {a['events_per_s']:.0f} -> {b['events_per_s']:.0f}")
print(f"gateway RSS: {rss_a/1024:.0f} MB after A, at most {rss_max/1024:.0f} MB during B (+{growth_mb:.1f} MB, limit 48)")
print(f"slow streams: {attack}; gateway's slow_consumer disconnects: {cut:.0f}")
problems = []
if pb > limit: problems.append(f"p99 {pb:.0f} ms > {limit:.0f} ms")
if growth_mb >= 48: problems.append(f"RSS grew {growth_mb:.1f} MB")
if cut < 20: problems.append(f"only {cut:.0f} slow streams disconnected")
for name, r in (("A", a), ("B", b), ("A2", a2)):
    if r["violations"]: problems.append(f"{r['violations']} viewport violations in {name}")
    if r["connected"] != r["clients"]: problems.append(f"{r['connected']}/{r['clients']} connected in {name}")
if problems:
    print("problems:", "; ".join(problems)); sys.exit(1)
PY
  kill -TERM "$gw"; wait "$gw" || true
  kill -TERM "$feed" 2>/dev/null || true; wait "$feed" || true
  pids=()
  scripts/dev-broker.sh stop --state-dir "$broker_dir" > /dev/null; broker_dir=
  say "slow-clients: PASS"
}

pipeline_kills() {
  say "pipeline-kills: 12 SIGKILLs, exactly-once and per-vehicle order"
  cargo test --locked -p busflow-pipeline --test kill -- --nocapture 2>&1 | grep -E 'SIGKILLs|raw |test result' \
    || fail "the kill test failed"
  say "pipeline-kills: PASS"
}

case "$scenario" in
  broker-outage) build; broker_outage ;;
  gateway-restart) build; gateway_restart ;;
  slow-clients) build; slow_clients ;;
  pipeline-kills) pipeline_kills ;;
  all) build; pipeline_kills; broker_outage; gateway_restart; slow_clients ;;
  *) echo "chaos: unknown scenario $scenario" >&2; sed -n '2,30p' "$0"; exit 2 ;;
esac
