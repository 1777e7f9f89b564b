#!/usr/bin/env bash
# P4 end to end: verification with access-token blacklisting on (the store is read on every request), against the
# bare app and the naive anchor (PyJWT HS256 + one aiosqlite round trip per request). uvicorn (1 worker, httptools +
# uvloop when installed) on 127.0.0.1, one server per case, loaded with wrk in alternating rounds. Prints
# requests/s per case (median of the rounds) and the ratio to bare (P4 target: asgi-session on SQLite >= 0.60).
#
#   benchmarks/e2e_blacklist.sh                     # 5 rounds of wrk -t1 -c32 -d5s per case (about 2-3 minutes)
#   ROUNDS=7 DURATION=10 benchmarks/e2e_blacklist.sh
#   STORES="sqlite" benchmarks/e2e_blacklist.sh     # only SQLite (default: sqlite redis postgres)
#
# Cases: bare; naive-sqlite (the anchor); ours-sqlite (a SQLite file); ours-redis and ours-postgres when
# ASGI_SESSION_REDIS_URL / ASGI_SESSION_POSTGRES_DSN are set (a unique key prefix / schema, removed on exit; a store
# whose variable is unset is skipped, and the output says so). Every server is checked first: 200 with its token,
# 401 without, 401 once its session is revoked (so a case that did not read the store cannot pass). Any non-2xx
# response during a load run fails the run. Every server this script starts is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
STORES=${STORES:-sqlite redis postgres}
HOST=127.0.0.1
TAG="bench_e2e_$(date +%s)_$$"

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is needed (apt-get install -y wrk); P4 is measured with wrk only" >&2
    exit 1
fi

WORK=$(mktemp -d)
PIDS=()
LOAD_PID=
REDIS_BASE=
POSTGRES_BASE=
cleanup() {
    if [ -n "$LOAD_PID" ]; then
        kill "$LOAD_PID" 2>/dev/null || true
    fi
    local pid alive tick
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # uvicorn shuts down gracefully (closing its store); give it 5 s, then KILL what is left, by PID.
    for ((tick = 0; tick < 50; tick++)); do
        alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # Remove what the Redis and PostgreSQL cases wrote.
    "$PY" - "$TAG" "$REDIS_BASE" "$POSTGRES_BASE" <<'EOF' || true
import asyncio
import sys

tag, redis_url, dsn = sys.argv[1:4]


async def main() -> None:
    if redis_url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{tag}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        await client.aclose()
    if dsn:
        import asyncpg

        connection = await asyncpg.connect(dsn)
        await connection.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
        await connection.close()


asyncio.run(main())
EOF
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

UVICORN_OPTS=(--host "$HOST" --workers 1 --no-access-log --log-level warning --lifespan on)
if "$PY" -c "import httptools, uvloop" 2>/dev/null; then
    UVICORN_OPTS+=(--http httptools --loop uvloop)
    SERVER_DESC="uvicorn --http httptools --loop uvloop, 1 worker"
else
    SERVER_DESC="uvicorn (h11, asyncio: httptools/uvloop not installed), 1 worker"
fi

free_port() {
    "$PY" -c "import socket; s = socket.socket(); s.bind(('$HOST', 0)); print(s.getsockname()[1]); s.close()"
}

with_query() { # url key value
    "$PY" -c "
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
query = [*parse_qsl(parts.query), (sys.argv[2], sys.argv[3])]
print(urlunsplit(parts._replace(query=urlencode(query))))" "$1" "$2" "$3"
}


declare -A PORT
start_server() { # name kind(plain|factory) app [VAR=value...]
    local name=$1 kind=$2 app=$3 port
    shift 3
    local factory=()
    [ "$kind" = factory ] && factory=(--factory)
    port=$(free_port)
    env "$@" "$PY" -m uvicorn --app-dir benchmarks "${factory[@]}" "$app" --port "$port" "${UVICORN_OPTS[@]}" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    PORT[$name]=$port
}

CASES=(bare naive-sqlite)
NOTES=()
start_server bare plain e2e_apps:bare
start_server naive-sqlite factory e2e_store_apps:naive_blacklisting "NAIVE_DB=$WORK/naive.db"
OURS=e2e_store_apps:asgi_session_blacklisting
for store in $STORES; do
    case $store in
    sqlite)
        start_server ours-sqlite factory "$OURS" "STORE_URL=sqlite:///$WORK/sessions.db"
        CASES+=(ours-sqlite)
        ;;
    redis)
        if [ -z "${ASGI_SESSION_REDIS_URL:-}" ]; then
            NOTES+=("ours-redis: skipped, ASGI_SESSION_REDIS_URL is not set")
            continue
        fi
        REDIS_BASE=$ASGI_SESSION_REDIS_URL
        start_server ours-redis factory "$OURS" "STORE_URL=$(with_query "$REDIS_BASE" prefix "$TAG")"
        CASES+=(ours-redis)
        ;;
    postgres)
        if [ -z "${ASGI_SESSION_POSTGRES_DSN:-}" ]; then
            NOTES+=("ours-postgres: skipped, ASGI_SESSION_POSTGRES_DSN is not set")
            continue
        fi
        POSTGRES_BASE=$ASGI_SESSION_POSTGRES_DSN
        start_server ours-postgres factory "$OURS" "STORE_URL=$(with_query "$POSTGRES_BASE" schema "$TAG")"
        CASES+=(ours-postgres)
        ;;
    *)
        echo "unknown store $store (sqlite, redis, postgres)" >&2
        exit 1
        ;;
    esac
