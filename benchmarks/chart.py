"""The chart of docs/performance.md, drawn from the JSON that ``inprocess.py`` writes.

    python benchmarks/inprocess.py --json /tmp/inprocess.json
    python benchmarks/chart.py /tmp/inprocess.json docs/img/performance.png

Horizontal bars: the cost of each case over the bare app, per request, in µs (median over the rounds), on a log
scale so that a cache hit and a signature check fit one picture. Needs matplotlib (``pip install matplotlib``),
which stays out of asgi-session's dependencies.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# The request cases, in the order drawn (top to bottom); the raw verification rows are left out.
ORDER = [
    "asgi-session, seen, cookie",
    "asgi-session, seen, Bearer",
    "Starlette SessionMiddleware",
    "starsessions (in-memory store)",
    "asgi-session, never seen, cookie",
    "naive PyJWT middleware",
]
OURS = "tab:blue"
ANCHOR = "tab:gray"


def draw(document: dict[str, Any], output: str) -> None:
    """Write the bar chart of ``document`` (the JSON of ``inprocess.py``) to ``output`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    cases = document["cases"]
    bare = cases["bare ASGI app"]["median_us"]
    names = [name for name in ORDER if name in cases]
    over = [max(cases[name]["median_us"] - bare, 0.01) for name in names]
    colours = [OURS if name.startswith("asgi-session") else ANCHOR for name in names]
    figure, axes = plt.subplots(figsize=(8, 0.5 * len(names) + 1.4), dpi=120)
    bars = axes.barh(names[::-1], over[::-1], color=colours[::-1])
    axes.set_xscale("log")
    axes.set_xlabel("µs per request over a bare ASGI app (median; log scale)")
    for bar, value in zip(bars, over[::-1], strict=True):
        axes.text(value * 1.08, bar.get_y() + bar.get_height() / 2, f"{value:.1f} µs", va="center", fontsize=9)
    versions = document.get("versions", {})
    axes.set_title(
        f"Per-request cost in process (Python {document.get('python', '?')}, {document.get('cpus', '?')} cpus; "
        f"asgi-session {versions.get('asgi-session', '?')})",
        fontsize=10,
    )
    axes.set_xlim(right=max(over) * 4)
    figure.tight_layout()
    figure.savefig(output)
    print(f"wrote {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="the JSON file written by inprocess.py --json")
    parser.add_argument("output", help="the PNG to write")
    args = parser.parse_args()
    with open(args.results, encoding="utf-8") as handle:
        draw(json.load(handle), args.output)


if __name__ == "__main__":
    main()
