#!/usr/bin/env bash
# `make run`: a local topology on loopback (a master on 7000, two
# replicas on 7001 and 7002, three sentinels on 26380-26382 watching it as
# "mymaster"; data in .run/), then the sidecar in the foreground on
# 127.0.0.1:6380 with proxy.ini. Ctrl-C stops everything it started, by PID.
# TLS=1 (`make run TLS=1`): the servers and sentinels are TLS-only, with a
# CA and a certificate made by openssl in .run/tls/, and the sidecar speaks
# TLS to them; apps still speak plaintext to 6380.
# CLUSTER=1 (`make run CLUSTER=1`): a Redis Cluster instead, three masters
# (7000-7002) with a replica each (7003-7005), and the sidecar in front of
# it (with TLS=1 too: a TLS-only cluster, its bus included).
set -euo pipefail
cd "$(dirname "$0")/.."

run=$PWD/.run
mkdir -p "$run"
pids=()
tls=${TLS:-}
[[ $tls == 0 ]] && tls=
cluster=${CLUSTER:-}
[[ $cluster == 0 ]] && cluster=
tlsdir=$run/tls
cli=(redis-cli)

cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "make run: stopped the sidecar and the local Redis servers"
}
trap cleanup EXIT INT TERM

make_certs() {  # a CA, and one certificate for every server and sentinel
    [[ -s $tlsdir/server.crt ]] && return 0
    mkdir -p "$tlsdir"
    (
        cd "$tlsdir"
        local k=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${k[@]}" -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=redis-sidecar make run CA" 2>/dev/null
        openssl req "${k[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" \
            2>/dev/null
        # Redis presents it as a client certificate too (replicas, sentinels)
        printf '%s\n' "subjectAltName = DNS:localhost, IP:127.0.0.1" \
            "extendedKeyUsage = serverAuth, clientAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile server.ext -out server.crt 2>/dev/null
    )
}

# How a server or sentinel listens: its port in plaintext, or TLS only.
listen_args() {  # port
    if [[ -n $tls ]]; then
        echo "--port 0 --tls-port $1 --tls-cert-file $tlsdir/server.crt" \
             "--tls-key-file $tlsdir/server.key --tls-ca-cert-file $tlsdir/ca.crt" \
             "--tls-auth-clients no --tls-replication yes"
    else
        echo "--port $1"
    fi
}

