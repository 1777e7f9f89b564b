"""P1 and P3 in CPU instructions instead of seconds: the same cases as ``inprocess.py``, counted by callgrind.

    python benchmarks/instructions.py [--requests 2000] [--json results.json]

Timing ratios on a shared two-core machine move with whatever else runs; an instruction count does not (the same
binary, inputs and environment give the same count, loaded or idle). This driver re-runs itself under
``valgrind --tool=callgrind`` and runs each case of ``inprocess.py`` twice (``N`` and ``2N`` requests), asking
callgrind for a dump before and after each run (a call to ``getppid`` is the marker: ``--dump-before=getppid``).
The cost of one request is ``(I(2N) - I(N)) / N``, so set-up and loop overhead that does not grow with ``N``
cancels out. Instructions are not time (a cache miss or a branch misprediction costs more than an add), so this
complements the timed ratios of ``inprocess.py``; use it to judge a change on a busy machine, and confirm with
``inprocess.py`` on an idle one.

Needs valgrind (``apt-get install valgrind``). Under callgrind Python runs about 50 times slower: the default
takes about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from inprocess import build_cases

CASES = [
    "bare ASGI app",
    "Starlette SessionMiddleware",
    "naive PyJWT middleware",
    "asgi-session, seen, cookie",
    "asgi-session, seen, Bearer",
    "asgi-session, never seen, cookie",
    "raw: verify_access_token (fresh)",
    "raw: jwt.decode ES256, key object",
]


async def child(requests: int) -> None:
    """Under callgrind: run every case for N then 2N requests, with a dump marker around each run."""
    cases, select_round = await build_cases(2 * requests, 2)
    by_name = {case.name: case for case in cases}
    for name in CASES:
        case = by_name[name]
        for index, count in enumerate((requests, 2 * requests)):
            select_round(index)  # fresh tokens for each run of the never-seen cases
            os.getppid()  # dump: what ran since the last marker is set-up
            await case.run(count)
            os.getppid()  # dump: this run


def totals(directory: str) -> list[int]:
    """The instruction total of each callgrind dump, in dump order."""

    def order(path: str) -> int:
        return int(path.rsplit(".", 1)[1]) if path.rsplit(".", 1)[1].isdigit() else 10**9

    counts = []
    for path in sorted(glob.glob(os.path.join(directory, "callgrind.out.*")), key=order):
        with open(path) as file:
            for line in file:
                if line.startswith(("summary:", "totals:")):
                    counts.append(int(line.split()[1]))
                    break
    return counts


def parent(requests: int, json_path: str | None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as directory:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            "--dump-instr=no",
            "--compress-strings=no",
            f"--callgrind-out-file={directory}/callgrind.out",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--requests",
            str(requests),
        ]
        # Our own interpreter running this script: no untrusted input.
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        counts = totals(directory)
    # Dump 1 is everything before the first marker; then per case: [N run, gap, 2N run, gap].
    runs = counts[1:]
    per_request: dict[str, float] = {}
    for position, name in enumerate(CASES):
        first, second = runs[4 * position], runs[4 * position + 2]
        per_request[name] = (second - first) / requests
    bare = per_request["bare ASGI app"]
    print(f"{requests} and {2 * requests} requests per case under callgrind; instructions per request")
    for name in CASES:
        over = per_request[name] - bare
        print(f"{name:<38} {per_request[name]:>12,.0f}   over bare {over:>12,.0f}")
    starlette = per_request["Starlette SessionMiddleware"] - bare
    naive = per_request["naive PyJWT middleware"] - bare
    ratios = {
        "P1 cookie": (per_request["asgi-session, seen, cookie"] - bare) / starlette,
        "P1 Bearer": (per_request["asgi-session, seen, Bearer"] - bare) / starlette,
        "P3 middleware": (per_request["asgi-session, never seen, cookie"] - bare) / naive,
        "P3 raw verify": per_request["raw: verify_access_token (fresh)"]
        / per_request["raw: jwt.decode ES256, key object"],
    }
    targets = {"P1 cookie": 0.20, "P1 Bearer": 0.20, "P3 middleware": 0.70, "P3 raw verify": 0.70}
    print()
    for name, value in ratios.items():
        verdict = "met" if value <= targets[name] else "MISSED"
        print(f"{name:<16} {value:.3f} in instructions (target <= {targets[name]:.2f}: {verdict})")
    if json_path:
        with open(json_path, "w") as file:
            json.dump({"requests": requests, "per_request": per_request, "ratios": ratios}, file, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="N: each case runs N then 2N requests")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.requests))
    else:
        parent(args.requests, args.json)


if __name__ == "__main__":
    main()
