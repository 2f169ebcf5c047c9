# Sourced by flood.sh and throughput.sh: a devise_server process per measurement, and a
# work directory, both cleaned up when the script exits.
#
#   start_server BIN FLAGS...   starts BIN on 127.0.0.1:0; sets server_pid and addr
#   stop_server

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

start_server() {
    local bin="$1"
    shift
    rm -f "$work/out"
    "$bin" --addr 127.0.0.1:0 "$@" >"$work/out" 2>"$work/err" &
    server_pid=$!
    for _ in $(seq 1 100); do
        if grep -q "listening on" "$work/out" 2>/dev/null; then break; fi
        sleep 0.1
    done
    addr="$(sed -n 's|.*listening on http://||p' "$work/out" | head -n 1)"
    if [ -z "$addr" ]; then
        echo "server did not start:" >&2
        cat "$work/err" >&2
        exit 1
    fi
}

stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
