#!/usr/bin/env bash
# `make run`: a local topology on loopback (a master on 7000, two
# replicas on 7001 and 7002, three sentinels on 26380-26382 watching it as
# "mymaster"; data in .run/), then the sidecar in the foreground on
# 127.0.0.1:6380 with proxy.ini. Ctrl-C stops everything it started, by PID.
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
    wait_ping "$port" "redis" "$dir/redis.log"
}

wait_ping() {  # port what logfile
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "make run: $2 on $1 did not start; see $3" >&2
    exit 1
}

start_sentinel() {  # port
    local port=$1 dir=$run/sentinel-$1
    mkdir -p "$dir"
    # sentinel rewrites its file: a fresh one each run
    cat >"$dir/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize no
dir $dir
logfile $dir/sentinel.log
sentinel monitor mymaster 127.0.0.1 7000 2
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 60000
EOF
    redis-sentinel "$dir/sentinel.conf" </dev/null &
    pids+=($!)
    wait_ping "$port" "sentinel" "$dir/sentinel.log"
}

for port in 6380 7000 7001 7002 26380 26381 26382; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "make run: port $port is already in use (an earlier make run?)" >&2
        exit 1
    fi
done

start_redis 7000
start_redis 7001 7000
start_redis 7002 7000
for port in 26380 26381 26382; do
    start_sentinel "$port"
done
echo "make run: master 127.0.0.1:7000, replicas 7001 and 7002, sentinels"
echo "make run: 26380-26382 watching it as \"mymaster\" (data and logs in $run/)"
echo "make run: starting redis-sidecar on 127.0.0.1:6380; try it with:"
echo "    redis-cli -p 6380 set hello world"
echo "    redis-cli -p 6380 get hello"
echo "    redis-cli -s .run/admin.sock proxy apps       # admin commands: the admin socket"
echo "    redis-cli -s .run/admin.sock proxy slowlog    # (each local app: its service or uid)"
echo "    redis-cli -s .run/admin.sock proxy nodes"
echo "    redis-cli -p 26380 sentinel failover mymaster   # and watch it follow"
echo "make run: Ctrl-C stops everything"
# proxy.ini as it is, but for the admin socket, under .run/
sed "s|^socket = .*|socket = $run/admin.sock|" proxy.ini >"$run/proxy.ini"
./redis-sidecar -c "$run/proxy.ini" &
pids+=($!)
wait "${pids[-1]}" || true
