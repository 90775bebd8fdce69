#!/usr/bin/env bash
# redis-sidecar benchmark: direct Redis vs twemproxy (nutcracker) vs
# redis-sidecar, all against the same redis-server master.
#
#   make bench                 # full run (a few minutes)
#   BENCH_QUICK=1 make bench   # smoke run (small -n, 1 repetition, 2,000 idle)
#   ./bench/run.sh             # the same without rebuilding
#   BENCH_TLS_ONLY=1 ./bench/run.sh   # only section 7 (TLS to Redis)
#   BENCH_CLUSTER_ONLY=1 ./bench/run.sh   # only section 8 (Redis Cluster)
#   BENCH_LATENCY_ONLY=1 ./bench/run.sh   # only section 9 (open-loop latency;
#                                           LOADGEN_BIN, BENCH_OL_SECS, BENCH_OL_ROUNDS)
#
# Environment: SIDECAR_BIN (default ./redis-sidecar), NUTCRACKER_BIN (default
# nutcracker from PATH or /usr/sbin), BENCH_QUICK=1, BENCH_TLS_ONLY=1 (run
# only section 7, TLS to Redis: no twemproxy, valgrind or plaintext master
# needed; combines with BENCH_QUICK=1), BENCH_CLUSTER_ONLY=1 (run only
# section 8, Redis Cluster, plus the single-master sidecar's callgrind
# measure it compares with: no twemproxy needed; combines with
# BENCH_QUICK=1, not with BENCH_TLS_ONLY=1), BENCH_REPS (repetitions
# per target), BENCH_N_P1 / BENCH_N_P16 (requests per run), BENCH_IDLE
# (idle client connections for the RSS measure), BENCH_CG_N (requests per
# test in the callgrind run), BENCH_CPU_REDIS / BENCH_CPU_PROXY /
# BENCH_CPU_CLIENT (CPU placement; default: redis on the first usable CPU,
# proxy and redis-benchmark on the second).
#
# What it measures, in order:
#  1. Throughput: for each workload, direct, twemproxy and sidecar, one after
#     the other, repeated BENCH_REPS times; the table shows the median. Around
#     each run, the master's INFO cpu gives Redis's own CPU time per request
#     (median too): with a proxy, 50 or 500 clients arrive over 2 links,
#     pipelined, so Redis spends less CPU on each request. The workloads
#     end with large values: SET and GET of 16 KB, 100 KB and 1 MB at
#     -c 10 -P 1.
#  2. With one proxy running at a time: RSS of the fresh proxy, then with
#     N idle client connections (each has sent PING and got PONG); then the
#     number of upstream connections in the master's CLIENT LIST while
#     `redis-benchmark -c 500 -P 1` runs through it.
#  3. Instructions per request of each proxy under callgrind: Ir of a fixed
#     redis-benchmark run minus Ir of a run with no requests (startup,
#     config parsing, connecting the pool and shutdown cancel out).
#  4. Reads with two replicas, read_from master vs prefer-replica.
#  5. RESP3 beside RESP2 through the sidecar.
#  6. Transactions (MULTI/SET/EXEC) from one client, direct and through the
#     sidecar: tx/s, and Redis's commands and CPU per transaction from its
#     INFO commandstats (twemproxy refuses MULTI).
#  7. TLS to Redis: a CA and a server certificate made with openssl, a
#     TLS-only redis-server; SET and GET at -c 50 -P 1, -c 50 -P 16 and
#     -c 500 -P 1 with redis-benchmark --tls straight to it and plaintext
#     through the sidecar (tls = on upstream), alternating, BENCH_REPS times:
#     median req/s and that server's CPU per request (INFO cpu, as in 1).
#     twemproxy has no TLS, so no twemproxy row.
#  8. Redis Cluster: 3 masters (no replicas) made with redis-cli --cluster
#     create, all on redis-server's CPU; SET and GET (3-byte values, -r
#     100000 random keys) at -c 50 -P 1, -c 50 -P 16 and -c 500 -P 1 with
#     redis-benchmark --cluster straight to the cluster and plain
#     redis-benchmark through the sidecar ([upstream] cluster), alternating,
#     BENCH_REPS times: median req/s and the 3 nodes' CPU per request (INFO
#     cpu summed), the sidecar/direct ratio beside section 1's single-master
#     one; then the sidecar's instructions per request in cluster mode
#     under callgrind, as in 3, against section 3's single-master figure.
#  9. Open-loop latency (bench/loadgen): GET and SET, 3 B and 16 KB, at
#     10k and 50k requests/s over 50 connections, direct, twemproxy and
#     the sidecar: p50/p90/p99/p99.9 from each request's scheduled time,
#     and what each proxy adds over direct. BENCH_OL_ROUNDS rounds (3) of
#     BENCH_OL_SECS (3) per target, the targets in turn in each round,
#     each target's latencies pooled over its rounds.
#
# Results go to stdout and, as markdown, to bench/out/results.md; per-run
# numbers to bench/out/runs.csv; the processes' logs to bench/out/logs/.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
OUT=$ROOT/bench/out
PY=/usr/bin/python3
HELP=$ROOT/bench/helpers.py
SIDECAR_BIN=${SIDECAR_BIN:-./redis-sidecar}
NUTCRACKER_BIN=${NUTCRACKER_BIN:-$(command -v nutcracker || echo /usr/sbin/nutcracker)}
POOL=2                      # redis-sidecar [pool] connections = twemproxy server_connections
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
IDLE_S=1.5                  # longer than the sidecar's validate_after (1s)

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    REPS=${BENCH_REPS:-1}
    N_P1=${BENCH_N_P1:-10000}
    N_P16=${BENCH_N_P16:-100000}
    IDLE=${BENCH_IDLE:-2000}
    CG_N=${BENCH_CG_N:-2000}
    N_LINKS=50000
    LAT_ROUNDS=2
    N_TX=2000
    N_LV16=10000 N_LV100=2000 N_LV1M=300
    MODE="quick (BENCH_QUICK=1): indicative numbers only"
else
    REPS=${BENCH_REPS:-3}
    N_P1=${BENCH_N_P1:-100000}
    N_P16=${BENCH_N_P16:-1000000}
    IDLE=${BENCH_IDLE:-10000}
    CG_N=${BENCH_CG_N:-20000}
    N_LINKS=200000
    LAT_ROUNDS=5
    N_TX=20000
    N_LV16=50000 N_LV100=20000 N_LV1M=2000
    MODE="full"
fi
TLS_ONLY=${BENCH_TLS_ONLY:-0}
[ "$TLS_ONLY" = 1 ] && MODE+=", TLS section only (BENCH_TLS_ONLY=1)"
CLUSTER_ONLY=${BENCH_CLUSTER_ONLY:-0}
[ "$CLUSTER_ONLY" = 1 ] && MODE+=", Redis Cluster section only (BENCH_CLUSTER_ONLY=1)"
LATENCY_ONLY=${BENCH_LATENCY_ONLY:-0}
[ "$LATENCY_ONLY" = 1 ] && MODE+=", open-loop latency section only (BENCH_LATENCY_ONLY=1)"
# which sections run: 1-6 (the plaintext master), 7 (TLS), 8 (cluster),
# 9 (open-loop latency)
RUN_MAIN=1 RUN_TLS=1 RUN_CLUSTER=1 RUN_LAT=1
[ "$TLS_ONLY" = 1 ] && RUN_MAIN=0 RUN_CLUSTER=0 RUN_LAT=0
[ "$CLUSTER_ONLY" = 1 ] && RUN_MAIN=0 RUN_TLS=0 RUN_LAT=0
[ "$LATENCY_ONLY" = 1 ] && RUN_MAIN=0 RUN_TLS=0 RUN_CLUSTER=0
LOADGEN_BIN=${LOADGEN_BIN:-build/bench/loadgen}
OL_WARM=0.5
# (3 rounds: each target runs once in each place of the turn)
if [ "$QUICK" = 1 ]; then OL_SECS=${BENCH_OL_SECS:-1} OL_ROUNDS=${BENCH_OL_ROUNDS:-1}
else OL_SECS=${BENCH_OL_SECS:-3} OL_ROUNDS=${BENCH_OL_ROUNDS:-3}; fi
case "$OL_ROUNDS" in ''|*[!0-9]*|0) echo "bench: BENCH_OL_ROUNDS must be 1 or more" >&2; exit 1 ;; esac

# Workloads: label|test|clients|pipeline|value size|requests
WORKLOADS=(
    "SET -c 50 -P 1|set|50|1|3|$N_P1"
    "GET -c 50 -P 1|get|50|1|3|$N_P1"
    "SET -c 50 -P 16|set|50|16|3|$N_P16"
    "GET -c 50 -P 16|get|50|16|3|$N_P16"
    "SET -c 500 -P 1|set|500|1|3|$N_P1"
    "GET -c 500 -P 1|get|500|1|3|$N_P1"
    "GET -d 1024 -c 50 -P 1|get|50|1|1024|$N_P1"
    # large values (issue 21): 10 clients, as many bytes per run for each size
    "SET 16 KB -c 10|set|10|1|16384|$N_LV16"
    "GET 16 KB -c 10|get|10|1|16384|$N_LV16"
    "SET 100 KB -c 10|set|10|1|100000|$N_LV100"
    "GET 100 KB -c 10|get|10|1|100000|$N_LV100"
    "SET 1 MB -c 10|set|10|1|1000000|$N_LV1M"
    "GET 1 MB -c 10|get|10|1|1000000|$N_LV1M"
)
TARGETS=(direct twemproxy sidecar)

die() { echo "bench: $*" >&2; exit 1; }

[ "$TLS_ONLY" = 1 ] && [ "$CLUSTER_ONLY" = 1 ] && die "BENCH_TLS_ONLY=1 and BENCH_CLUSTER_ONLY=1 exclude each other"
TOOLS=(redis-server redis-cli redis-benchmark taskset openssl)
[ "$TLS_ONLY" = 1 ] || TOOLS+=(valgrind)
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools valgrind openssl)"
done
[ "$RUN_MAIN" = 0 ] || [ -x "$NUTCRACKER_BIN" ] || die "nutcracker not found (apt-get install nutcracker) or set NUTCRACKER_BIN"
[ -x "$SIDECAR_BIN" ] || die "$SIDECAR_BIN not found: run make first or set SIDECAR_BIN"
[ -x "$PY" ] || die "$PY not found"

# --- processes we start, and cleanup ------------------------------------
declare -A PIDS=()          # pid -> name, for everything started in background
TMP=$(mktemp -d -t redis-sidecar-bench.XXXXXX) || die "mktemp failed"
mkdir -p "$OUT"
rm -f "$OUT/results.md"

track() { PIDS[$1]=$2; }
untrack() { unset "PIDS[$1]"; }

