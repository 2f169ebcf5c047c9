#!/usr/bin/env bash
# Runs a command with a throwaway Redis server:
#
#   bash scripts/with-redis.sh cargo test -p rotauth-axum --all-features
#
# 1. installs Debian's `redis-server` if it is not found;
# 2. starts a server on a free loopback port with no persistence (no RDB snapshots, no
#    append-only file), its working directory a fresh directory under target/;
# 3. exports ROTAUTH_TEST_REDIS_URL=redis://127.0.0.1:PORT/ and runs the command;
# 4. stops the server and removes its directory on exit, also when the command fails, and
#    exits with the command's status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v redis-server >/dev/null 2>&1; then
    echo "with-redis: redis-server not found; installing it from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The package starts a system-wide server where an init system runs; this script does
    # not use it.
fi

mkdir -p "$root/target"
dir="$(mktemp -d "$root/target/redis-XXXXXXXX")"
pid=""

cleanup() {
    local status=$?
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

started=0
for _ in 1 2 3 4 5; do
    port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
        --daemonize no --logfile "$dir/server.log" &
    pid=$!
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            started=1
            break
        fi
        sleep 0.05
    done
    if [ "$started" -eq 1 ]; then
        break
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
done
if [ "$started" -ne 1 ]; then
    echo "with-redis: redis-server did not start; its log:" >&2
    cat "$dir/server.log" >&2 || true
    exit 1
fi

export ROTAUTH_TEST_REDIS_URL="redis://127.0.0.1:$port/"
echo "with-redis: $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port (pid $pid)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
