#!/usr/bin/python3
"""Plots a trace CSV (npusim trace ... --out FILE.csv): each device's arrival rate over time,
and the share of samples leaving at each exit per device.

Usage: scripts/plot_arrivals.py TRACE.csv --out arrivals.png [--window-s 1.0] [--until-s T]

Reads the file in one streaming pass; memory grows with the number of windows, not samples.
"""

import argparse
import collections
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--out", required=True, help="PNG (or PDF, SVG) to write")
    parser.add_argument("--window-s", type=float, default=1.0, help="rate window in seconds")
    parser.add_argument("--until-s", type=float, default=None, help="plot arrivals before this time only")
    args = parser.parse_args()
    if args.window_s <= 0:
        sys.exit("plot_arrivals: --window-s must be > 0")

    counts = collections.defaultdict(collections.Counter)  # device -> window -> samples
    exits = collections.defaultdict(collections.Counter)   # device -> exit -> samples
    last_window = 0
    with open(args.trace, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:3] != ["arrival_ns", "device", "model"]:
            sys.exit("plot_arrivals: %s: expected the header arrival_ns,device,model[,exit]" % args.trace)
        for line, row in enumerate(reader, start=2):
            try:
                t = int(row[0]) / 1e9
            except (ValueError, IndexError):
                sys.exit("plot_arrivals: %s:%d: bad arrival_ns" % (args.trace, line))
            if args.until_s is not None and t >= args.until_s:
                break
            window = int(t / args.window_s)
            last_window = max(last_window, window)
            counts[row[1]][window] += 1
            if len(row) > 3 and row[3] != "":
                exits[row[1]][int(row[3])] += 1
    if not counts:
        sys.exit("plot_arrivals: %s: no samples" % args.trace)

    devices = sorted(counts)
    fig, (rates, shares) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [2, 1]})
    xs = [w * args.window_s for w in range(last_window + 1)]
    for device in devices:
        rates.plot(xs, [counts[device][w] / args.window_s for w in range(last_window + 1)], label=device, linewidth=1)
    rates.set_xlabel("time (s)")
    rates.set_ylabel("arrivals per second (%g s windows)" % args.window_s)
    rates.set_title("Arrival rate per device: %s" % args.trace)
    rates.legend(fontsize="small", ncol=2)

    width = 0.8 / max(1, len(devices))
    for i, device in enumerate(devices):
        total = sum(exits[device].values())
        if total == 0:
            continue
        indices = sorted(exits[device])
        shares.bar([e + i * width for e in indices], [exits[device][e] / total for e in indices], width=width, label=device)
    shares.set_xlabel("exit index (the last is the final classifier)")
    shares.set_ylabel("share of samples")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote %s: %d devices, %d windows of %g s" % (args.out, len(devices), last_window + 1, args.window_s))


if __name__ == "__main__":
    main()
