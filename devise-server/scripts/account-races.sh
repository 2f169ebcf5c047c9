#!/usr/bin/env bash
# Probes a running build from outside, with curl, for what account changes must not leave
# behind, as an attacker would try it against a release build with default flags:
#
#   bash devise-server/scripts/account-races.sh            # builds --release, 20 rounds
#   ROUNDS=5 PROFILE=debug bash devise-server/scripts/account-races.sh
#   BIN=path/to/other/devise_server bash devise-server/scripts/account-races.sh
#
# 1. DELETE /auth a few milliseconds after a sign-in of the same account starts (while it
#    is in argon2): does the sign-in leave a session that works?
# 2. A sign-in with the old password started while PUT /auth/password is in flight: does
#    a session of the old password work afterwards?
# 3. PUT /auth with a new email while a sign-in with the old email is in flight: likewise.
# 4. Twelve wrong guesses for an account from one address, then its owner from another with
#    the right password: served, or locked out?
# Each case sends from its own loopback address (127.0.0.11 and up), as attackers would
# from theirs, so that the per-address quota (60 a minute) is not what the probe measures.
# Prints one line per case with its count, and exits non-zero if any session survived or
# the owner was refused.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
source devise-server/scripts/server.sh

rounds="${ROUNDS:-20}"
profile="${PROFILE:-release}"
bin="${BIN:-}"
if [ -z "$bin" ]; then
    if [ "$profile" = release ]; then
        cargo build -q --release -p devise-server --bin devise_server
    else
        cargo build -q -p devise-server --bin devise_server
    fi
    bin="target/$profile/devise_server"
fi
start_server "$bin" --db "$work/db.sqlite3" --quiet ${SERVER_FLAGS:-}
base="http://$addr"
password="correct horse battery"

# `request METHOD PATH BODY HEADERS_FILE OUT`: the response headers in OUT, the status in
# OUT.status; HEADERS_FILE (may be empty) holds request headers, one a line.
request() {
    local method="$1" path="$2" body="$3" headers="${4:-}" out="$5"
    local args=(-s -o /dev/null -D "$out" -w '%{http_code}' -X "$method" "$base$path"
        --interface "$from" -H 'content-type: application/json' --data "$body")
    if [ -n "$headers" ]; then args+=(-H @"$headers"); fi
    curl "${args[@]}" >"$out.status"
}

# The auth headers of a response, as a header file for the next request.
auth_of() {
    grep -iE '^(access-token|client|uid|token-type):' "$1" | tr -d '\r' >"$2"
}

sign_up() {
    local email="$1" out="$work/signup"
    request POST /auth "{\"email\":\"$email\",\"password\":\"$password\",\"password_confirmation\":\"$password\"}" "" "$out"
    auth_of "$out" "$work/owner"
}

works() {
    local out="$work/check"
    curl -s -o /dev/null -w '%{http_code}' --interface "$from" "$base/demo/members_only" -H @"$1" >"$out"
    [ "$(cat "$out")" = 200 ]
}

# One race: a sign-in of EMAIL with PW and CHANGE (a function), the second started DELAY
# seconds after the first; FIRST says which goes first (signin or change). Counts the
# sign-ins that answered 200 and those whose session still works afterwards.
answered=0
survived=0
race() {
    local email="$1" pw="$2" change="$3" delay="$4" first="$5" out="$work/racer"
    local body="{\"email\":\"$email\",\"password\":\"$pw\"}"
    if [ "$first" = signin ]; then
        request POST /auth/sign_in "$body" "" "$out" &
        local racer=$!
        sleep "$delay"
        "$change"
        wait "$racer"
    else
        "$change" &
        local changer=$!
        sleep "$delay"
        request POST /auth/sign_in "$body" "" "$out"
        wait "$changer"
    fi
    if [ "$(cat "$out.status")" = 200 ]; then
        answered=$((answered + 1))
        auth_of "$out" "$work/racer-auth"
        if works "$work/racer-auth"; then survived=$((survived + 1)); fi
    fi
}

delete_account() {
    request DELETE /auth "" "$work/owner" "$work/change"
}
change_password() {
    request PUT /auth/password "{\"password\":\"another horse battery\",\"password_confirmation\":\"another horse battery\",\"current_password\":\"$password\"}" "$work/owner" "$work/change"
}
change_email() {
    request PUT /auth "{\"email\":\"moved-$email\"}" "$work/owner" "$work/change"
}

failed=0
from=127.0.0.10
for case in delete_account change_password change_email; do
    from="127.0.0.$(( ${from##*.} + 1 ))"
    answered=0
    survived=0
    for i in $(seq 1 "$rounds"); do
        email="$case-$i-$RANDOM@example.test"
        sign_up "$email"
        # 0 to 38 ms: the second lands anywhere in the first's argon2. The password
        # change goes first (it verifies the current password, then hashes the new one).
        first=signin
        if [ "$case" = change_password ]; then first=change; fi
        race "$email" "$password" "$case" "$(printf '0.%03d' $(( (i * 2) % 40 )))" "$first"
        if [ "$(cat "$work/change.status")" != 200 ]; then
            echo "$case round $i: the change answered $(cat "$work/change.status")" >&2
            failed=1
        fi
    done
    echo "$case: $answered of $rounds racing sign-ins answered 200; $survived left a working session"
    if [ "$survived" -ne 0 ]; then failed=1; fi
done

# The owner behind someone else's guesses.
from=127.0.0.20
email="owner-$RANDOM@example.test"
sign_up "$email"
throttled=0
for _ in $(seq 1 12); do
    request POST /auth/sign_in "{\"email\":\"$email\",\"password\":\"wrong password\"}" "" "$work/guess"
    if [ "$(cat "$work/guess.status")" = 429 ]; then throttled=$((throttled + 1)); fi
done
owner_status="$(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.21 -X POST "$base/auth/sign_in" \
    -H 'content-type: application/json' --data "{\"email\":\"$email\",\"password\":\"$password\"}")"
echo "owner from another address after 12 guesses ($throttled throttled): $owner_status"
if [ "$owner_status" != 200 ]; then failed=1; fi
stop_server
exit "$failed"