cleanup() {
    local rc=$? pid i left
    trap - EXIT INT TERM
    for pid in "${!PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for i in $(seq 50); do
        left=0
        for pid in "${!PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ $left = 0 ] && break
        sleep 0.1
    done
    for pid in "${!PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "bench: ${PIDS[$pid]} (pid $pid) ignored SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    wait 2>/dev/null
    rm -rf "$OUT/logs"
    mkdir -p "$OUT/logs"
    cp "$TMP"/*.log "$OUT/logs/" 2>/dev/null
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'echo; echo "bench: interrupted" >&2; exit 130' INT
trap 'echo "bench: terminated" >&2; exit 143' TERM

# --- limits, ports, CPUs --------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576 2>/dev/null || true; else ulimit -n "$hard"; fi
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE + 100)) ]; then
    echo "bench: warning: open files limit $NOFILE is below $IDLE idle connections + 100" >&2
fi

mapfile -t PORTS < <("$PY" "$HELP" ports 7) || die "no free ports"
[ ${#PORTS[@]} = 7 ] || die "no free ports"
P_MASTER=${PORTS[0]} P_TWEM=${PORTS[1]} P_SIDECAR=${PORTS[2]} P_STATS=${PORTS[3]}
P_REPLICAS=("${PORTS[4]}" "${PORTS[5]}")
P_TLS=${PORTS[6]}           # the TLS-only redis-server of section 7
TLS_DIR=$TMP/tls            # its CA and certificate
# Section 8's 3 cluster nodes: ports P (not among the above) where P + 10000,
# the node's cluster bus, is free too, and below the ephemeral range
# (ip_local_port_range): the nodes start minutes later, and a connection
# made meanwhile could take a bus port from that range.
P_CL=()
if [ "$RUN_CLUSTER" = 1 ]; then
    mapfile -t P_CL < <("$PY" - "${PORTS[@]}" <<'EOF'
import random, socket, sys
taken = set(map(int, sys.argv[1:]))
def free(p):
    for host in ("0.0.0.0", "127.0.0.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, p))
        except OSError:
            return False
        finally:
            s.close()
    return True
try:
    eph = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    eph = 32768
cands = [p for p in range(12000, eph - 10000) if p not in taken]
random.shuffle(cands)
out = []
for p in cands:
    if free(p) and free(p + 10000):
        out.append(p)
        if len(out) == 3:
            break
print("\n".join(map(str, out)))
EOF
    )
    [ ${#P_CL[@]} = 3 ] || die "no free ports for the cluster nodes (P and P + 10000)"
fi

mapfile -t CPUS < <("$PY" -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
if [ ${#CPUS[@]} -ge 2 ]; then
    CPU_REDIS=${CPUS[0]} CPU_PROXY=${CPUS[1]} CPU_CLIENT=${CPUS[1]}
else
    CPU_REDIS=${CPUS[0]} CPU_PROXY=${CPUS[0]} CPU_CLIENT=${CPUS[0]}
fi
DEFAULT_PLACEMENT="$CPU_REDIS/$CPU_PROXY/$CPU_CLIENT"
CPU_REDIS=${BENCH_CPU_REDIS:-$CPU_REDIS}
CPU_PROXY=${BENCH_CPU_PROXY:-$CPU_PROXY}
CPU_CLIENT=${BENCH_CPU_CLIENT:-$CPU_CLIENT}
if [ "$CPU_REDIS/$CPU_PROXY/$CPU_CLIENT" = "$DEFAULT_PLACEMENT" ] && [ "$CPU_PROXY" = "$CPU_CLIENT" ] && [ "$CPU_REDIS" != "$CPU_PROXY" ]; then
    PLACEMENT="redis-server on CPU $CPU_REDIS; the proxy under test (twemproxy or redis-sidecar) on CPU $CPU_PROXY; redis-benchmark and the idle-client script on CPU $CPU_CLIENT (client and proxy share a core, as an app and its sidecar do; with direct, redis-benchmark has CPU $CPU_CLIENT to itself). Pinned with taskset; the same placement for both proxies, also under callgrind."
else
    PLACEMENT="redis-server on CPU $CPU_REDIS; the proxy under test (twemproxy or redis-sidecar) on CPU $CPU_PROXY; redis-benchmark and the idle-client script on CPU $CPU_CLIENT. Pinned with taskset; the same placement for both proxies, also under callgrind."
    [ ${#CPUS[@]} -ge 2 ] || PLACEMENT+=" Only one usable CPU: everything shares it."
    [ "$CPU_REDIS/$CPU_PROXY/$CPU_CLIENT" = "$DEFAULT_PLACEMENT" ] || PLACEMENT+=" (set by BENCH_CPU_REDIS/BENCH_CPU_PROXY/BENCH_CPU_CLIENT; default $DEFAULT_PLACEMENT)"
fi

if [ "$CPU_PROXY" = "$CPU_CLIENT" ] && [ "$CPU_REDIS" != "$CPU_PROXY" ]; then
    PLACEMENT_EFFECT="with ${#CPUS[@]} usable core(s) and this placement, the proxy shares CPU $CPU_PROXY with redis-benchmark (as a sidecar shares its app's host), while redis-benchmark direct to Redis has CPU $CPU_CLIENT to itself; so sidecar/direct throughput on this machine measures the cost of the extra hop on a shared core, not Redis-side capacity. The Redis CPU columns (Redis µs/request) show the Redis-side effect."
elif [ "$CPU_REDIS" = "$CPU_PROXY" ] && [ "$CPU_PROXY" = "$CPU_CLIENT" ]; then
    PLACEMENT_EFFECT="Redis, the proxy and redis-benchmark all share CPU $CPU_REDIS, so sidecar/direct throughput measures how the extra hop competes with Redis and the client for one core, not Redis-side capacity. The Redis CPU columns (Redis µs/request) show the Redis-side effect."
else
    PLACEMENT_EFFECT="with this placement (redis CPU $CPU_REDIS, proxy CPU $CPU_PROXY, client CPU $CPU_CLIENT), sidecar/direct throughput depends on which processes share a core, not only on Redis-side capacity. The Redis CPU columns (Redis µs/request) show the Redis-side effect."
fi

# --- starting and stopping ------------------------------------------------
REDIS_PID="" TWEM_PID="" SIDECAR_PID="" TLS_REDIS_PID=""
CL_PIDS=()                  # section 8's cluster nodes, in the order of P_CL

start_redis() {
    taskset -c "$CPU_REDIS" redis-server --port "$P_MASTER" --bind 127.0.0.1 \
        --save '' --appendonly no --dir "$TMP" --logfile "$TMP/redis.log" \
        --daemonize no >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    track $REDIS_PID redis-server
}

# A TLS-only redis-server (section 7), placed like the plaintext master.
start_redis_tls() {
    taskset -c "$CPU_REDIS" redis-server --port 0 --tls-port "$P_TLS" --bind 127.0.0.1 \
        --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key" \
        --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no \
        --save '' --appendonly no --dir "$TMP" --dbfilename redis-tls.rdb \
        --logfile "$TMP/redis-tls.log" --daemonize no >>"$TMP/redis-tls.log" 2>&1 &
    TLS_REDIS_PID=$!
    track $TLS_REDIS_PID redis-server-tls
}

# start_sidecar [wrapper command...], e.g. start_sidecar valgrind --tool=callgrind
# (SIDECAR_MASTER_PORT, SIDECAR_UPSTREAM (replaces the master line),
# UPSTREAM_EXTRA and SIDECAR_EXTRA change its ini)
start_sidecar() {
    cat >"$TMP/sidecar.ini" <<EOF
[proxy]
listen = 127.0.0.1:$P_SIDECAR
[upstream]
${SIDECAR_UPSTREAM:-master = 127.0.0.1:${SIDECAR_MASTER_PORT:-$P_MASTER}}
${UPSTREAM_EXTRA:-}
[pool]
connections = $POOL
[log]
level = warn
${SIDECAR_EXTRA:-}
EOF
    echo "--- start: $* $SIDECAR_BIN -c $TMP/sidecar.ini" >>"$TMP/sidecar.log"
    taskset -c "$CPU_PROXY" "$@" "$SIDECAR_BIN" -c "$TMP/sidecar.ini" >>"$TMP/sidecar.log" 2>&1 &
    SIDECAR_PID=$!
    track $SIDECAR_PID redis-sidecar
}

# The sidecar in front of the TLS-only redis-server: plaintext to its
# clients, TLS on its pool links, the server's certificate checked against
# the bench CA (name 127.0.0.1, IP SAN).
start_sidecar_tls() {
    SIDECAR_MASTER_PORT=$P_TLS UPSTREAM_EXTRA="tls = on
tls_ca_file = $TLS_DIR/ca.crt
tls_verify = full" start_sidecar "$@"
}

# Section 8: 3 cluster-enabled redis-servers placed like the master (all on
# CPU_REDIS), no persistence; nodes-PORT.conf in TMP.
start_cluster_nodes() {
    local p
    CL_PIDS=()
    for p in "${P_CL[@]}"; do
        taskset -c "$CPU_REDIS" redis-server --port "$p" --bind 127.0.0.1 \
            --cluster-enabled yes --cluster-config-file "$TMP/nodes-$p.conf" \
            --save '' --appendonly no --dir "$TMP" --dbfilename "cluster-$p.rdb" \
            --logfile "$TMP/cluster-$p.log" --daemonize no >>"$TMP/cluster-$p.log" 2>&1 &
        CL_PIDS+=($!)
        track $! "cluster-node-$p"
    done
}

# The sidecar in front of the cluster, seeded with the first node; admin
# from 127.0.0.1 for PROXY NODES.
start_sidecar_cluster() {
    SIDECAR_UPSTREAM="cluster = 127.0.0.1:${P_CL[0]}" SIDECAR_EXTRA="${SIDECAR_EXTRA:-}
[admin]
allow = 127.0.0.1" start_sidecar "$@"
}

# wait_slot_map SECONDS: the sidecar's PROXY NODES says slot_map:read
wait_slot_map() {
    for _ in $(seq $(($1 * 10))); do
        kill -0 "$SIDECAR_PID" 2>/dev/null || return 1
        redis-cli -h 127.0.0.1 -p "$P_SIDECAR" proxy nodes 2>/dev/null | tr -d '\r' |
            grep -qx 'slot_map:read' && return 0
        sleep 0.1
    done
    echo "bench: the sidecar did not read the cluster's slot map within ${1}s:" >&2
    redis-cli -h 127.0.0.1 -p "$P_SIDECAR" proxy nodes 2>&1 | tail -n 20 >&2
    tail -n 15 "$TMP/sidecar.log" >&2
    return 1
}

start_twemproxy() {
    cat >"$TMP/twemproxy.yml" <<EOF
bench:
  listen: 127.0.0.1:$P_TWEM
  redis: true
  hash: fnv1a_64
  distribution: ketama
  server_connections: $POOL
  client_connections: 0
  auto_eject_hosts: false
  timeout: 10000
  servers:
   - 127.0.0.1:$P_MASTER:1
EOF
    echo "--- start: $* $NUTCRACKER_BIN -c $TMP/twemproxy.yml" >>"$TMP/twemproxy.log"
    # -v 4: warnings and errors, as redis-sidecar's level = warn
    taskset -c "$CPU_PROXY" "$@" "$NUTCRACKER_BIN" -c "$TMP/twemproxy.yml" -v 4 \
        -o "$TMP/twemproxy.log" -s "$P_STATS" -a 127.0.0.1 -p "$TMP/twemproxy.pid" \
        >>"$TMP/twemproxy.stdout.log" 2>&1 &
    TWEM_PID=$!
    track $TWEM_PID twemproxy
}

# Targets: direct, twemproxy, sidecar (the plaintext master); direct-tls
# (the TLS-only redis-server) and sidecar-tls (the sidecar in front of it);
# direct-cluster (the cluster, by its first node: redis-benchmark adds
# --cluster) and sidecar-cluster (the sidecar in front of it).
port_of() {
    case $1 in
        direct) echo "$P_MASTER" ;; twemproxy) echo "$P_TWEM" ;;
        sidecar | sidecar-tls | sidecar-cluster) echo "$P_SIDECAR" ;;
        direct-tls) echo "$P_TLS" ;; direct-cluster) echo "${P_CL[0]}" ;;
    esac
}
pid_of() {
    case $1 in
        direct) echo "$REDIS_PID" ;; twemproxy) echo "$TWEM_PID" ;;
        sidecar | sidecar-tls | sidecar-cluster) echo "$SIDECAR_PID" ;;
        direct-tls) echo "$TLS_REDIS_PID" ;; direct-cluster) echo "${CL_PIDS[0]:-}" ;;
    esac
}
# conn_args TARGET: sets CONN (declare it local first) to the redis-cli /
# redis-benchmark arguments that reach TARGET
conn_args() {
    CONN=(-h 127.0.0.1 -p "$(port_of "$1")")
    if [ "$1" = direct-tls ]; then CONN+=(--tls --cacert "$TLS_DIR/ca.crt"); fi
}
logtail() {
    case $1 in
        twemproxy) tail -n 15 "$TMP/twemproxy.log" "$TMP/twemproxy.stdout.log" 2>/dev/null ;;
        sidecar | sidecar-tls | sidecar-cluster) tail -n 15 "$TMP/sidecar.log" 2>/dev/null ;;
        direct) tail -n 15 "$TMP/redis.log" 2>/dev/null ;;
        direct-tls) tail -n 15 "$TMP/redis-tls.log" 2>/dev/null ;;
        direct-cluster) for p in "${P_CL[@]}"; do tail -n 5 "$TMP/cluster-$p.log"; done 2>/dev/null ;;
    esac
}

# wait_ready TARGET SECONDS: PING answered through it
wait_ready() {
    local t=$1 secs=$2 port pid CONN
    port=$(port_of "$t") pid=$(pid_of "$t")
    conn_args "$t"
    for _ in $(seq $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench: $t (pid $pid) exited during startup:" >&2
            logtail "$t" >&2
            return 1
        fi
        [ "$(redis-cli "${CONN[@]}" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "bench: $t did not answer PING on port $port within ${secs}s" >&2
    logtail "$t" >&2
    return 1
}

# stop_proc PID SIGNAL SECONDS: signal it, wait; SIGKILL after SECONDS.
# Sets STOP_STATUS to its exit status.
stop_proc() {
    local pid=$1 sig=$2 secs=$3
    kill -"$sig" "$pid" 2>/dev/null
    for _ in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bench: pid $pid (${PIDS[$pid]:-?}) still running ${secs}s after SIG$sig, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    STOP_STATUS=$?
    untrack "$pid"
}

describe_status() {
    local st=$1
    if [ "$st" -gt 128 ]; then echo "killed by SIG$(kill -l $((st - 128)) 2>/dev/null) (status $st)"
    else echo "exit status $st"; fi
}

FAILURES=()     # human-readable lines about anything that went wrong

# A proxy found dead: record how it ended, its log, and start it again.
proxy_died() {
    local t=$1 what=$2 pid st
    pid=$(pid_of "$t")
    wait "$pid" 2>/dev/null
    st=$?
    untrack "$pid"
    local msg
    msg="$t (pid $pid) died during $what: $(describe_status $st)"
    echo "bench: CRASH: $msg; log tail:" >&2
    logtail "$t" >&2
    FAILURES+=("CRASH: $msg (log: bench/out/logs/)")
    "start_${t//-/_}"
    wait_ready "$t" 10 || die "$t does not come back after its crash"
    [ "$t" != sidecar-cluster ] || wait_slot_map 10 || die "$t does not read the slot map after its crash"
}

# --- measurements -----------------------------------------------------------
# nap SECONDS: sleep without forking (read on a pipe nobody writes to)
exec {NAPFD}<> <(:) || NAPFD=""
nap() { if [ -n "$NAPFD" ]; then read -r -t "$1" -u "$NAPFD" _; else sleep "$1"; fi; }

# watch_run TARGET SECONDS OUTFILE ERRFILE COMMAND...: run COMMAND in the
# background (stdout/stderr to the files) and wait for it; stop it if TARGET's
# process dies (3 s grace: redis-benchmark does not always notice) or after
# SECONDS. Sets WATCH to why it was stopped.
watch_run() {
    local t=$1 secs=$2 out=$3 err=$4 pid tpid start died_at="" rc
    shift 4
    tpid=$(pid_of "$t")
    "$@" >"$out" 2>"$err" &
    pid=$!
    track $pid "client command ($*)"
    WATCH="" start=$SECONDS
    while kill -0 $pid 2>/dev/null; do
        if [ -z "$died_at" ] && ! kill -0 "$tpid" 2>/dev/null; then died_at=$SECONDS; fi
        if [ -n "$died_at" ] && [ $((SECONDS - died_at)) -ge 3 ]; then
            WATCH="stopped: $t died while it ran"
            kill -TERM $pid 2>/dev/null
            break
        fi
        if [ $((SECONDS - start)) -ge "$secs" ]; then
            WATCH="stopped: still running after ${secs}s"
            kill -TERM $pid 2>/dev/null
            break
        fi
        nap 0.05
    done
    wait $pid
    rc=$?
    untrack $pid
    return $rc
}

# redis_cpu [direct|direct-tls|cluster]: "SECONDS FIELDS", the CPU time so
# far of the master (or of the TLS-only server, or summed over the cluster's
# nodes) from INFO cpu: used_cpu_sys_main_thread + used_cpu_user_main_thread
# where Redis has them (6.0+), else used_cpu_sys + used_cpu_user. Empty if
# INFO fails (on any node).
redis_cpu() {
    local CONN want=1 p
    [ "${1:-direct}" = cluster ] && want=${#P_CL[@]}     # (not in the pipeline's subshell)
    if [ "${1:-direct}" = cluster ]; then
        for p in "${P_CL[@]}"; do redis-cli -h 127.0.0.1 -p "$p" info cpu 2>/dev/null; done
    else
        conn_args "${1:-direct}"
        redis-cli "${CONN[@]}" info cpu 2>/dev/null
    fi | tr -d '\r' | awk -F: -v want="$want" '
        $1 == "used_cpu_sys" { s += $2; n++ }
        $1 == "used_cpu_user" { u += $2; n++ }
        $1 == "used_cpu_sys_main_thread" { ms += $2; m++ }
        $1 == "used_cpu_user_main_thread" { mu += $2; m++ }
        END {
            if (m == 2 * want) printf "%.6f used_cpu_sys_main_thread + used_cpu_user_main_thread\n", ms + mu
            else if (n == 2 * want) printf "%.6f used_cpu_sys + used_cpu_user\n", s + u
        }'
}
REDIS_CPU_FIELDS=""     # which INFO cpu fields redis_cpu found

RPS="" RCPU=""  # set by bench_once; RCPU: Redis CPU microseconds per request
RB_EXTRA=()     # more redis-benchmark arguments for bench_once (section 8: -r)
bench_once() {  # TARGET TEST CLIENTS PIPELINE SIZE N
    local t=$1 test=$2 c=$3 p=$4 d=$5 n=$6 rc cpu0 cpu1 fields server=direct CONN
    case $t in *-tls) server=direct-tls ;; *-cluster) server=cluster ;; esac # whose CPU: the server(s) behind TARGET
    conn_args "$t"
    [ "$t" = direct-cluster ] && CONN+=(--cluster)
    RPS="" RCPU=""
    read -r cpu0 fields < <(redis_cpu $server)
    watch_run "$t" $((60 + n / 5000)) "$TMP/rb.out" "$TMP/rb.err" taskset -c "$CPU_CLIENT" \
        redis-benchmark "${CONN[@]}" "${RB_EXTRA[@]}" -t "$test" -c "$c" -P "$p" -d "$d" -n "$n" --csv
    rc=$?
    read -r cpu1 fields < <(redis_cpu $server)
    [ -n "${fields:-}" ] && REDIS_CPU_FIELDS=$fields
    RPS=$(awk -F'"' -v t="${test^^}" '$2 == t { print $4 }' "$TMP/rb.out")
    if [ $rc != 0 ] || [ -z "$RPS" ] || [ -n "$WATCH" ]; then
        RB_ERR="redis-benchmark exit status $rc${WATCH:+ ($WATCH)}: $(cat "$TMP/rb.err" "$TMP/rb.out" | grep -v '^"test"' | tr '\n' ' ' | tail -c 400)"
        RPS=""
        return 1
    fi
    RCPU=$(awk -v a="${cpu0:-}" -v b="${cpu1:-}" -v n="$n" \
        'BEGIN { if (a == "" || b == "" || n <= 0) print ""; else printf "%.3f\n", (b - a) / n * 1e6 }')
    return 0
}

# populate KEY for GET workloads (redis-benchmark without -r uses one key)
populate() { # SIZE [direct|direct-tls]
    local CONN
    conn_args "${2:-direct}"
    redis-benchmark "${CONN[@]}" -t set -n 100 -c 1 -d "$1" -q >/dev/null 2>&1 ||
        die "could not populate the ${2:-direct} server"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else printf "%.2f\n", a / b }'; }
fmt_int() { [ -z "$1" ] && { echo "FAILED"; return; }; printf "%.0f" "$1"; }
fmt_us() { [ -z "$1" ] && { echo "-"; return; }; printf "%.2f" "$1"; }
fmt_x() { [ -z "$1" ] && { echo "-"; return; }; echo "${1}x"; }
fmt_kb() { awk -v k="$1" 'BEGIN { if (k >= 10240) printf "%.1f MB (%d KB)", k / 1024, k; else printf "%d KB", k }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 >= b + 0) }'; }
ge_times() { awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN { exit !(a != "" && b != "" && a + 0 >= b * k) }'; } # A >= B x K

git_note() {
    local rev
    rev=$(git rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return; }
    echo "repo at $rev$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (working tree has uncommitted changes)')"
}

# Does make think ./redis-sidecar is older than its sources? (-q builds nothing)
stale_note() {
    [ "$SIDECAR_BIN" = ./redis-sidecar ] || [ "$SIDECAR_BIN" = "$ROOT/redis-sidecar" ] || return 0
    make -q redis-sidecar >/dev/null 2>&1 || echo "; the binary is OLDER than the sources: run make"
}

# make_tls_certs: a CA and a server certificate signed by it (EC prime256v1,
# SAN DNS:localhost, IP:127.0.0.1, valid 2 days) in TLS_DIR; openssl's
# output goes to openssl.log.
make_tls_certs() {
    mkdir -p "$TLS_DIR" || return 1
    cat >"$TLS_DIR/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1
EOF
    (
        cd "$TLS_DIR" &&
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out ca.key &&
        openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=redis-sidecar bench CA" \
            -config openssl.cnf -extensions ca_ext -out ca.crt &&
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out server.key &&
        openssl req -new -key server.key -subj "/CN=localhost" -config openssl.cnf -out server.csr &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -sha256 -extfile openssl.cnf -extensions server_ext -out server.crt &&
        openssl verify -CAfile ca.crt server.crt
    ) >>"$TMP/openssl.log" 2>&1
}

# stop_tracked PID SIGNAL SECONDS: stop_proc if PID is one of ours still running
stop_tracked() {
    [ -n "$1" ] && [ -n "${PIDS[$1]:-}" ] || return 0
    stop_proc "$@"
}

# --- instructions per request under callgrind (sections 3 and 8) -----------
CG_REQ=$((2 * CG_N))
CG_CMD="redis-benchmark -c 50 -n $CG_N -t get,set -P 1"
# cg_run TARGET N [more redis-benchmark arguments...]: sets IR, the proxy's
# total Ir for a run of N requests per test (0: start, PING, CG_IDLE seconds
# (default 3), stop), and CG_SECS, how long the redis-benchmark run (or the
# wait) took (timers in the proxy run meanwhile); CG_TAG (if set) goes into
# the callgrind file's name.
cg_run() {
    local t=$1 n=$2 f pid t0
    shift 2
    f="$TMP/callgrind.$t.$n${CG_TAG:+.$CG_TAG}.out"
    "start_${t//-/_}" valgrind --tool=callgrind --callgrind-out-file="$f"
    wait_ready "$t" 120 || die "$t did not start under callgrind"
    [ "$t" != sidecar-cluster ] || wait_slot_map 120 || die "$t did not read the slot map under callgrind"
    pid=$(pid_of "$t")
    # what a proxy does once after it starts (the sidecar learns the
    # master's COMMAND table) belongs to the empty run too, however soon
    # under callgrind it would otherwise be stopped
    [ "$n" -gt 0 ] || sleep "${CG_IDLE:-3}"
    CG_SECS=${CG_IDLE:-3}
    if [ "$n" -gt 0 ]; then
        t0=$EPOCHREALTIME
        if ! watch_run "$t" 1800 "$TMP/cg.rb.out" "$TMP/cg.rb.err" taskset -c "$CPU_CLIENT" \
            redis-benchmark -h 127.0.0.1 -p "$(port_of "$t")" -c 50 -n "$n" -t get,set -P 1 "$@" --csv ||
            [ -n "$WATCH" ]; then
            FAILURES+=("FAIL: $t under callgrind${*:+ ($*)}: redis-benchmark failed${WATCH:+ ($WATCH)}: $(tail -c 300 "$TMP/cg.rb.err" | tr '\n' ' ')")
        fi
        CG_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    fi
    local alive=1
    kill -0 "$pid" 2>/dev/null || alive=0
    stop_proc "$pid" INT 60
    mkdir -p "$OUT/callgrind"
    cp "$f" "$OUT/callgrind/" 2>/dev/null
    IR=$("$PY" "$HELP" irtotal "$f" 2>/dev/null) || IR=""
    if [ $alive = 0 ]; then
        FAILURES+=("CRASH: $t died under callgrind during the $n-request run${*:+ ($*)}: $(describe_status "$STOP_STATUS") (log: bench/out/logs/)")
        echo "bench: CRASH: $t died under callgrind; log tail:" >&2
        logtail "$t" >&2
        IR=""
    fi
}
# ipr LOAD_IR EMPTY_IR: instructions per request over CG_REQ requests
ipr() {
    awk -v a="$1" -v b="$2" -v n="$CG_REQ" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.0f\n", (a - b) / n }'
}
[ "$TLS_ONLY" = 1 ] || rm -rf "$OUT/callgrind"    # sections 3 and 8 fill it

# ===========================================================================
echo "redis-sidecar benchmark, $MODE"
[ -n "$(stale_note)" ] && echo "warning: $SIDECAR_BIN is older than its sources (make -q); \`make bench\` rebuilds it first"
echo "placement: $PLACEMENT"
if [ "$TLS_ONLY" = 1 ]; then
    echo "ports: TLS redis-server $P_TLS, redis-sidecar $P_SIDECAR; open files limit $NOFILE"
elif [ "$CLUSTER_ONLY" = 1 ]; then
    echo "ports: cluster nodes ${P_CL[*]} (bus +10000), redis-sidecar $P_SIDECAR, master $P_MASTER (the single-master callgrind measure); open files limit $NOFILE"
else
    echo "ports: master $P_MASTER, twemproxy $P_TWEM (stats $P_STATS), redis-sidecar $P_SIDECAR, TLS redis-server $P_TLS, cluster nodes ${P_CL[*]} (bus +10000); open files limit $NOFILE"
fi
echo "temp dir: $TMP"
echo

echo "workload,repetition,target,requests,req_per_sec,redis_cpu_us_per_req" >"$OUT/runs.csv"

# The plaintext master and both proxies in front of it, up (sections 1 and 9).
start_plain_targets() {
    start_redis
    wait_ready direct 10 || die "redis-server did not start"
    start_twemproxy
    start_sidecar
    wait_ready twemproxy 10 || die "twemproxy did not start"
    wait_ready sidecar 10 || die "redis-sidecar did not start"
}

# Sections 1-6 (BENCH_TLS_ONLY=1 and BENCH_CLUSTER_ONLY=1 skip them), against
# the plaintext master.
if [ "$RUN_MAIN" = 1 ]; then

start_plain_targets

# Sanity: both proxies really reach the master.
for t in twemproxy sidecar; do
    v="bench-$t-$RANDOM"
    redis-cli -h 127.0.0.1 -p "$(port_of $t)" set bench:sanity "$v" >/dev/null 2>&1
    got=$(redis-cli -h 127.0.0.1 -p "$P_MASTER" get bench:sanity 2>/dev/null)
    [ "$got" = "$v" ] || die "$t did not pass SET bench:sanity through to the master (master has \"$got\")"
    got=$(redis-cli -h 127.0.0.1 -p "$(port_of $t)" get bench:sanity 2>/dev/null)
    [ "$got" = "$v" ] || die "$t: GET bench:sanity returned \"$got\", expected \"$v\""
done

# --- 1. throughput ---------------------------------------------------------
declare -A RUNS=() CPUR=()  # "label|target" -> "rps rps rps" / "us us us" (Redis CPU per request)
echo "== throughput: $REPS repetition(s) per target, interleaved; -n $N_P1 (P1) / $N_P16 (P16); req/s (Redis CPU us/request)"
for wl in "${WORKLOADS[@]}"; do
    IFS='|' read -r label test c p d n <<<"$wl"
    [ "$test" = get ] && populate "$d"
    for rep in $(seq "$REPS"); do
        line="  $label  rep $rep:"
        for t in "${TARGETS[@]}"; do
            if bench_once "$t" "$test" "$c" "$p" "$d" "$n"; then
                RUNS["$label|$t"]+="$RPS "
                CPUR["$label|$t"]+="$RCPU "
                line+="  $t $(fmt_int "$RPS") ($(fmt_us "$RCPU") us)"
                echo "$label,$rep,$t,$n,$RPS,$RCPU" >>"$OUT/runs.csv"
            else
                line+="  $t FAILED"
                echo "$label,$rep,$t,$n,," >>"$OUT/runs.csv"
                FAILURES+=("FAIL: $t, $label, repetition $rep: $RB_ERR")
            fi
            pid=$(pid_of "$t")
            if ! kill -0 "$pid" 2>/dev/null; then
                [ "$t" = direct ] && die "redis-server died during $label: $(logtail direct)"
                proxy_died "$t" "$label, repetition $rep"
                line+=" (CRASHED)"
            fi
        done
        echo "$line"
    done
done

declare -A MED=() MEDCPU=()
for wl in "${WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    for t in "${TARGETS[@]}"; do
        MED["$label|$t"]=$(echo "${RUNS["$label|$t"]:-}" | median)
        MEDCPU["$label|$t"]=$(echo "${CPUR["$label|$t"]:-}" | median)
    done
done

stop_proc "$TWEM_PID" INT 10
stop_proc "$SIDECAR_PID" TERM 10
[ "$STOP_STATUS" = 0 ] || FAILURES+=("redis-sidecar did not exit cleanly on SIGTERM after the throughput runs: $(describe_status "$STOP_STATUS")")

# --- 2. RSS with idle clients, and upstream links during -c 500 -------------
# links_during_c500 TARGET: max CLIENT LIST entries (not counting the
# redis-cli asking) seen while redis-benchmark -c 500 -P 1 runs through it.
LINKS=""
links_during_c500() {
    local t=$1 port bpid max=0 samples=0 cnt seen=""
    port=$(port_of "$t")
    taskset -c "$CPU_CLIENT" redis-benchmark -h 127.0.0.1 -p "$port" \
        -t get -c 500 -P 1 -n "$N_LINKS" --csv >"$TMP/links.out" 2>"$TMP/links.err" &
    bpid=$!
    track $bpid redis-benchmark
    sleep 0.3
    local tpid start=$SECONDS capped=0 cap_note=""
    tpid=$(pid_of "$t")
    while kill -0 $bpid 2>/dev/null; do
        if ! kill -0 "$tpid" 2>/dev/null || [ $((SECONDS - start)) -gt 300 ]; then
            kill -0 "$tpid" 2>/dev/null && capped=1
            sleep 3
            kill -TERM $bpid 2>/dev/null
            break
        fi
        cnt=$(redis-cli -h 127.0.0.1 -p "$P_MASTER" client list 2>/dev/null | grep -vc 'cmd=client|list')
        samples=$((samples + 1))
        [ "$cnt" -gt "$max" ] && max=$cnt
        case " $seen " in *" $cnt "*) ;; *) seen+=" $cnt" ;; esac
        sleep 0.2
    done
    wait $bpid
    local rc=$?
    untrack $bpid
    # A peer that stalls past the cap (twemproxy has, under load: some of
    # the 500 connections never answered) gets a note: the links it
    # opened were seen all the same. The sidecar stalling is a failure.
    if [ $rc != 0 ] && [ $capped = 1 ] && [ "$t" != sidecar ]; then
        cap_note="; redis-benchmark stopped at the 300 s cap, this target stalled"
    elif [ $rc != 0 ]; then
        FAILURES+=("FAIL: $t, links run (GET -c 500 -P 1 -n $N_LINKS): redis-benchmark exit status $rc: $(tail -c 300 "$TMP/links.err" | tr '\n' ' ')")
    fi
    LINKS="$max"
    LINKS_NOTE="$samples samples, values seen:${seen}${cap_note}"
}

declare -A RSS_BASE=() RSS_LOAD=() RSS_NOTE=() LINK=() LINK_NOTE=() LAT=()
# idle_latency TARGET: a GET after IDLE_S seconds idle (the sidecar
# validates the link with a PING first, validate_after = 1s) and the GET
# right after it, medians over LAT_ROUNDS rounds.
idle_latency() {
    LAT[$1]=$(taskset -c "$CPU_CLIENT" "$PY" "$HELP" latency --port "$(port_of "$1")" \
        --idle "$IDLE_S" --rounds "$LAT_ROUNDS")
    echo "  $1: first request after ${IDLE_S}s idle / next request: ${LAT[$1]}"
}
echo
echo "== RSS with $IDLE idle clients, upstream links during GET -c 500 -P 1 (one proxy running at a time)"
for t in twemproxy sidecar; do
    "start_$t"
    wait_ready "$t" 10 || die "$t did not start"
    pid=$(pid_of "$t")
    res=$(taskset -c "$CPU_CLIENT" "$PY" "$HELP" idle --port "$(port_of "$t")" --pid "$pid" --n "$IDLE")
    echo "  $t: $res"
    for kv in $res; do
        case $kv in
            baseline_kb=*) RSS_BASE[$t]=${kv#*=} ;;
            loaded_kb=*) RSS_LOAD[$t]=${kv#*=} ;;
            ok=*) ok=${kv#*=} ;;
            failed=*) failed=${kv#*=} ;;
            first_error=*) ferr=${kv#*=} ;;
        esac
    done
    RSS_NOTE[$t]=""
    if [ "${failed:-1}" != 0 ]; then
        RSS_NOTE[$t]=" (only $ok of $IDLE connections got PONG; first error: $ferr)"
        FAILURES+=("FAIL: $t accepted/answered only $ok of $IDLE idle connections (first error: $ferr)")
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        proxy_died "$t" "the $IDLE idle connections test"
        pid=$(pid_of "$t")
    fi
    idle_latency "$t"
    sleep 0.5
    links_during_c500 "$t"
    LINK[$t]=$LINKS LINK_NOTE[$t]=$LINKS_NOTE
    echo "  $t: upstream links during -c 500: $LINKS ($LINKS_NOTE)"
    if ! kill -0 "$pid" 2>/dev/null; then
        proxy_died "$t" "the -c 500 links run"
        pid=$(pid_of "$t")
    fi
    if [ "$t" = twemproxy ]; then stop_proc "$pid" INT 10; else stop_proc "$pid" TERM 10; fi
done
links_during_c500 direct
LINK[direct]=$LINKS LINK_NOTE[direct]=$LINKS_NOTE
idle_latency direct
echo "  direct: client connections during -c 500: $LINKS ($LINKS_NOTE)"

# --- 3. instructions per request under callgrind -----------------------------
declare -A IR_EMPTY=() IR_LOAD=() IPR=()
echo
echo "== callgrind: $CG_CMD ($CG_REQ requests) minus a run with 0 requests"
# Leases kept ready (min_idle_leases) are opened and pinged on timers:
# under callgrind's slowdown the empty run may stop before they open, and
# their cost (per second, not per request) would land on the requests.
# Off here, as twemproxy has none; the other sections keep the default.
SIDECAR_EXTRA="[pool]
min_idle_leases = 0"
for t in twemproxy sidecar; do
    cg_run "$t" 0
    IR_EMPTY[$t]=$IR
    cg_run "$t" "$CG_N"
    IR_LOAD[$t]=$IR
    IPR[$t]=$(ipr "${IR_LOAD[$t]}" "${IR_EMPTY[$t]}")
    echo "  $t: Ir with 0 requests ${IR_EMPTY[$t]:-?}, with $CG_REQ requests ${IR_LOAD[$t]:-?} -> ${IPR[$t]:-?} instructions/request"
done
# The two workloads the instruction targets name, each alone against the
# same empty run: SET -c 50 -P 1 (one request per read and per write) and
# GET -c 50 -P 16 (16 per read: what is left is the per-request part).
declare -A IPR_SET1=() IPR_GET16=()
CG_N16=$((CG_N * 4))
echo "== callgrind: redis-benchmark -c 50 -n $CG_N -t set -P 1, and -n $CG_N16 -t get -P 16, minus the run with 0 requests"
for t in twemproxy sidecar; do
    cg_run "$t" "$CG_N" -t set -P 1
    IPR_SET1[$t]=$(CG_REQ=$CG_N ipr "$IR" "${IR_EMPTY[$t]}")
    cg_run "$t" "$CG_N16" -t get -P 16
    IPR_GET16[$t]=$(CG_REQ=$CG_N16 ipr "$IR" "${IR_EMPTY[$t]}")
    echo "  $t: SET -P 1 ${IPR_SET1[$t]:-?}, GET -P 16 ${IPR_GET16[$t]:-?} instructions/request"
done

SIDECAR_EXTRA=""

# --- 4. read-heavy with two replicas: read_from prefer-replica vs master -------
# The same GET workload through the sidecar, reads kept on the master or
# sent to the replicas; with the master's own CPU per GET, the load the
# replicas take off it.
echo
echo "== read-heavy: GET -c 50 -P 1 through the sidecar with 2 replicas"
for p in "${P_REPLICAS[@]}"; do
    taskset -c "$CPU_REDIS" redis-server --port "$p" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$TMP" --dbfilename "replica-$p.rdb" \
        --logfile "$TMP/replica-$p.log" --replicaof 127.0.0.1 "$P_MASTER" \
        --daemonize no >/dev/null 2>&1 &
    track $! "replica-$p"
done
for p in "${P_REPLICAS[@]}"; do
    for _ in $(seq 100); do
        redis-cli -p "$p" info replication 2>/dev/null | grep -q "master_link_status:up" && break
        sleep 0.1
    done
done
declare -A RH=() RHCPU=()
for policy in master prefer-replica; do RH[$policy]="" RHCPU[$policy]=""; done
for rep in $(seq "$REPS"); do
    for policy in master prefer-replica; do
        UPSTREAM_EXTRA="replicas = 127.0.0.1:${P_REPLICAS[0]}, 127.0.0.1:${P_REPLICAS[1]}"
        SIDECAR_EXTRA="[routing]
read_from = $policy
read_your_writes = off"
        start_sidecar
        wait_ready sidecar 10 || die "sidecar with replicas did not start"
        sleep 1.5                               # replicas checked and eligible
        c0=$(redis_cpu | awk '{print $1}')
        out=$(taskset -c "$CPU_CLIENT" redis-benchmark -h 127.0.0.1 -p "$P_SIDECAR" -t get \
              -c 50 -P 1 -n "$N_P1" --csv 2>/dev/null | tail -n 1)
        c1=$(redis_cpu | awk '{print $1}')
        rps=$(awk -F'"' '{print $4}' <<<"$out" | cut -d. -f1)
        RH[$policy]+="$rps "
        RHCPU[$policy]+="$(awk -v a="$c0" -v b="$c1" -v n="$N_P1" 'BEGIN { printf "%.2f", (b - a) / n * 1e6 }') "
        echo "  rep $rep read_from $policy: $rps req/s"
        stop_proc "$(pid_of sidecar)" TERM 10
    done
done
SIDECAR_EXTRA="" UPSTREAM_EXTRA=""
median_of() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
RH_M=$(median_of "${RH[master]}") RH_R=$(median_of "${RH[prefer-replica]}")
RHC_M=$(median_of "${RHCPU[master]}") RHC_R=$(median_of "${RHCPU[prefer-replica]}")
RH_LINE="read-heavy, GET -c 50 -P 1 through the sidecar with 2 replicas: read_from master $RH_M req/s (master CPU $RHC_M µs/GET), prefer-replica $RH_R req/s (master CPU $RHC_R µs/GET): $(ratio "$RH_R" "$RH_M")x"

# --- 5. RESP3 beside RESP2 through the sidecar -----------------------------
# redis-benchmark -3 opens each connection with HELLO 3: the sidecar then
# carries it over its RESP3 links. Same workload, interleaved.
echo
echo "== RESP3: redis-benchmark -t set,get -c 50 -P 16 through the sidecar, RESP2 and -3"
start_sidecar
wait_ready sidecar 10 || die "sidecar did not start for the RESP3 runs"
declare -A R3=()
for rep in $(seq "$REPS"); do
    for proto in 2 3; do
        flag=$([ "$proto" = 3 ] && echo -3 || true)
        out=$(taskset -c "$CPU_CLIENT" redis-benchmark $flag -h 127.0.0.1 -p "$P_SIDECAR" \
              -t set,get -c 50 -P 16 -n "$N_P16" --csv 2>/dev/null | grep -v '^"test"')
        rps=$(awk -F'"' '{ s += $4; n++ } END { if (n) printf "%.0f", s / n }' <<<"$out")
        R3[$proto]+="$rps "
        echo "  rep $rep RESP$proto: $rps req/s (mean of SET and GET)"
    done
done
stop_proc "$(pid_of sidecar)" TERM 10
R3_2=$(median_of "${R3[2]}") R3_3=$(median_of "${R3[3]}")
R3_RATIO=$(ratio "$R3_3" "$R3_2")
R3_LINE="RESP3 through the sidecar, SET+GET -c 50 -P 16: RESP2 $R3_2 req/s, RESP3 (redis-benchmark -3) $R3_3 req/s: ${R3_RATIO}x"

# --- 6. transactions: MULTI/SET/EXEC from one client ------------------------
# Each transaction takes a lease, which goes back to the pool (RESET and
# handshake) once EXEC leaves it holding nothing. twemproxy refuses MULTI.
echo
echo "== transactions: one client, MULTI/SET/EXEC in one write, $N_TX times"
start_sidecar
wait_ready sidecar 10 || die "sidecar did not start for the transaction runs"
declare -A TX=()
for rep in $(seq "$REPS"); do
    for t in direct sidecar; do
        out=$(taskset -c "$CPU_CLIENT" "$PY" "$HELP" tx --port "$(port_of "$t")" \
              --master "$P_MASTER" --n "$N_TX")
        TX[$t]=$out
        echo "  rep $rep $t: $out"
    done
done
stop_proc "$(pid_of sidecar)" TERM 10
tx_field() { tr ' ' '\n' <<<"${TX[$1]}" | sed -n "s/^$2=//p"; }
TX_LINE="transactions (MULTI/SET/EXEC, one client, last repetition): direct $(tx_field direct tx_per_sec) tx/s ($(tx_field direct redis_commands_per_tx) Redis commands, $(tx_field direct redis_us_per_tx) µs of Redis CPU per transaction); sidecar $(tx_field sidecar tx_per_sec) tx/s ($(tx_field sidecar redis_commands_per_tx) commands: $(tx_field sidecar commands); $(tx_field sidecar redis_us_per_tx) µs)"

stop_proc "$REDIS_PID" TERM 10

fi  # end of sections 1-6

# --- 7. TLS to Redis: redis-benchmark --tls direct vs the sidecar, TLS upstream --
# A TLS-only redis-server placed like the master. Direct, each of
# redis-benchmark's connections is its own TLS session on Redis (handshake,
# then records to decrypt and encrypt on every connection); through the
# sidecar the app side is plaintext on loopback and Redis sees the pool's
# few TLS links, many clients' requests arriving together on them.
# twemproxy has no TLS: no row.
TLS_WORKLOADS=(
    "SET -c 50 -P 1|set|50|1|3|$N_P1"
    "GET -c 50 -P 1|get|50|1|3|$N_P1"
    "SET -c 50 -P 16|set|50|16|3|$N_P16"
    "GET -c 50 -P 16|get|50|16|3|$N_P16"
    "SET -c 500 -P 1|set|500|1|3|$N_P1"
    "GET -c 500 -P 1|get|500|1|3|$N_P1"
)
TLS_TARGETS=(direct-tls sidecar-tls)
declare -A TLS_RUNS=() TLS_CPUR=() TLS_MED=() TLS_MEDCPU=()
TLS_SKIP="" TLS_PROTO=""

# tls_start: certificates, the TLS redis-server, the sidecar in front of it,
# and a SET through the sidecar read back from the server. On failure,
# TLS_SKIP says why.
tls_start() {
    local v got CONN
    make_tls_certs || { TLS_SKIP="openssl could not make the bench certificates (log: bench/out/logs/openssl.log)"; return 1; }
    start_redis_tls
    wait_ready direct-tls 10 || { TLS_SKIP="the TLS-only redis-server did not start (log: bench/out/logs/redis-tls.log)"; return 1; }
    start_sidecar_tls
    wait_ready sidecar-tls 10 || { TLS_SKIP="redis-sidecar with tls = on did not start (log: bench/out/logs/sidecar.log)"; return 1; }
    v="bench-tls-$RANDOM"
    conn_args direct-tls
    redis-cli -h 127.0.0.1 -p "$P_SIDECAR" set bench:sanity "$v" >/dev/null 2>&1
    got=$(redis-cli "${CONN[@]}" get bench:sanity 2>/dev/null)
    [ "$got" = "$v" ] || { TLS_SKIP="the TLS sidecar did not pass SET bench:sanity through to the TLS server (it has \"$got\")"; return 1; }
    TLS_PROTO=$(openssl s_client -connect "127.0.0.1:$P_TLS" -CAfile "$TLS_DIR/ca.crt" </dev/null 2>/dev/null |
        sed -n 's/^New, \(.*\), Cipher is \(.*\)$/\1 \2/p' | head -n 1)
    return 0
}

if [ "$RUN_TLS" = 1 ]; then     # BENCH_CLUSTER_ONLY=1 skips section 7
echo
echo "== TLS to Redis: redis-benchmark --tls direct vs plaintext through the sidecar (tls = on upstream); $REPS repetition(s), interleaved; req/s (Redis CPU us/request)"
if tls_start; then
    echo "  TLS-only redis-server on port $P_TLS (${TLS_PROTO:-protocol/cipher unknown}); certificates in $TLS_DIR"
    for wl in "${TLS_WORKLOADS[@]}"; do
        IFS='|' read -r label test c p d n <<<"$wl"
        [ "$test" = get ] && populate "$d" direct-tls
        for rep in $(seq "$REPS"); do
            line="  $label  rep $rep:"
            for t in "${TLS_TARGETS[@]}"; do
                if bench_once "$t" "$test" "$c" "$p" "$d" "$n"; then
                    TLS_RUNS["$label|$t"]+="$RPS "
                    TLS_CPUR["$label|$t"]+="$RCPU "
                    line+="  $t $(fmt_int "$RPS") ($(fmt_us "$RCPU") us)"
                    echo "TLS $label,$rep,$t,$n,$RPS,$RCPU" >>"$OUT/runs.csv"
                else
                    line+="  $t FAILED"
                    echo "TLS $label,$rep,$t,$n,," >>"$OUT/runs.csv"
                    FAILURES+=("FAIL: $t, TLS $label, repetition $rep: $RB_ERR")
                fi
                pid=$(pid_of "$t")
                if ! kill -0 "$pid" 2>/dev/null; then
                    [ "$t" = direct-tls ] && die "the TLS redis-server died during $label: $(logtail direct-tls)"
                    proxy_died "$t" "TLS $label, repetition $rep"
                    line+=" (CRASHED)"
                fi
            done
            echo "$line"
        done
    done
    stop_proc "$SIDECAR_PID" TERM 10
    [ "$STOP_STATUS" = 0 ] || FAILURES+=("redis-sidecar (tls = on) did not exit cleanly on SIGTERM after the TLS runs: $(describe_status "$STOP_STATUS")")
else
    [ "$TLS_ONLY" = 1 ] && die "$TLS_SKIP"
    echo "bench: $TLS_SKIP; no TLS rows" >&2
    FAILURES+=("FAIL: TLS section skipped: $TLS_SKIP")
    stop_tracked "$SIDECAR_PID" TERM 10
fi
stop_tracked "$TLS_REDIS_PID" TERM 10
fi  # section 7
for wl in "${TLS_WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    for t in "${TLS_TARGETS[@]}"; do
        TLS_MED["$label|$t"]=$(echo "${TLS_RUNS["$label|$t"]:-}" | median)
        TLS_MEDCPU["$label|$t"]=$(echo "${TLS_CPUR["$label|$t"]:-}" | median)
    done
done

# --- 8. Redis Cluster: redis-benchmark --cluster direct vs the sidecar in front --
# 3 masters, no replicas (the machine has 2 cores; replicas would only add
# replication load on the Redis core), all on CPU_REDIS like the single
# master. Direct: redis-benchmark --cluster, which reads the slot map and
# sends each request to its key's node itself. Sidecar: plain
# redis-benchmark to the sidecar ([upstream] cluster), which routes by slot.
CL_WORKLOADS=(
    "SET -c 50 -P 1|set|50|1|3|$N_P1"
    "GET -c 50 -P 1|get|50|1|3|$N_P1"
    "SET -c 50 -P 16|set|50|16|3|$N_P16"
    "GET -c 50 -P 16|get|50|16|3|$N_P16"
    "SET -c 500 -P 1|set|500|1|3|$N_P1"
    "GET -c 500 -P 1|get|500|1|3|$N_P1"
)
CL_TARGETS=(direct-cluster sidecar-cluster)
CL_KEYS=100000              # redis-benchmark -r: random keys, over the slots
CL_POP_N=$((10 * CL_KEYS))  # SETs per target before the runs (all but e^-10 of the keys)
declare -A CL_RUNS=() CL_CPUR=() CL_MED=() CL_MEDCPU=()
CL_SKIP="" CL_COUNTERS="" CL_ERRSTATS="" CL_SIDECAR_ERRS=""
CL_TIMER_IR="" CL_IR_EMPTY="" CL_IR_LOAD="" CL_IR_LOAD_R="" CL_IPR="" CL_IPR_R="" CL_CG_SECS="" CL_CG_SECS_R=""
CL_IPR_SINGLE="" CL_IPR_SINGLE_SRC=""

# cluster_start: the 3 nodes, the cluster made of them, cluster_state:ok on
# every node, the sidecar in front with the slot map read, and keys SET
# through the sidecar read back from the cluster (redis-cli -c). On
# failure, CL_SKIP says why.
cluster_start() {
    local p i ok pid v got
    start_cluster_nodes
    for i in "${!P_CL[@]}"; do
        p=${P_CL[$i]} pid=${CL_PIDS[$i]} ok=0
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null)" = PONG ] && { ok=1; break; }
            sleep 0.1
        done
        [ $ok = 1 ] || { CL_SKIP="cluster node $p did not start (log: bench/out/logs/cluster-$p.log)"; return 1; }
    done
    local addrs=()
    for p in "${P_CL[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
        >>"$TMP/cluster-create.log" 2>&1 ||
        { CL_SKIP="redis-cli --cluster create failed (log: bench/out/logs/cluster-create.log)"; return 1; }
    for _ in $(seq 300); do
        ok=0
        for p in "${P_CL[@]}"; do
            redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' && ok=$((ok + 1))
        done
        [ $ok = ${#P_CL[@]} ] && break
        sleep 0.1
    done
    [ $ok = ${#P_CL[@]} ] || { CL_SKIP="cluster_state:ok on only $ok of ${#P_CL[@]} nodes after 30s"; return 1; }
    start_sidecar_cluster
    wait_ready sidecar-cluster 10 || { CL_SKIP="redis-sidecar with [upstream] cluster did not start (log: bench/out/logs/sidecar.log)"; return 1; }
    wait_slot_map 10 || { CL_SKIP="redis-sidecar did not read the cluster's slot map within 10s (log: bench/out/logs/sidecar.log)"; return 1; }
    for i in 1 2 3 4 5 6; do       # 6 keys: on every node, most likely
        v="bench-cluster-$RANDOM"
        redis-cli -h 127.0.0.1 -p "$P_SIDECAR" set "bench:sanity:$i" "$v" >/dev/null 2>&1
        got=$(redis-cli -c -h 127.0.0.1 -p "${P_CL[0]}" get "bench:sanity:$i" 2>/dev/null)
        [ "$got" = "$v" ] || { CL_SKIP="the sidecar did not pass SET bench:sanity:$i through to the cluster (it has \"$got\")"; return 1; }
    done
    return 0
}

# cl_populate TARGET: SET CL_POP_N random keys (-r CL_KEYS, 3 bytes) through
# TARGET, so that GETs find their keys. redis-benchmark --cluster names its
# keys key:{TAG}:N (TAG: the first slot of the client's node), plain
# redis-benchmark key:N, so each target fills its own keyspace.
cl_populate() {
    local t=$1 CONN
    conn_args "$t"
    [ "$t" = direct-cluster ] && CONN+=(--cluster)
    watch_run "$t" 300 "$TMP/pop.out" "$TMP/pop.err" taskset -c "$CPU_CLIENT" \
        redis-benchmark "${CONN[@]}" -r "$CL_KEYS" -t set -c 50 -P 16 -d 3 -n "$CL_POP_N" --csv &&
        [ -z "$WATCH" ] || die "could not populate the cluster through $t${WATCH:+ ($WATCH)}: $(tail -c 300 "$TMP/pop.err" | tr '\n' ' ')"
}

if [ "$RUN_CLUSTER" = 1 ]; then     # BENCH_TLS_ONLY=1 skips section 8
echo
echo "== Redis Cluster (3 masters): redis-benchmark --cluster direct vs plain redis-benchmark through the sidecar ([upstream] cluster); -r $CL_KEYS; $REPS repetition(s), interleaved; req/s (Redis CPU us/request, 3 nodes)"
if cluster_start; then
    echo "  nodes on ports ${P_CL[*]}; $(redis-cli -h 127.0.0.1 -p "$P_SIDECAR" proxy nodes 2>/dev/null | tr -d '\r' | grep -E '^shard[0-9]+:' | sed 's/,state=.*,slots=/ slots=/; s/,replicas=.*//' | tr '\n' ' ')"
    echo "  populating: SET -r $CL_KEYS -n $CL_POP_N -c 50 -P 16 through each target"
    for t in "${CL_TARGETS[@]}"; do cl_populate "$t"; done
    # the sanity check's redis-cli -c got MOVED replies: count from here
    for p in "${P_CL[@]}"; do redis-cli -h 127.0.0.1 -p "$p" config resetstat >/dev/null 2>&1; done
    RB_EXTRA=(-r "$CL_KEYS")
    for wl in "${CL_WORKLOADS[@]}"; do
        IFS='|' read -r label test c p d n <<<"$wl"
        for rep in $(seq "$REPS"); do
            line="  $label  rep $rep:"
            for t in "${CL_TARGETS[@]}"; do
                if bench_once "$t" "$test" "$c" "$p" "$d" "$n"; then
                    CL_RUNS["$label|$t"]+="$RPS "
                    CL_CPUR["$label|$t"]+="$RCPU "
                    line+="  $t $(fmt_int "$RPS") ($(fmt_us "$RCPU") us)"
                    echo "Cluster $label,$rep,$t,$n,$RPS,$RCPU" >>"$OUT/runs.csv"
                else
                    line+="  $t FAILED"
                    echo "Cluster $label,$rep,$t,$n,," >>"$OUT/runs.csv"
                    FAILURES+=("FAIL: $t, cluster $label, repetition $rep: $RB_ERR")
                fi
                for pid in "${CL_PIDS[@]}"; do
                    kill -0 "$pid" 2>/dev/null || die "cluster node ${PIDS[$pid]:-$pid} died during $label: $(logtail direct-cluster)"
                done
                if ! kill -0 "$SIDECAR_PID" 2>/dev/null; then
                    proxy_died sidecar-cluster "cluster $label, repetition $rep"
                    line+=" (CRASHED)"
                fi
            done
            echo "$line"
        done
    done
    RB_EXTRA=()
    # What the runs left behind: the sidecar's cluster counters (MOVED/ASK
    # absorbed, requests held), its non-zero error counters, and the error
    # replies the nodes counted (MOVED/ASK to redis-benchmark --cluster too)
    CL_COUNTERS=$(redis-cli -h 127.0.0.1 -p "$P_SIDECAR" proxy nodes 2>/dev/null | tr -d '\r' |
        grep -E '^(map_reads|moved|ask|held_tryagain|held_clusterdown|last_error):' | paste -sd ' ')
    CL_SIDECAR_ERRS=$(redis-cli -h 127.0.0.1 -p "$P_SIDECAR" proxy info 2>/dev/null | tr -d '\r' |
        grep -E '^errors_[a-z_]+:[1-9]' | paste -sd ' ')
    for p in "${P_CL[@]}"; do
        CL_ERRSTATS+="${CL_ERRSTATS:+; }$p: $(redis-cli -h 127.0.0.1 -p "$p" info errorstats 2>/dev/null | tr -d '\r' |
            grep '^errorstat_' | sed 's/^errorstat_//; s/:count=/=/' | paste -sd ' ' | grep . || echo none)"
    done
    echo "  sidecar: ${CL_COUNTERS:-PROXY NODES did not answer}; errors: ${CL_SIDECAR_ERRS:-none}"
    echo "  error replies counted by the nodes: $CL_ERRSTATS"
    stop_proc "$SIDECAR_PID" TERM 10
    [ "$STOP_STATUS" = 0 ] || FAILURES+=("redis-sidecar ([upstream] cluster) did not exit cleanly on SIGTERM after the cluster runs: $(describe_status "$STOP_STATUS")")

    # Instructions per request in cluster mode, as in section 3; the same
    # redis-benchmark command (its one key, key:__rand_int__, is in one
    # slot, so on one node), and for information with -r (keys on all 3).
    # As section 3 keeps leases from being opened on timers, the slot map is
    # not read again every check_interval here (3600s): that work is per
    # second, and under callgrind the loaded run may last less or more than
    # the empty one. What it costs per second is measured apart: two empty
    # runs with the default check_interval, 3 s and 13 s idle.
    echo
    echo "== callgrind, sidecar in cluster mode: $CG_CMD ($CG_REQ requests) minus a run with 0 requests"
    SIDECAR_EXTRA="[pool]
