#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster:
#
#   bash scripts/with-postgres.sh cargo test
#
# 1. installs PostgreSQL from Debian's packages if `initdb` is not found;
# 2. creates a fresh data directory under target/pg-<random>, owned by the `postgres` user
#    (initdb refuses to run as root), and starts a cluster on a free loopback port with its
#    unix socket inside the data directory, trust authentication for local connections
#    (it only listens on 127.0.0.1), fsync off (the data is thrown away), and enough
#    connections for several pooled server instances;
# 3. exports ROTAUTH_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:PORT/postgres and runs
#    the command;
# 4. stops the cluster and removes the data directory on exit, also when the command fails,
#    and exits with the command's status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

find_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    # Debian keeps the server binaries out of PATH.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! bindir="$(find_bin)"; then
    echo "with-postgres: initdb not found; installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    bindir="$(find_bin)" || {
        echo "with-postgres: PostgreSQL installed but initdb still not found" >&2
        exit 1
    }
fi

# Run PostgreSQL's programs as `postgres` when we are root (CI is), as ourselves otherwise.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi

mkdir -p "$root/target"
data="$(mktemp -d "$root/target/pg-XXXXXXXX")"
chmod 700 "$data"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$data"
fi
# The postgres user must reach the data directory through its parents, and the unix socket
# path inside it must stay under the kernel's ~107-byte limit; otherwise use /tmp.
if ! as_pg test -w "$data" 2>/dev/null || [ "${#data}" -gt 90 ]; then
    rmdir "$data"
    data="$(mktemp -d /tmp/rotauth-pg-XXXXXXXX)"
    chmod 700 "$data"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$data"
    fi
fi

cleanup() {
    local status=$?
    if [ -f "$data/postmaster.pid" ]; then
        as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$data"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$data.initdb.log" 2>&1 || {
    cat "$data.initdb.log" >&2
    rm -f "$data.initdb.log"
    exit 1
}
rm -f "$data.initdb.log"

# A free port: ask the kernel for one, then hand it to PostgreSQL (a rare race with another
# process taking it in between shows up as a failed start below, and a retry picks another).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

started=0
for _ in 1 2 3 4 5; do
    port="$(free_port)"
    if as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null; then
        started=1
        break
    fi
done
if [ "$started" -ne 1 ]; then
    echo "with-postgres: PostgreSQL did not start; its log:" >&2
    cat "$data/server.log" >&2 || true
    exit 1
fi

export ROTAUTH_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("$bindir/pg_ctl" --version | awk "{print \$3}") on 127.0.0.1:$port (data in ${data#"$root"/})" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