start_redis() {  # port [replicaof-port | cluster]
    local port=$1 dir=$run/redis-$1
    mkdir -p "$dir"
    local args
    read -r -a args <<<"$(listen_args "$port")"
    args+=(--bind 127.0.0.1 --dir "$dir" --save ""
           --appendonly no --logfile "$dir/redis.log" --daemonize no
           --repl-diskless-sync-delay 0)
    if [[ ${2:-} == cluster ]]; then
        rm -f "$dir/nodes.conf"          # a fresh cluster each run
        args+=(--cluster-enabled yes --cluster-config-file "$dir/nodes.conf"
               --cluster-node-timeout 5000 --cluster-require-full-coverage no)
        [[ -n $tls ]] && args+=(--tls-cluster yes)
    elif [[ $# -gt 1 ]]; then
        args+=(--replicaof 127.0.0.1 "$2")
    fi
    redis-server "${args[@]}" </dev/null &
    pids+=($!)
    wait_ping "$port" "redis" "$dir/redis.log"
}

wait_ping() {  # port what logfile
    for _ in $(seq 100); do
        "${cli[@]}" -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "make run: $2 on $1 did not start; see $3" >&2
    exit 1
}

start_sentinel() {  # port
    local port=$1 dir=$run/sentinel-$1
    mkdir -p "$dir"
    # sentinel rewrites its file: a fresh one each run; its listening
    # options are the server's, as config lines ("--port 0" -> "port 0")
    listen_args "$port" | sed 's/ --/\n/g; s/^--//' >"$dir/sentinel.conf"
    cat >>"$dir/sentinel.conf" <<EOF
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

if [[ -n $tls ]]; then
    make_certs
    cli=(redis-cli --tls --cacert "$tlsdir/ca.crt")
fi
ports=(6380 7000 7001 7002 26380 26381 26382)
[[ -n $cluster ]] && ports=(6380 7000 7001 7002 7003 7004 7005 17000 17001 17002 17003 17004 17005)
for port in "${ports[@]}"; do
    if redis-cli -p "$port" ping >/dev/null 2>&1 ||
       { [[ -n $tls ]] && "${cli[@]}" -p "$port" ping >/dev/null 2>&1; }; then
        echo "make run: port $port is already in use (an earlier make run?)" >&2
        exit 1
    fi
done

if [[ -n $cluster ]]; then
    for port in 7000 7001 7002 7003 7004 7005; do
        start_redis "$port" cluster
    done
    tlsargs=()
    [[ -n $tls ]] && tlsargs=(--tls --cacert "$tlsdir/ca.crt" --cert "$tlsdir/server.crt"
                              --key "$tlsdir/server.key")
    redis-cli "${tlsargs[@]}" --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 \
        127.0.0.1:7003 127.0.0.1:7004 127.0.0.1:7005 --cluster-replicas 1 --cluster-yes \
        >"$run/cluster-create.log" 2>&1 ||
        { echo "make run: redis-cli --cluster create failed; see $run/cluster-create.log" >&2;
          exit 1; }
    echo "make run: a Redis Cluster: masters 7000-7002, a replica each (7003-7005)"
    echo "make run: (data and logs in $run/)"
else
    start_redis 7000
    start_redis 7001 7000
    start_redis 7002 7000
    for port in 26380 26381 26382; do
        start_sentinel "$port"
    done
    echo "make run: master 127.0.0.1:7000, replicas 7001 and 7002, sentinels"
    echo "make run: 26380-26382 watching it as \"mymaster\" (data and logs in $run/)"
fi
if [[ -n $tls ]]; then
    echo "make run: all TLS-only (CA and certificate in $tlsdir/); the sidecar speaks"
    echo "make run: TLS to them, the apps plaintext to 6380"
fi
echo "make run: starting redis-sidecar on 127.0.0.1:6380; try it with:"
echo "    redis-cli -p 6380 set hello world"
echo "    redis-cli -p 6380 get hello"
echo "    redis-cli -s .run/admin.sock proxy apps       # admin commands: the admin socket"
echo "    redis-cli -s .run/admin.sock proxy slowlog    # (each local app: its service or uid)"
echo "    redis-cli -s .run/admin.sock proxy nodes"
if [[ -n $cluster ]]; then
    echo "    redis-cli -p 6380 mset a 1 b 2 c 3     # keys of three slots: split, merged"
    echo "    ${cli[*]} -p 7003 cluster failover   # and watch it follow"
else
    echo "    ${cli[*]} -p 26380 sentinel failover mymaster   # and watch it follow"
fi
echo "make run: Ctrl-C stops everything"
# proxy.ini as it is, but for the admin socket, under .run/; with TLS=1,
# TLS on under [upstream], trusting the local CA
sed "s|^socket = .*|socket = $run/admin.sock|" proxy.ini >"$run/proxy.ini"
if [[ -n $tls ]]; then
    sed -i "s|^\[upstream\]\$|[upstream]\ntls = on\ntls_ca_file = $tlsdir/ca.crt|" "$run/proxy.ini"
fi
if [[ -n $cluster ]]; then   # the cluster's seeds instead of the sentinels; reads on
    # each shard's replica (read_from as proxy.ini sets it)
    sed -i "s|^sentinels = .*|cluster = 127.0.0.1:7000, 127.0.0.1:7001|; /^master_name = /d" \
        "$run/proxy.ini"
fi
./redis-sidecar -c "$run/proxy.ini" &
pids+=($!)
wait "${pids[-1]}" || true