min_idle_leases = 0"
    CG_TAG=idle3 cg_run sidecar-cluster 0
    ir3=$IR
    CG_TAG=idle13 CG_IDLE=13 cg_run sidecar-cluster 0
    CL_TIMER_IR=$(awk -v a="$IR" -v b="$ir3" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.0f\n", (a - b) / 10 }')
    echo "  sidecar-cluster, default check_interval: Ir with 0 requests, 3 s idle ${ir3:-?}, 13 s idle ${IR:-?} -> ${CL_TIMER_IR:-?} instructions per idle second"
    SIDECAR_EXTRA="[pool]
min_idle_leases = 0
[health]
check_interval = 3600s"
    cg_run sidecar-cluster 0
    CL_IR_EMPTY=$IR
    cg_run sidecar-cluster "$CG_N"
    CL_IR_LOAD=$IR CL_CG_SECS=$CG_SECS
    CG_TAG=r cg_run sidecar-cluster "$CG_N" -r "$CL_KEYS"
    CL_IR_LOAD_R=$IR CL_CG_SECS_R=$CG_SECS
    SIDECAR_EXTRA=""
    CL_IPR=$(ipr "$CL_IR_LOAD" "$CL_IR_EMPTY") CL_IPR_R=$(ipr "$CL_IR_LOAD_R" "$CL_IR_EMPTY")
    echo "  sidecar-cluster: Ir with 0 requests ${CL_IR_EMPTY:-?}, with $CG_REQ requests ${CL_IR_LOAD:-?} -> ${CL_IPR:-?} instructions/request; with -r $CL_KEYS ${CL_IR_LOAD_R:-?} -> ${CL_IPR_R:-?}"
else
    [ "$CLUSTER_ONLY" = 1 ] && die "$CL_SKIP"
    echo "bench: $CL_SKIP; no cluster rows" >&2
    FAILURES+=("FAIL: Redis Cluster section skipped: $CL_SKIP")
    stop_tracked "$SIDECAR_PID" TERM 10
fi
for pid in "${CL_PIDS[@]}"; do stop_tracked "$pid" TERM 10; done

# The single-master figure to compare with: section 3's, or in a
# cluster-only run the same measure taken here against a fresh master.
if [ "$RUN_MAIN" = 1 ]; then
    CL_IPR_SINGLE=${IPR[sidecar]:-} CL_IPR_SINGLE_SRC="section 3, this run"
elif [ -z "$CL_SKIP" ]; then
    echo "  single master (BENCH_CLUSTER_ONLY=1: section 3's sidecar measure, taken here)"
    start_redis
    wait_ready direct 10 || die "redis-server did not start"
    SIDECAR_EXTRA="[pool]
min_idle_leases = 0"
    cg_run sidecar 0
    ir0=$IR
    cg_run sidecar "$CG_N"
    SIDECAR_EXTRA=""
    CL_IPR_SINGLE=$(ipr "$IR" "$ir0")
    CL_IPR_SINGLE_SRC="measured in this cluster-only run as in section 3: Ir $CG_REQ-request run ${IR:-?} (${CG_SECS}s) - Ir 0-request run ${ir0:-?}"
    echo "  sidecar (single master): Ir with 0 requests ${ir0:-?}, with $CG_REQ requests ${IR:-?} -> ${CL_IPR_SINGLE:-?} instructions/request"
    stop_proc "$REDIS_PID" TERM 10
fi
fi  # section 8
for wl in "${CL_WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    for t in "${CL_TARGETS[@]}"; do
        CL_MED["$label|$t"]=$(echo "${CL_RUNS["$label|$t"]:-}" | median)
        CL_MEDCPU["$label|$t"]=$(echo "${CL_CPUR["$label|$t"]:-}" | median)
    done
done

# --- 9. open-loop latency: direct, twemproxy, sidecar at fixed rates --------
# bench/loadgen sends on a fixed schedule over 50 connections whatever the
# replies do, and times each request from when it was due (no coordinated
# omission); the same master, the targets one after the other. What the
# sidecar adds is its percentile minus direct's at the same rate.
# label|GET or SET|value size|rate|keys
OL_WORKLOADS=(
    "GET 3 B, 10k/s|get|3|10000|10000"
    "GET 3 B, 50k/s|get|3|50000|10000"
    "SET 3 B, 10k/s|set|3|10000|10000"
    "GET 16 KB, 10k/s|get|16384|10000|1000"
    "SET 16 KB, 10k/s|set|16384|10000|1000"
)
declare -A OL=()            # "label|target" -> loadgen's line
OL_SKIP=""
if [ "$RUN_LAT" = 1 ]; then
echo
echo "== open-loop latency: bench/loadgen, 50 connections, $OL_ROUNDS rounds of ${OL_SECS}s measured after ${OL_WARM}s of warm-up per target, pooled; µs from each request's scheduled time"
if [ ! -x "$LOADGEN_BIN" ]; then
    OL_SKIP="$LOADGEN_BIN not built (make bench builds it)"
else
    start_plain_targets
    for wl in "${OL_WORKLOADS[@]}"; do
        IFS='|' read -r label test d rate keys <<<"$wl"
        taskset -c "$CPU_CLIENT" "$LOADGEN_BIN" -p "$P_MASTER" --populate -d "$d" -k "$keys"             >/dev/null 2>>"$TMP/loadgen.log" || FAILURES+=("FAIL: loadgen could not populate for $label")
        # OL_ROUNDS rounds, each running the three targets in a turn that
        # starts one further on each round; a target's latencies pooled
        declare -A OL_SUM=()
        targets=(direct twemproxy sidecar)
        for t in "${targets[@]}"; do rm -f "$TMP/ol-$t.lat"; done
        for ((round = 0; round < OL_ROUNDS; round++)); do
            for ((j = 0; j < 3; j++)); do
                t=${targets[$(( (round + j) % 3 ))]}
                out=$(taskset -c "$CPU_CLIENT" "$LOADGEN_BIN" -p "$(port_of "$t")" -c 50 -r "$rate" \
                      -t "$OL_SECS" -w "$OL_WARM" -T "$test" -d "$d" -k "$keys" -o "$TMP/ol-$t.lat" \
                      2>>"$TMP/loadgen.log")
                rc=$?
                [ "$rc" = 0 ] || FAILURES+=("FAIL: loadgen through $t, $label, round $((round + 1)): ${out:-no output} $(tail -c 200 "$TMP/loadgen.log")")
                echo "\"$label\",$((round + 1)),$t-open-loop,,$(tr ' ' ';' <<<"$out")," >>"$OUT/runs.csv"
                for f in sent answered errors; do
                    v=$(sed -n "s/.* $f=\([0-9]*\).*/\1/p" <<<" $out")
                    OL_SUM["$t|$f"]=$(( ${OL_SUM["$t|$f"]:-0} + ${v:-0} ))
                done
            done
        done
        line="  $label:"
        for t in "${targets[@]}"; do
            sent=${OL_SUM["$t|sent"]:-0} answered=${OL_SUM["$t|answered"]:-0}
            out="rate=$rate sent=$sent answered=$answered errors=${OL_SUM["$t|errors"]:-0} lost=$((sent - answered)) $("$LOADGEN_BIN" --merge "$TMP/ol-$t.lat" 2>>"$TMP/loadgen.log")"
            OL["$label|$t"]=$out
            line+="  $t $(sed -n 's/.*p50=\([^ ]*\) .*p99=\([^ ]*\) p999=\([^ ]*\) .*/p50 \1 p99 \2 p99.9 \3/p' <<<"$out")"
            echo "\"$label\",pooled,$t-open-loop,,$(tr ' ' ';' <<<"$out")," >>"$OUT/runs.csv"
        done
        unset OL_SUM
        echo "$line"
    done
    stop_proc "$TWEM_PID" INT 10
    stop_proc "$SIDECAR_PID" TERM 10
    stop_proc "$REDIS_PID" TERM 10
fi
fi  # section 9

# --- report ---------------------------------------------------------------
ELAPSED=$(( $(date +%s) - T_START ))
verdict() { [ "$1" = 1 ] && echo PASS || echo SHORT; }
met() { [ "$1" = 1 ] && echo met || echo "NOT met"; }
TBL=() RSS_L=() LINK_L=() LAT_L=() IPR_L=() TGT_L=()
if [ "$RUN_MAIN" = 1 ]; then     # sections 1-6
TW_SHORT=() ALL_TW=1
# TBL rows: workload|direct|twem|sidecar|s/d|s/t|Redis us/req direct|twem|sidecar
for wl in "${WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    d=${MED["$label|direct"]} tw=${MED["$label|twemproxy"]} s=${MED["$label|sidecar"]}
    rd=$(ratio "$s" "$d") rt=$(ratio "$s" "$tw")
    TBL+=("$label|$(fmt_int "$d")|$(fmt_int "$tw")|$(fmt_int "$s")|$(fmt_x "$rd")|$(fmt_x "$rt")|$(fmt_us "${MEDCPU["$label|direct"]}")|$(fmt_us "${MEDCPU["$label|twemproxy"]}")|$(fmt_us "${MEDCPU["$label|sidecar"]}")")
    # compare the medians themselves: the ratio shown is rounded
    if ! ge "$s" "$tw"; then ALL_TW=0; TW_SHORT+=("$label ${rt:-FAILED}x"); fi
done
C500_OK=1 C500_TXT=""
for test in SET GET; do
    label="$test -c 500 -P 1"
    r=$(ratio "${MED["$label|sidecar"]}" "${MED["$label|direct"]}")
    ge "${MED["$label|sidecar"]}" "${MED["$label|direct"]}" || C500_OK=0
    C500_TXT+="${C500_TXT:+, }$test ${r:-FAILED}x"
done
# Informational: Redis CPU per request, direct vs sidecar, at -c 500 -P 1
CPU500_TXT=""
for test in SET GET; do
    label="$test -c 500 -P 1"
    cd_=${MEDCPU["$label|direct"]} cs_=${MEDCPU["$label|sidecar"]}
    rel=$(awk -v d="$cd_" -v s="$cs_" 'BEGIN {
        if (d == "" || s == "" || d <= 0 || s <= 0) print "-"
        else if (s <= d) printf "%.2f× less\n", d / s
        else printf "%.2f× more\n", s / d }')
    CPU500_TXT+="${CPU500_TXT:+; }$test: direct $(fmt_us "$cd_") µs, sidecar $(fmt_us "$cs_") µs ($rel)"
done

V_TW=$(verdict $ALL_TW)
V_C500=$(verdict $C500_OK)
if [ -n "${IPR[sidecar]}" ] && [ -n "${IPR[twemproxy]}" ] && [ "${IPR[sidecar]}" -lt "${IPR[twemproxy]}" ]; then V_IPR=PASS; else V_IPR=SHORT; fi
if [ -n "${RSS_LOAD[sidecar]:-}" ] && [ -n "${RSS_LOAD[twemproxy]:-}" ] && [ "${RSS_NOTE[sidecar]}" = "" ] &&
    [ "${RSS_LOAD[sidecar]}" -lt "${RSS_LOAD[twemproxy]}" ]; then V_RSS=PASS; else V_RSS=SHORT; fi

rss_line() { # TARGET
    local t=$1 b=${RSS_BASE[$1]:-} l=${RSS_LOAD[$1]:-}
    [ -z "$b" ] || [ -z "$l" ] && { echo "FAILED${RSS_NOTE[$t]:-}"; return; }
    echo "baseline $(fmt_kb "$b"), with $IDLE idle clients $(fmt_kb "$l") ($(awk -v b="$b" -v l="$l" -v n="$IDLE" 'BEGIN { printf "%.2f", (l - b) * 1024 / n / 1024 }') KB per client)${RSS_NOTE[$t]}"
}
name_of() { case $1 in twemproxy) echo "twemproxy" ;; sidecar) echo "redis-sidecar" ;; direct) echo "direct" ;; esac; }

