#!/usr/bin/python3
"""Tabulate npusim summary.json files: one row per run, the headline metrics as columns.

    scripts/summary_table.py out/*/summary.json
    scripts/summary_table.py --csv out/*/summary.json > runs.csv
"""
import argparse
import json
import sys

COLUMNS = [
    ("run", lambda s, path: path),
    ("policy", lambda s, path: s["policy"]),
    ("completed", lambda s, path: s["samples"]["completed"]),
    ("dropped", lambda s, path: s["samples"]["dropped"]),
    ("mean_ms", lambda s, path: s["latency_ms"]["mean"]),
    ("p95_ms", lambda s, path: s["latency_ms"]["p95"]),
    ("p99_ms", lambda s, path: s["latency_ms"]["p99"]),
    ("slo_%", lambda s, path: 100.0 * s["slo"]["satisfaction"]),
    ("tail_slo_%", lambda s, path: 100.0 * s["slo"]["tail_satisfaction"]),
    ("busy_%", lambda s, path: 100.0 * s["npu"]["utilisation"]),
    ("preemptions", lambda s, path: s["preemptions"]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", help="summary.json files written by npusim run --out")
    parser.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    args = parser.parse_args()
    rows = []
    for path in args.summaries:
        try:
            with open(path) as f:
                summary = json.load(f)
            rows.append([get(summary, path) for _, get in COLUMNS])
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"summary_table.py: error: {path}: not an npusim summary.json ({e})")
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    table = [[name for name, _ in COLUMNS]] + [[fmt(v) for v in row] for row in rows]
    if args.csv:
        for row in table:
            print(",".join(row))
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