done

declare -A HEADER
CHECKED=()
for case in "${CASES[@]}"; do
    url="http://$HOST:${PORT[$case]}/"
    if ! HEADER[$case]=$("$PY" benchmarks/e2e_store_apps.py prepare "$case" "$url"); then
        echo "check failed for $case; server log:" >&2
        cat "$WORK/$case.log" >&2
        if [ "$case" = ours-redis ] || [ "$case" = ours-postgres ]; then
            NOTES+=("$case: skipped, its server failed the check (log above)")
            continue
        fi
        exit 1
    fi
    CHECKED+=("$case")
    if [ "$case" = bare ]; then
        echo "checked $case at $url"
    else
        echo "checked $case at $url: 200 with its token, 401 without, 401 after revoking its session"
    fi
done
CASES=("${CHECKED[@]}")

run_load() { # case seconds -> sets RPS; wrk runs in the background so a signal stops the run at once
    local case=$1 seconds=$2 out
    wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" -H "${HEADER[$case]}" "http://$HOST:${PORT[$case]}/" \
        >"$WORK/load.out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID"
    LOAD_PID=
    out=$(cat "$WORK/load.out")
    if grep -q -e "Non-2xx" -e "Socket errors" <<<"$out"; then
        echo "load run for $case had errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    if [ -z "$RPS" ]; then
        echo "no requests/s in the load output for $case:" >&2
        echo "$out" >&2
        exit 1
    fi
}

echo "warming up (1 s per case, not counted)"
for case in "${CASES[@]}"; do
    run_load "$case" 1
done

declare -A RESULTS
for ((round = 0; round < ROUNDS; round++)); do
    order=("${CASES[@]:round % ${#CASES[@]}}" "${CASES[@]:0:round % ${#CASES[@]}}")
    line="round $((round + 1)):"
    for case in "${order[@]}"; do
        run_load "$case" "$DURATION"
        RESULTS[$case]="${RESULTS[$case]:-} $RPS"
        line="$line $case=$RPS"
    done
    echo "$line"
done

echo
echo "$SERVER_DESC; load: wrk -t1 -c$CONNECTIONS -d${DURATION}s; $ROUNDS alternating rounds; $(nproc) cpus"
for note in "${NOTES[@]}"; do
    echo "  $note"
done
ARGS=()
for case in "${CASES[@]}"; do
    ARGS+=("$case=${RESULTS[$case]}")
done
"$PY" - "${ARGS[@]}" <<'EOF'
import statistics
import sys

runs = {}
for arg in sys.argv[1:]:
    name, _, values = arg.partition("=")
    runs[name] = [float(v) for v in values.split()]
bare = statistics.median(runs["bare"])
print(f"{'case':<16}{'median req/s':>14}{'min':>10}{'max':>10}{'vs bare':>9}")
for name, values in runs.items():
    median = statistics.median(values)
    print(f"{name:<16}{median:>14.0f}{min(values):>10.0f}{max(values):>10.0f}{median / bare:>9.2f}")
for name, values in runs.items():
    if name == "bare":
        continue
    ratio = statistics.median(values) / bare
    per_round = [v / b for v, b in zip(values, runs["bare"])]
    if name == "ours-sqlite":
        label = f"P4 (target >= 0.60: {'met' if ratio >= 0.60 else 'MISSED'})"
    elif name == "naive-sqlite":
        label = "the naive anchor (PERFORMANCE.md: 0.16)"
    else:
        label = "for comparison"
    print(
        f"{name}: {ratio:.2f} x bare (per round: median {statistics.median(per_round):.2f}, "
        f"{min(per_round):.2f}-{max(per_round):.2f}); {label}"
    )
EOF