for t in twemproxy sidecar; do RSS_L+=("RSS, $(name_of $t): $(rss_line $t)"); done
LINK_L+=("upstream links, direct: ${LINK[direct]} client connections (${LINK_NOTE[direct]})")
for t in twemproxy sidecar; do LINK_L+=("upstream links, $(name_of $t): ${LINK[$t]} (${LINK_NOTE[$t]}; configured pool $POOL)"); done
LAT_L=("$RH_LINE" "$R3_LINE" "$TX_LINE")
for t in direct twemproxy sidecar; do
    LAT_L+=("latency, $(name_of $t): GET after ${IDLE_S}s idle $(sed 's/after_idle_us=\([0-9]*\) busy_us=\([0-9]*\)/\1 µs, the GET right after it \2 µs/' <<<"${LAT[$t]:-FAILED}")")
done
for t in twemproxy sidecar; do
    IPR_L+=("instructions/request, $(name_of $t): ${IPR[$t]:-FAILED} (Ir $CG_REQ-request run ${IR_LOAD[$t]:-?} - Ir 0-request run ${IR_EMPTY[$t]:-?}); SET -c 50 -P 1 alone ${IPR_SET1[$t]:-FAILED}, GET -c 50 -P 16 alone ${IPR_GET16[$t]:-FAILED}")
