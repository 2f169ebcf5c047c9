#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster and a throwaway Redis server, both
# stopped afterwards (see with-postgres.sh and with-redis.sh):
#
#   bash scripts/with-services.sh cargo test --workspace --all-features
#
# The command sees ROTAUTH_TEST_DATABASE_URL and ROTAUTH_TEST_REDIS_URL.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/with-postgres.sh" bash "$here/with-redis.sh" "$@"
