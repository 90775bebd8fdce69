#!/usr/bin/env bash
# Install what the build, the tests and the benchmark need, from Debian's
# packages only; do nothing when everything is there. Called by `make deps`.
set -euo pipefail

packages=(
    gcc make libc6-dev
    libev-dev libhiredis-dev libinih-dev libssl-dev openssl
    redis-server redis-sentinel redis-tools nutcracker
    python3 python3-redis python3-pytest python3-pytest-xdist
    procps iproute2 iptables valgrind util-linux systemd
    prometheus
    clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "make deps: missing packages: ${missing[*]}" >&2
        echo "make deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "make deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test-only Node.js clients (ioredis, node-redis), pinned by
# tests/clients/package-lock.json; installed again only when the lock file
# is newer than what is installed.
clients=$(dirname "$0")/clients
if command -v node >/dev/null 2>&1 &&
   [[ $(node -p 'process.versions.node.split(".")[0]') -ge 20 ]]; then
    if [[ ! -d $clients/node_modules || $clients/package-lock.json -nt $clients/node_modules ]]; then
        echo "make deps: npm ci in tests/clients"
        (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        touch "$clients/node_modules"
    fi
else
    echo "make deps: SKIPPED: the Node.js client tests need Node >= 20"
fi