done
TW_DETAIL=$( [ $ALL_TW = 1 ] && echo "all workloads" || echo "short in: $(IFS=';'; echo "${TW_SHORT[*]}")" )
TGT_L+=("[$V_TW] sidecar >= 1.0x twemproxy in every workload ($TW_DETAIL)")
TGT_L+=("[$V_C500] sidecar >= 1.0x direct at -c 500 -P 1 ($C500_TXT)")
# Large values: 1 MB SET and GET at least 1.2x twemproxy and 0.7x direct,
# 100 KB at least 1.1x twemproxy (the medians compared, not the rounded ratios)
LV1_OK=1 LV1_TXT="" LV100_OK=1 LV100_TXT=""
for test in SET GET; do
    label="$test 1 MB -c 10"
    d=${MED["$label|direct"]} tw=${MED["$label|twemproxy"]} s=${MED["$label|sidecar"]}
    ge_times "$s" "$tw" 1.2 || LV1_OK=0
    ge_times "$s" "$d" 0.7 || LV1_OK=0
    LV1_TXT+="${LV1_TXT:+; }$test $(fmt_x "$(ratio "$s" "$tw")") twemproxy, $(fmt_x "$(ratio "$s" "$d")") direct"
    label="$test 100 KB -c 10"
    tw=${MED["$label|twemproxy"]} s=${MED["$label|sidecar"]}
    ge_times "$s" "$tw" 1.1 || LV100_OK=0
    LV100_TXT+="${LV100_TXT:+; }$test $(fmt_x "$(ratio "$s" "$tw")") twemproxy"
