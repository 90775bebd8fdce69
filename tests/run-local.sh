#!/usr/bin/env bash
# `make run`: a local topology on loopback (a master on 7000 and two
# replicas on 7001 and 7002, data in .run/), then the sidecar in the
# foreground on 127.0.0.1:6380 with proxy.ini. Ctrl-C stops everything
# it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

run=$PWD/.run
mkdir -p "$run"
pids=()

cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "make run: stopped the sidecar and the local Redis servers"
}
trap cleanup EXIT INT TERM

start_redis() {  # port [replicaof-port]
    local port=$1 dir=$run/redis-$1
    mkdir -p "$dir"
    local args=(--port "$port" --bind 127.0.0.1 --dir "$dir" --save ""
                --appendonly no --logfile "$dir/redis.log" --daemonize no
                --repl-diskless-sync-delay 0)
    [[ $# -gt 1 ]] && args+=(--replicaof 127.0.0.1 "$2")
    redis-server "${args[@]}" </dev/null &
    pids+=($!)
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "make run: redis on $port did not start; see $dir/redis.log" >&2
    exit 1
}

for port in 6380 7000 7001 7002; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "make run: port $port is already in use (an earlier make run?)" >&2
        exit 1
    fi
done

start_redis 7000
start_redis 7001 7000
start_redis 7002 7000
echo "make run: master 127.0.0.1:7000, replicas 7001 and 7002 (data in $run/)"
echo "make run: starting redis-sidecar on 127.0.0.1:6380; try it with:"
echo "    redis-cli -p 6380 set hello world"
echo "    redis-cli -p 6380 get hello"
echo "    redis-cli -p 6380 proxy info"
echo "make run: Ctrl-C stops everything"
./redis-sidecar -c proxy.ini &
pids+=($!)
wait "${pids[-1]}" || true
