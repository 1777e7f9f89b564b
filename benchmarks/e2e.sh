#!/usr/bin/env bash
# End-to-end throughput: uvicorn (1 worker, httptools + uvloop when installed) on 127.0.0.1, one server per case
# (bare, Starlette SessionMiddleware, asgi-session), loaded with wrk in alternating rounds. Prints requests/s per
# case (median of the rounds) and the ratio to bare (P2 target: asgi-session >= 0.80 x bare).
#
#   benchmarks/e2e.sh                      # 5 rounds of wrk -t1 -c32 -d5s per case (about 2 minutes)
#   ROUNDS=7 DURATION=10 benchmarks/e2e.sh
#   LOADER=python benchmarks/e2e.sh        # force the Python load generator (no wrk)
#
# Every server is checked first (200 with its token, 401 without) and any non-2xx response during a load run
# fails the run. Without wrk (and when `apt-get install -y wrk` is not possible) a bounded Python load generator
# runs instead, and the output says so: its numbers are not comparable with wrk's.
# Every server this script starts is stopped by its PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
HOST=127.0.0.1

WORK=$(mktemp -d)
PIDS=()
LOAD_PID=
cleanup() {
    if [ -n "$LOAD_PID" ]; then
        kill "$LOAD_PID" 2>/dev/null || true
    fi
    local pid alive tick
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # uvicorn shuts down gracefully; give it 5 s (a second TERM after 2 s), then KILL what is left, by PID.
    for ((tick = 0; tick < 50; tick++)); do
        alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                alive=1
                if [ "$tick" = 20 ]; then
                    kill -TERM "$pid" 2>/dev/null || true
                fi
            fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

USE_WRK=0
if [ "${LOADER:-wrk}" = wrk ]; then
    if ! command -v wrk >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y wrk >/dev/null 2>&1 || true
    fi
    if command -v wrk >/dev/null 2>&1; then
        USE_WRK=1
    fi
fi
if [ "$USE_WRK" = 1 ]; then
    LOAD_DESC="wrk -t1 -c$CONNECTIONS -d${DURATION}s"
else
    LOAD_DESC="bounded Python load generator (asyncio, $CONNECTIONS keep-alive connections, ${DURATION}s)"
    echo "NOTE: not using wrk (not installed and not installable, or LOADER=python): using the bounded Python load"
    echo "      generator. On a small machine it may saturate before uvicorn does, so its ratios can understate the"
    echo "      differences between the cases and are not comparable with wrk's."
fi

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

declare -A PORT
start_server() { # name app
    local port
    port=$(free_port)
    "$PY" -m uvicorn --app-dir benchmarks "$2" --port "$port" "${UVICORN_OPTS[@]}" >"$WORK/$1.log" 2>&1 &
    PIDS+=("$!")
    PORT[$1]=$port
}

start_server bare e2e_apps:bare
start_server starlette e2e_apps:starlette_sessions
start_server ours e2e_apps:asgi_session

CASES=(bare starlette ours-cookie ours-bearer)
declare -A SERVER=([bare]=bare [starlette]=starlette [ours-cookie]=ours [ours-bearer]=ours)
declare -A HEADER
for case in "${CASES[@]}"; do
    url="http://$HOST:${PORT[${SERVER[$case]}]}/"
    if ! HEADER[$case]=$("$PY" benchmarks/e2e_apps.py prepare "$case" "$url"); then
        echo "check failed for $case; server log:" >&2
        cat "$WORK/${SERVER[$case]}.log" >&2
        exit 1
    fi
    echo "checked $case at $url: 200 with its token$([ "$case" = bare ] || echo ', 401 without')"
done

run_load() { # case seconds -> sets RPS; the loader runs in the background so a signal stops the run at once
    local case=$1 seconds=$2 url out
    url="http://$HOST:${PORT[${SERVER[$case]}]}/"
    if [ "$USE_WRK" = 1 ]; then
        wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" -H "${HEADER[$case]}" "$url" >"$WORK/load.out" 2>&1 &
    else
        "$PY" benchmarks/e2e_apps.py load "$url" "${HEADER[$case]}" --connections "$CONNECTIONS" \
            --duration "$seconds" >"$WORK/load.out" 2>&1 &
    fi
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
echo "$SERVER_DESC; load: $LOAD_DESC; $ROUNDS alternating rounds; $(nproc) cpus"
"$PY" - "$USE_WRK" "${RESULTS[bare]}" "${RESULTS[starlette]}" "${RESULTS[ours-cookie]}" "${RESULTS[ours-bearer]}" <<'EOF'
import statistics
import sys

names = ["bare", "starlette SessionMiddleware", "asgi-session, cookie", "asgi-session, Bearer"]
use_wrk = sys.argv[1] == "1"
runs = [[float(v) for v in arg.split()] for arg in sys.argv[2:]]
bare = statistics.median(runs[0])
print(f"{'case':<30}{'median req/s':>14}{'min':>10}{'max':>10}{'vs bare':>9}")
for name, values in zip(names, runs):
    median = statistics.median(values)
    print(f"{name:<30}{median:>14.0f}{min(values):>10.0f}{max(values):>10.0f}{median / bare:>9.2f}")
for name, values in zip(names[2:], runs[2:]):
    ratio = statistics.median(values) / bare
    per_round = [v / b for v, b in zip(values, runs[0])]
    verdict = ("met" if ratio >= 0.80 else "MISSED") if use_wrk else "not judged: Python load generator, not wrk"
    print(
        f"P2 {name}: {ratio:.2f} x bare (per round: median {statistics.median(per_round):.2f}, "
        f"{min(per_round):.2f}-{max(per_round):.2f}; target >= 0.80: {verdict})"
    )
EOF