done
TGT_L+=("[$(verdict $LV1_OK)] 1 MB values at -c 10: SET and GET at least 1.2x twemproxy and 0.7x direct: $(met $LV1_OK) ($LV1_TXT)")
TGT_L+=("[$(verdict $LV100_OK)] 100 KB values at -c 10: SET and GET at least 1.1x twemproxy: $(met $LV100_OK) ($LV100_TXT)")
TGT_L+=("[$V_IPR] fewer instructions per request than twemproxy (sidecar ${IPR[sidecar]:-?} vs twemproxy ${IPR[twemproxy]:-?})")
V_IS=SHORT V_IG=SHORT
[ -n "${IPR_SET1[sidecar]:-}" ] && [ "${IPR_SET1[sidecar]}" -le 1200 ] && V_IS=PASS
[ -n "${IPR_GET16[sidecar]:-}" ] && [ "${IPR_GET16[sidecar]}" -le 600 ] && V_IG=PASS
TGT_L+=("[$V_IS] instructions per request, SET -c 50 -P 1: at most 1,200 (sidecar ${IPR_SET1[sidecar]:-?}, twemproxy ${IPR_SET1[twemproxy]:-?})")
TGT_L+=("[$V_IG] instructions per request, GET -c 50 -P 16: at most 600 (sidecar ${IPR_GET16[sidecar]:-?}, twemproxy ${IPR_GET16[twemproxy]:-?})")
TGT_L+=("[$V_RSS] less RSS than twemproxy with $IDLE idle clients (sidecar $(fmt_kb "${RSS_LOAD[sidecar]:-0}") vs twemproxy $(fmt_kb "${RSS_LOAD[twemproxy]:-0}"))")
TGT_L+=("[info] Redis CPU per request at -c 500 -P 1: $CPU500_TXT")
V_R3=$(ge "$R3_RATIO" 0.95 && echo PASS || echo SHORT)
TGT_L+=("[$V_R3] RESP3 within 5% of RESP2 through the sidecar at -c 50 -P 16 (${R3_RATIO}x)")
fi  # sections 1-6

# 7. TLS rows: workload|direct TLS|sidecar|s/d|Redis us/req direct TLS|sidecar|CPU s/d
TLS_TBL=()
for wl in "${TLS_WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    d=${TLS_MED["$label|direct-tls"]} s=${TLS_MED["$label|sidecar-tls"]}
    cd_=${TLS_MEDCPU["$label|direct-tls"]} cs_=${TLS_MEDCPU["$label|sidecar-tls"]}
    TLS_TBL+=("$label|$(fmt_int "$d")|$(fmt_int "$s")|$(fmt_x "$(ratio "$s" "$d")")|$(fmt_us "$cd_")|$(fmt_us "$cs_")|$(fmt_x "$(ratio "$cs_" "$cd_")")")
done
# Targets at -c 500 -P 1, SET and GET each must meet them; the medians
# themselves are compared, not the rounded ratios shown.
TLS_CPU_OK=1 TLS_CPU_TXT="" TLS_TP_OK=1 TLS_TP_TXT=""
for test in SET GET; do
    label="$test -c 500 -P 1"
    d=${TLS_MED["$label|direct-tls"]} s=${TLS_MED["$label|sidecar-tls"]}
    cd_=${TLS_MEDCPU["$label|direct-tls"]} cs_=${TLS_MEDCPU["$label|sidecar-tls"]}
    awk -v s="$cs_" -v d="$cd_" 'BEGIN { exit !(s != "" && d != "" && d > 0 && s <= 0.5 * d) }' || TLS_CPU_OK=0
    r=$(ratio "$cs_" "$cd_")
    TLS_CPU_TXT+="${TLS_CPU_TXT:+, }$test ${r:-FAILED}${r:+x} ($(fmt_us "$cs_") vs $(fmt_us "$cd_") µs)"
    ge "$s" "$d" || TLS_TP_OK=0
    r=$(ratio "$s" "$d")
    TLS_TP_TXT+="${TLS_TP_TXT:+, }$test ${r:-FAILED}${r:+x} ($(fmt_int "$s") vs $(fmt_int "$d") req/s)"
done
TLS_SKIP_TXT=${TLS_SKIP:+; the TLS section did not run: $TLS_SKIP}
if [ "$RUN_TLS" = 1 ]; then
TGT_L+=("[$(verdict $TLS_CPU_OK)] TLS: Redis CPU per request behind the sidecar ≤ 0.5× direct TLS at -c 500 -P 1: $(met $TLS_CPU_OK) (sidecar/direct: $TLS_CPU_TXT)$TLS_SKIP_TXT")
TGT_L+=("[$(verdict $TLS_TP_OK)] TLS: sidecar throughput ≥ 1.0× direct TLS at -c 500 -P 1: $(met $TLS_TP_OK) (sidecar/direct: $TLS_TP_TXT)$TLS_SKIP_TXT")
fi

# 8. cluster rows: workload|direct cluster|sidecar|s/d cluster|s/d single
# master (section 1, same workload)|Redis us/req direct cluster|sidecar
CL_TBL=() CL_RATIO_OK=1 CL_RATIO_TXT="" CL_TICK_TXT=""
for wl in "${CL_WORKLOADS[@]}"; do
    IFS='|' read -r label _ _ _ _ n <<<"$wl"
    d=${CL_MED["$label|direct-cluster"]} s=${CL_MED["$label|sidecar-cluster"]}
    # redis-benchmark --cluster runs threads (one per node), and threaded it
    # stops only on its 250 ms throughput timer: its elapsed time is rounded
    # up to the next tick, so its req/s reads low by up to 250 ms / time
    CL_TICK_TXT+="${CL_TICK_TXT:+, }$label $(awk -v n="$n" -v d="$d" 'BEGIN {
        if (d == "" || d <= 0) { print "-"; exit }
        t = n / d
        if (t > 0.3) printf "%.2f s (up to %.0f%% low)", t, (t / (t - 0.25) - 1) * 100
        else printf "%.2f s (unbounded)", t }')"
    rc=$(ratio "$s" "$d") rm_="n/a" md="" ms=""
    if [ "$RUN_MAIN" = 1 ] && [ -n "${MED["$label|direct"]+x}" ]; then
        md=${MED["$label|direct"]} ms=${MED["$label|sidecar"]}
        rm_=$(ratio "$ms" "$md")
        rm_=${rm_:-FAILED}
    fi
    # the unrounded ratios are compared
    awk -v s="$s" -v d="$d" -v ms="$ms" -v md="$md" \
        'BEGIN { exit !(s != "" && d > 0 && ms != "" && md > 0 && s / d >= ms / md) }' || CL_RATIO_OK=0
    CL_TBL+=("$label|$(fmt_int "$d")|$(fmt_int "$s")|$(fmt_x "$rc")|$( [ "$rm_" = n/a ] || [ "$rm_" = FAILED ] && echo "$rm_" || echo "${rm_}x")|$(fmt_us "${CL_MEDCPU["$label|direct-cluster"]}")|$(fmt_us "${CL_MEDCPU["$label|sidecar-cluster"]}")")
    CL_RATIO_TXT+="${CL_RATIO_TXT:+, }$label ${rc:-FAILED}${rc:+x} vs ${rm_}$( [ "$rm_" = n/a ] || [ "$rm_" = FAILED ] || echo x)"
done
# 9. open-loop rows: workload|target|p50|p90|p99|p99.9|max|added p50/p99/p99.9
ol_f() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" ${OL["$1"]:-}"; }
ol_add() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan") print "-"; else printf "%+.1f", a - b }'; }
OL_TBL=() OL_OK=1 OL_TXT=""
for wl in "${OL_WORKLOADS[@]}"; do
    IFS='|' read -r label _ <<<"$wl"
    for t in direct twemproxy sidecar; do
        k="$label|$t" added="-"
        if [ "$t" != direct ]; then
            added="$(ol_add "$(ol_f "$k" p50)" "$(ol_f "$label|direct" p50)") / $(ol_add "$(ol_f "$k" p99)" "$(ol_f "$label|direct" p99)") / $(ol_add "$(ol_f "$k" p999)" "$(ol_f "$label|direct" p999)")"
        fi
        OL_TBL+=("$label|$t|$(ol_f "$k" p50)|$(ol_f "$k" p90)|$(ol_f "$k" p99)|$(ol_f "$k" p999)|$(ol_f "$k" max)|$added")
    done
done
# issue 21's target at 10k GET 3 B: the sidecar adds at most 20/60/200 µs
# at p50/p99/p99.9, and less than twemproxy adds at each
l="GET 3 B, 10k/s"
for q in "p50 20" "p99 60" "p999 200"; do
    set -- $q
    s=$(ol_f "$l|sidecar" "$1") d=$(ol_f "$l|direct" "$1") tw=$(ol_f "$l|twemproxy" "$1")
    a=$(ol_add "$s" "$d") at=$(ol_add "$tw" "$d")
    awk -v a="$a" -v at="$at" -v lim="$2" 'BEGIN { exit !(a != "-" && at != "-" && a + 0 <= lim && a + 0 < at + 0) }' || OL_OK=0
    OL_TXT+="${OL_TXT:+, }$1 $a µs (limit $2; twemproxy $at)"
done
OL_SKIP_TXT=${OL_SKIP:+; the latency section did not run: $OL_SKIP}
if [ "$RUN_LAT" = 1 ]; then
TGT_L+=("[$(verdict $OL_OK)] open loop, GET 3 B at 10k/s over 50 connections: the sidecar's added latency over direct within 20/60/200 µs at p50/p99/p99.9 and below twemproxy's: $(met $OL_OK) ($OL_TXT)$OL_SKIP_TXT")
fi

CL_SKIP_TXT=${CL_SKIP:+; the cluster section did not run: $CL_SKIP}
CL_IPR_RATIO=$(ratio "$CL_IPR" "$CL_IPR_SINGLE")
CL_IPR_OK=0
awk -v r="$CL_IPR_RATIO" 'BEGIN { exit !(r != "" && r <= 1.20) }' && CL_IPR_OK=1
CL_IPR_L=("instructions/request, redis-sidecar in front of the 3-master cluster: ${CL_IPR:-FAILED} (Ir $CG_REQ-request run ${CL_IR_LOAD:-?} (${CL_CG_SECS:-?}s) - Ir 0-request run ${CL_IR_EMPTY:-?}); single master: ${CL_IPR_SINGLE:-FAILED} (${CL_IPR_SINGLE_SRC:-not measured}); cluster/single ${CL_IPR_RATIO:-?}${CL_IPR_RATIO:+x}"
    "instructions per idle second in cluster mode with the default check_interval (1 s: the slot map read again, each node checked; information): ${CL_TIMER_IR:-FAILED} (two 0-request runs, 3 s and 13 s idle)"
    "instructions/request in cluster mode with -r $CL_KEYS (keys on all 3 nodes; information): ${CL_IPR_R:-FAILED} (Ir ${CL_IR_LOAD_R:-?} (${CL_CG_SECS_R:-?}s) - ${CL_IR_EMPTY:-?})"
    "direct cluster run times as redis-benchmark --cluster reports them (median run), rounded up to its 250 ms timer tick (threaded mode), so its req/s can read low by up to: ${CL_TICK_TXT:-?}; plain redis-benchmark to the sidecar stops at the last reply"
    "after the cluster runs, the sidecar's PROXY NODES: ${CL_COUNTERS:-?}; its non-zero error counters (PROXY INFO): ${CL_SIDECAR_ERRS:-none}; error replies the nodes counted during the runs (INFO errorstats, reset after populating; port: counts): ${CL_ERRSTATS:-?}")
if [ "$RUN_CLUSTER" = 1 ]; then
    if [ "$RUN_MAIN" = 1 ]; then
        TGT_L+=("[$(verdict $CL_RATIO_OK)] cluster: sidecar/direct ratio ≥ single-master ratio (per workload): $( [ $CL_RATIO_OK = 1 ] && echo met || echo SHORT) (cluster vs single master: $CL_RATIO_TXT; direct cluster req/s may read low: 250 ms timer tick, see above)$CL_SKIP_TXT")
    else
        TGT_L+=("[n/a] cluster: sidecar/direct ratio ≥ single-master ratio (per workload): n/a (BENCH_CLUSTER_ONLY=1: no single-master throughput rows in this run; cluster: $CL_RATIO_TXT)$CL_SKIP_TXT")
    fi
    TGT_L+=("[$(verdict $CL_IPR_OK)] cluster: instructions per request within 20% of single master: $( [ $CL_IPR_OK = 1 ] && echo met || echo SHORT) (${CL_IPR:-?} vs ${CL_IPR_SINGLE:-?}: ${CL_IPR_RATIO:-?}${CL_IPR_RATIO:+x}, at most 1.20x)$CL_SKIP_TXT")
fi

NOTES=(
    "mode: $MODE; $REPS repetition(s) per target, median shown; -n $N_P1 for -P 1, $N_P16 for -P 16; redis-benchmark default keyspace (one key$( [ "$RUN_CLUSTER" = 0 ] || echo "; the cluster section: -r $CL_KEYS")), GET key populated first with the workload's value size"
    "placement: $PLACEMENT"
    "placement consequence: $PLACEMENT_EFFECT"
    "load average (1/5/15 min) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running on the machine competes with the runs)"
    "Redis CPU: ${REDIS_CPU_FIELDS:-used_cpu_sys + used_cpu_user (INFO cpu did not answer)} from the master's INFO cpu just before and just after each redis-benchmark run; the difference divided by the run's requests, in microseconds of Redis CPU per request; median over the repetitions like req/s. It includes Redis accepting and closing redis-benchmark's connections when direct (through a proxy, Redis only sees the proxy's persistent links) and the one INFO call"
)
[ "$RUN_MAIN" = 0 ] || NOTES+=(
    "twemproxy: nutcracker, server_connections $POOL, client_connections 0 (unlimited), default 16 KiB mbufs, -v 4; redis-sidecar: [pool] connections $POOL, log level warn"
    "RSS: VmRSS from /proc/PID/status of a freshly started proxy, before and with $IDLE connections from one Python process, each of which sent PING and read PONG"
    "links: max over samples of the lines in the master's CLIENT LIST (minus the redis-cli asking) while redis-benchmark -t get -c 500 -P 1 -n $N_LINKS ran through the proxy alone"
    "instructions: callgrind total Ir of the proxy for '$CG_CMD' minus a run that starts, answers one PING, waits 3 s and stops; divided by $CG_REQ requests (includes the 100 client connects/closes); the sidecar without leases kept ready (min_idle_leases = 0)"
)
[ "$RUN_TLS" = 0 ] || NOTES+=(
    "TLS (section 7): a CA and a server certificate (EC prime256v1, SAN DNS:localhost, IP:127.0.0.1) made with the openssl command; a TLS-only redis-server (--port 0 --tls-port, --tls-auth-clients no) on CPU $CPU_REDIS like the master; direct TLS: redis-benchmark --tls --cacert against it, each connection a full handshake; sidecar: plaintext redis-benchmark to the sidecar on loopback, the sidecar (CPU $CPU_PROXY, [pool] connections $POOL) with [upstream] tls = on, tls_ca_file = the bench CA, tls_verify = full; negotiated ${TLS_PROTO:-(unknown)} (openssl s_client with defaults, as redis-benchmark and the sidecar use OpenSSL's defaults). SET/GET with 3-byte values at -c 50 -P 1, -c 50 -P 16, -c 500 -P 1, the GET key populated over TLS first, same -n as the plaintext rows, the two targets alternating, $REPS repetition(s), median. Redis CPU as above, from the TLS server's INFO cpu, read over TLS (so each sample adds one TLS handshake to the run's Redis CPU)"
    "TLS: twemproxy has no TLS, so it has no row in the TLS table"
)
[ "$RUN_CLUSTER" = 0 ] || NOTES+=(
    "Redis Cluster (section 8): 3 masters and no replicas (${#CPUS[@]} usable core(s): replicas would add replication work on the Redis core and processes the machine has no room for), redis-server --cluster-enabled yes --save '' --appendonly no on ports ${P_CL[*]} (bus +10000), all 3 on CPU $CPU_REDIS like the single master (so they share one core), made with redis-cli --cluster create --cluster-replicas 0, cluster_state:ok awaited on every node. Direct: redis-benchmark --cluster -h 127.0.0.1 -p ${P_CL[0]}, which reads the slot map and connects each of its clients to one node (the -c clients spread over the 3). Sidecar: plain redis-benchmark to the sidecar (CPU $CPU_PROXY, [upstream] cluster = 127.0.0.1:${P_CL[0]}, [pool] connections $POOL, [admin] allow = 127.0.0.1 for PROXY NODES, log level warn), which routes each request by its key's slot; the runs start once PROXY NODES shows slot_map:read. SET/GET with 3-byte values and -r $CL_KEYS for both targets at -c 50 -P 1, -c 50 -P 16, -c 500 -P 1, same -n as the plaintext rows; each target's keyspace populated first with $CL_POP_N SETs (-P 16); the two targets alternating, $REPS repetition(s), median. Redis CPU: INFO cpu of the 3 nodes summed, before and after each run, divided by the run's requests"
    "redis-benchmark --cluster runs one thread per node (3 here, all on CPU $CPU_CLIENT), the plain one a single thread; in threaded mode it stops only on its 250 ms throughput timer, so the elapsed time it divides by is rounded up to the next tick: direct cluster req/s read low by up to 250 ms / run time (per workload in the list above the targets); the sidecar's req/s are not affected"
    "cluster keys: redis-benchmark --cluster puts a hash tag in its keys, key:{TAG}:N with TAG naming the first slot of the client's node, so direct each node's keys are in one slot; through the sidecar the keys are key:N, spread over all 16384 slots"
    "cluster vs single master: the single-master sidecar/direct ratio is section 1's row of the same workload in this run (one key, no -r, one redis-server on CPU $CPU_REDIS); a BENCH_CLUSTER_ONLY=1 run has no such rows (n/a)"
    "cluster instructions: as in section 3 ('$CG_CMD' minus a 0-request run, min_idle_leases = 0), the sidecar with [upstream] cluster and [health] check_interval = 3600s; that command's one key (key:__rand_int__, no -r) is in one slot, so all its requests go to one node; the -r $CL_KEYS line spreads them over the 3. The 0-request run includes reading the slot map and opening the pool links to all 3 nodes. In cluster mode the sidecar reads the slot map again every check_interval (default 1 s): that work is per second, not per request, and would land on (or, when the loaded run is shorter than the empty run's 3 s idle, come off) the requests, so it is kept out of these runs (check_interval = 3600s) as section 3 keeps out leases opened on timers, and measured apart per idle second. The single-master figure keeps section 3's settings (default check_interval: one node's PING + ROLE per second). Wall time of each loaded run in brackets. Target: cluster/single master ≤ 1.20"
)
[ "$RUN_LAT" = 0 ] || NOTES+=(
    "open-loop latency (section 9): bench/loadgen (C, libev) on CPU $CPU_CLIENT, 50 connections, requests scheduled at a fixed rate (a timerfd armed for the next one, timer slack 1 ns) and sent round-robin over the connections whatever the replies do; each one's latency runs from its scheduled time to its reply (so a stall counts the queueing it causes: no coordinated omission). $OL_ROUNDS rounds per workload, each running direct, twemproxy and the sidecar in turn (the turn starting one further on each round) against the same master, ${OL_SECS} s measured after ${OL_WARM} s of warm-up per run; a target's latencies over all its rounds pooled before the percentiles are taken, so a slow spell of the machine falls on every target; keys key:0..N-1 populated first by loadgen --populate. Added latency: the sidecar's (or twemproxy's) percentile minus direct's at the same rate and workload. Requests lost (no reply within 2 s of the end; lost= counts them) are not in the percentiles. On this 2-core VM, timer wake-ups and scheduling put the direct p50 anywhere from about 50 to 220 µs (at 10k/s it can change from one round to the next) and the tails (p99.9, max) in the milliseconds for every target"
)

VERS="redis-server $(redis-server --version | grep -o 'v=[^ ]*' | cut -c3-)"
[ "$RUN_MAIN" = 0 ] || VERS+=", $("$NUTCRACKER_BIN" -V 2>&1 | head -1 | sed "s/^This is //")"
[ "$TLS_ONLY" = 1 ] || VERS+=", $(valgrind --version)"
VERS+=", $(openssl version | cut -d' ' -f1-2), $("$SIDECAR_BIN" --version 2>/dev/null) (binary $SIDECAR_BIN built $(date -u -r "$SIDECAR_BIN" '+%Y-%m-%d %H:%M UTC'); $(git_note)$(stale_note))"
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')

# terminal
{
    echo
    echo "== results ($MODE), $(date -u '+%Y-%m-%d %H:%M UTC'), took ${ELAPSED}s"
    if [ "$RUN_MAIN" = 1 ]; then
    printf '%-24s | %13s | %15s | %13s | %14s | %17s | %s\n' "" "" "" "" "" "" " Redis CPU µs/request"
    printf '%-24s | %13s | %15s | %13s | %14s | %17s | %7s | %9s | %7s\n' workload "direct req/s" "twemproxy req/s" "sidecar req/s" "sidecar/direct" "sidecar/twemproxy" direct twemproxy sidecar
    printf '%s\n' "-------------------------+---------------+-----------------+---------------+----------------+-------------------+---------+-----------+--------"
    for row in "${TBL[@]}"; do
        IFS='|' read -r a b c d e f g h i <<<"$row"
        printf '%-24s | %13s | %15s | %13s | %14s | %17s | %7s | %9s | %7s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
    done
    echo
    printf '%s\n' "${RSS_L[@]}" "" "${LINK_L[@]}" "" "${LAT_L[@]}" "" "${IPR_L[@]}" ""
    fi
    if [ "$RUN_TLS" = 1 ]; then
    echo "TLS to Redis (redis-benchmark --tls direct vs plaintext through the sidecar, TLS upstream)${TLS_SKIP:+: did not run: $TLS_SKIP}"
    printf '%-16s | %16s | %13s | %14s | %s\n' "" "" "" "" " Redis CPU µs/request"
    printf '%-16s | %16s | %13s | %14s | %10s | %7s | %14s\n' workload "direct TLS req/s" "sidecar req/s" "sidecar/direct" "direct TLS" sidecar "sidecar/direct"
    printf '%s\n' "-----------------+------------------+---------------+----------------+------------+---------+---------------"
    for row in "${TLS_TBL[@]}"; do
        IFS='|' read -r a b c d e f g <<<"$row"
        printf '%-16s | %16s | %13s | %14s | %10s | %7s | %14s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
    done
    echo
    fi
    if [ "$RUN_CLUSTER" = 1 ]; then
    echo "Redis Cluster, 3 masters (redis-benchmark --cluster direct vs plain redis-benchmark through the sidecar, [upstream] cluster; -r $CL_KEYS)${CL_SKIP:+: did not run: $CL_SKIP}"
    printf '%-16s | %20s | %13s | %14s | %14s | %s\n' "" "" "" "sidecar/direct" "sidecar/direct" " Redis CPU µs/request (3 nodes)"
    printf '%-16s | %20s | %13s | %14s | %14s | %14s | %7s\n' workload "direct cluster req/s" "sidecar req/s" "cluster" "single master" "direct cluster" sidecar
    printf '%s\n' "-----------------+----------------------+---------------+----------------+----------------+----------------+--------"
    for row in "${CL_TBL[@]}"; do
        IFS='|' read -r a b c d e f g <<<"$row"
        printf '%-16s | %20s | %13s | %14s | %14s | %14s | %7s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
    done
    echo
    printf '%s\n' "${CL_IPR_L[@]}" ""
    fi
    if [ "$RUN_LAT" = 1 ]; then
    echo "Open-loop latency (bench/loadgen, 50 connections, µs from the scheduled send time; added: minus direct at p50 / p99 / p99.9)${OL_SKIP:+: did not run: $OL_SKIP}"
    printf '%-18s | %-9s | %8s | %8s | %8s | %8s | %8s | %s\n' workload target p50 p90 p99 p99.9 max added
    printf '%s\n' "-------------------+-----------+----------+----------+----------+----------+----------+----------------------"
    for row in "${OL_TBL[@]}"; do
        IFS='|' read -r a b c d e f g h <<<"$row"
        printf '%-18s | %-9s | %8s | %8s | %8s | %8s | %8s | %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
    done
    echo
    fi
    printf '%s\n' "${TGT_L[@]}"
    if [ ${#FAILURES[@]} -gt 0 ]; then
        echo
        echo "problems:"
        printf '  %s\n' "${FAILURES[@]}"
    fi
    echo
    printf '%s\n' "${NOTES[@]}"
    echo "versions: $VERS; CPU: $CPU_MODEL"
    echo "markdown: bench/out/results.md; per-run numbers: bench/out/runs.csv; logs: bench/out/logs/"
}

# markdown
{
    echo "# redis-sidecar benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $MODE, took ${ELAPSED}s. Versions: $VERS. CPU: $CPU_MODEL, ${#CPUS[@]} usable core(s)."
    if [ "$RUN_MAIN" = 1 ]; then
    echo
    echo "| workload | direct req/s | twemproxy req/s | sidecar req/s | sidecar/direct | sidecar/twemproxy | Redis µs/req direct | Redis µs/req twemproxy | Redis µs/req sidecar |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${TBL[@]}"; do
        IFS='|' read -r a b c d e f g h i <<<"$row"
        echo "| $a | $b | $c | $d | $e | $f | $g | $h | $i |"
    done
    echo
    echo "Redis µs/req: the master's own CPU time per request (INFO cpu before and after each run), median over the repetitions."
    echo
    printf -- '- %s\n' "${RSS_L[@]}"
    echo
    printf -- '- %s\n' "${LINK_L[@]}"
    echo
    printf -- '- %s\n' "${LAT_L[@]}"
    echo
    printf -- '- %s\n' "${IPR_L[@]}"
    fi
    if [ "$RUN_TLS" = 1 ]; then
    echo
    echo "## TLS to Redis"
    echo
    echo "redis-benchmark --tls straight to a TLS-only redis-server, and plaintext through the sidecar on loopback, which speaks TLS to that server. twemproxy has no TLS, so no twemproxy row.${TLS_SKIP:+ **Did not run: $TLS_SKIP.**}"
    echo
    echo "| workload | direct TLS req/s | sidecar req/s | sidecar/direct | Redis µs/req direct TLS | Redis µs/req sidecar | Redis CPU ratio sidecar/direct |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for row in "${TLS_TBL[@]}"; do
        IFS='|' read -r a b c d e f g <<<"$row"
        echo "| $a | $b | $c | $d | $e | $f | $g |"
    done
    echo
    echo "Redis µs/req: the TLS server's own CPU time per request (INFO cpu before and after each run), median over the repetitions."
    fi
    if [ "$RUN_CLUSTER" = 1 ]; then
    echo
    echo "## Redis Cluster"
    echo
    echo "A 3-master cluster (no replicas), all nodes on the Redis CPU: \`redis-benchmark --cluster\` straight to it, and plain \`redis-benchmark\` through the sidecar (\`[upstream] cluster\`), which routes by slot; -r $CL_KEYS random keys for both. The single-master column is section 1's sidecar/direct for the same workload in this run (one key, one redis-server).${CL_SKIP:+ **Did not run: $CL_SKIP.**}"
    echo
    echo "| workload | direct cluster req/s | sidecar req/s | sidecar/direct (cluster) | sidecar/direct (single master) | Redis µs/req direct cluster | Redis µs/req sidecar |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for row in "${CL_TBL[@]}"; do
        IFS='|' read -r a b c d e f g <<<"$row"
        echo "| $a | $b | $c | $d | $e | $f | $g |"
    done
    echo
    echo "Redis µs/req: the 3 nodes' CPU time per request, summed (INFO cpu before and after each run), median over the repetitions."
    echo
    printf -- '- %s\n' "${CL_IPR_L[@]}"
    fi
    if [ "$RUN_LAT" = 1 ]; then
    echo
    echo "## Open-loop latency"
    echo
    echo "bench/loadgen sends at a fixed rate over 50 connections whatever the replies do, and times each request from its scheduled send time (no coordinated omission); $OL_ROUNDS rounds of ${OL_SECS} s (after ${OL_WARM} s of warm-up) per target, the targets in turn within each round, latencies pooled over the rounds; the same master; µs.${OL_SKIP:+ **Did not run: $OL_SKIP.**}"
    echo
    echo "| workload | target | p50 | p90 | p99 | p99.9 | max | added over direct (p50 / p99 / p99.9) |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    for row in "${OL_TBL[@]}"; do
        IFS='|' read -r a b c d e f g h <<<"$row"
        echo "| $a | $b | $c | $d | $e | $f | $g | $h |"
    done
    fi
    echo
    echo "## Targets"
    echo
    printf -- '- %s\n' "${TGT_L[@]}"
    if [ ${#FAILURES[@]} -gt 0 ]; then
        echo
        echo "## Problems"
        echo
        printf -- '- %s\n' "${FAILURES[@]}"
    fi
    echo
    echo "## Method"
    echo
    printf -- '- %s\n' "${NOTES[@]}"
    echo
    echo "## All runs"
    echo
    echo "| workload | target | req/s runs | Redis µs/req runs |"
    echo "|---|---|---|---|"
    if [ "$RUN_MAIN" = 1 ]; then
    for wl in "${WORKLOADS[@]}"; do
        IFS='|' read -r label _ <<<"$wl"
        for t in "${TARGETS[@]}"; do
            echo "| $label | $t | $(for v in ${RUNS["$label|$t"]:-}; do printf '%.0f ' "$v"; done) | $(for v in ${CPUR["$label|$t"]:-}; do printf '%.2f ' "$v"; done) |"
        done
    done
    fi
    if [ "$RUN_TLS" = 1 ]; then
    for wl in "${TLS_WORKLOADS[@]}"; do
        IFS='|' read -r label _ <<<"$wl"
        for t in "${TLS_TARGETS[@]}"; do
            echo "| TLS $label | $t | $(for v in ${TLS_RUNS["$label|$t"]:-}; do printf '%.0f ' "$v"; done) | $(for v in ${TLS_CPUR["$label|$t"]:-}; do printf '%.2f ' "$v"; done) |"
        done
    done
    fi
    if [ "$RUN_CLUSTER" = 1 ]; then
    for wl in "${CL_WORKLOADS[@]}"; do
        IFS='|' read -r label _ <<<"$wl"
        for t in "${CL_TARGETS[@]}"; do
            echo "| Cluster $label | $t | $(for v in ${CL_RUNS["$label|$t"]:-}; do printf '%.0f ' "$v"; done) | $(for v in ${CL_CPUR["$label|$t"]:-}; do printf '%.2f ' "$v"; done) |"
        done
    done
    fi
} >"$OUT/results.md"

[ ${#FAILURES[@]} -eq 0 ]
