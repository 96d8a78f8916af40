#!/usr/bin/python3
"""Figures from npusim results, as PNG and SVG (Debian's python3-matplotlib).

From a sweep's results.csv, one curve per group (default: scheduler.policy), averaged over the
points that share a group and an x value (the seeds), with the range over seeds shaded:
  latency-vs-load     mean and p99 latency against --x
  slo-vs-load         per-sample and tail-latency SLO satisfaction against --x
  utilisation-vs-load NPU utilisation against --x
  energy-vs-load      energy per sample, average power and energy-delay (energy per sample
                      times mean latency) against --x, when results.csv has the energy columns
  latency-cdf         the latency CDF of each group at --cdf-at (default: the largest x), read
                      from the points' summary.json

    scripts/plot.py out/sweep/results.csv --x 'devices[0].arrival.rate_hz' --out out/plots

From single runs instead: the latency CDF of each summary.json, labelled by its policy:
    scripts/plot.py --cdf out/fcfs/summary.json out/exit_aware/summary.json --out out/plots
"""
import argparse
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fail(message):
    sys.exit(f"plot.py: error: {message}")


def number(text, what):
    try:
        return float(text)
    except ValueError:
        fail(f"{what} = {text!r}: allowed a number")


def read_results(path, x, group, where=()):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    if not rows or "status" not in rows[0] or "latency_ms.mean" not in rows[0]:
        fail(f"{path}: not a results.csv written by npusim sweep")
    for column in (x, group):
        if column not in rows[0]:
            parameters = [c for c in rows[0] if c not in ("point", "status", "error") and "." in c and not c.startswith(("latency_ms", "slo.", "npu.", "samples."))]
            fail(f"{path}: no column {column!r}: allowed {', '.join(parameters) or 'the sweep parameters'}")
    for condition in where:
        column, _, value = condition.partition("=")
        if column not in rows[0]:
            fail(f"--where {condition}: {path} has no column {column!r}")
        rows = [r for r in rows if r[column] == value]
        if not rows:
            fail(f"--where {condition}: no point of {path} has {column} = {value}")
    ok = [r for r in rows if r["status"] == "ok"]
    skipped = len(rows) - len(ok)
    if skipped:
        print(f"plot.py: {skipped} failed point(s) left out", file=sys.stderr)
    if not ok:
        fail(f"{path}: no successful point to plot")
    return ok


def is_numeric(rows, x):
    try:
        for r in rows:
            float(r[x])
    except ValueError:
        return False
    return True


def plot_bars(rows, args):
    """Categorical x (an NPU, an exit profile): grouped bars of mean latency and tail SLO
    satisfaction, one bar per group, whiskers over the seeds' range."""
    xs = list(dict.fromkeys(r[args.x] for r in rows))
    groups = sorted({r[args.group] for r in rows})
    n = len({r.get("simulation.seed", "") for r in rows})
    note = f" (mean of {n} seeds, whiskers: range)" if n > 1 else ""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(1, len(groups))
    for metric, ax, scale, title in (("latency_ms.mean", axes[0], 1.0, "mean latency (ms)"),
                                     ("slo.tail_satisfaction", axes[1], 100.0, "tail SLO satisfaction (%)")):
        for gi, g in enumerate(groups):
            means, lows, highs = [], [], []
            for xv in xs:
                values = [number(r[metric], metric) * scale for r in rows if r[args.x] == xv and r[args.group] == g]
                m = sum(values) / len(values) if values else float("nan")
                means.append(m)
                lows.append(m - min(values) if values else 0.0)
                highs.append(max(values) - m if values else 0.0)
            positions = [i + (gi - (len(groups) - 1) / 2) * width for i in range(len(xs))]
            ax.bar(positions, means, width, yerr=[lows, highs], capsize=2, label=g)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs, rotation=20, fontsize=8)
        ax.set_title(title + note, fontsize=9)
        ax.set_xlabel(args.x)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 102)
    axes[0].legend(fontsize=7)
    save(fig, args.out, f"{args.name}bars")


def series(rows, x, group, metric):
    """{group: [(x, mean, low, high)]}: the metric averaged over rows sharing group and x."""
    cells = {}
    for r in rows:
        cells.setdefault(r[group], {}).setdefault(number(r[x], x), []).append(number(r[metric], metric))
    out = {}
    for g, by_x in cells.items():
        out[g] = [(xv, sum(v) / len(v), min(v), max(v)) for xv, v in sorted(by_x.items())]
    return out


def save(figure, out_dir, name):
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        figure.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(figure)
    print("wrote " + " and ".join(paths))


def panel(ax, rows, x, group, metric, label, scale=1.0, style="-"):
    for g, points in sorted(series(rows, x, group, metric).items()):
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] * scale for p in points], style, marker="o", markersize=3, label=f"{g} {label}".strip())
        if any(p[2] != p[3] for p in points):
            ax.fill_between(xs, [p[2] * scale for p in points], [p[3] * scale for p in points], alpha=0.15)


def plot_sweep(args):
    rows = read_results(args.results, args.x, args.group, args.where)
    if not is_numeric(rows, args.x):
        plot_bars(rows, args)
        return
    n = len({r.get("simulation.seed", "") for r in rows})
    note = f" (mean of {n} seeds, range shaded)" if n > 1 else ""

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panel(axes[0], rows, args.x, args.group, "latency_ms.mean", "")
    axes[0].set_title("mean latency" + note)
    panel(axes[1], rows, args.x, args.group, "latency_ms.p99", "")
    axes[1].set_title("p99 latency" + note)
    for ax in axes:
        ax.set_xlabel(args.x)
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    save(fig, args.out, f"{args.name}latency-vs-load")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panel(axes[0], rows, args.x, args.group, "slo.satisfaction", "", 100)
    axes[0].set_title("SLO satisfaction: share of samples" + note)
    panel(axes[1], rows, args.x, args.group, "slo.tail_satisfaction", "", 100)
    axes[1].set_title("tail SLO satisfaction: share of windows" + note)
    for ax in axes:
        ax.set_xlabel(args.x)
        ax.set_ylabel("%")
        ax.set_ylim(-2, 102)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    save(fig, args.out, f"{args.name}slo-vs-load")

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    panel(ax, rows, args.x, args.group, "npu.utilisation", "", 100)
    ax.set_title("NPU utilisation (share of time running layers)")
    ax.set_xlabel(args.x)
    ax.set_ylabel("%")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, args.out, f"{args.name}utilisation-vs-load")

    if "energy.per_sample_mj" in rows[0]:
        for r in rows:
            r["energy_delay"] = str(number(r["energy.per_sample_mj"], "energy.per_sample_mj") *
                                    number(r["latency_ms.mean"], "latency_ms.mean"))
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for ax, metric, title, unit in ((axes[0], "energy.per_sample_mj", "energy per sample", "mJ"),
                                        (axes[1], "energy.avg_power_w", "average power", "W"),
                                        (axes[2], "energy_delay", "energy-delay: energy per sample x mean latency",
                                         "mJ x ms")):
            panel(ax, rows, args.x, args.group, metric, "")
            ax.set_title(title + note)
            ax.set_xlabel(args.x)
            ax.set_ylabel(unit)
            ax.grid(True, alpha=0.3)
        axes[2].set_yscale("log")
        axes[0].legend(fontsize=8)
        save(fig, args.out, f"{args.name}energy-vs-load")

    # The CDF at one x: each group's first point there (its first seed).
    xs = sorted({number(r[args.x], args.x) for r in rows})
    at = xs[-1] if args.cdf_at is None else number(args.cdf_at, "--cdf-at")
    if at not in xs:
        fail(f"--cdf-at {args.cdf_at}: allowed one of {', '.join(f'{v:g}' for v in xs)}")
    points_dir = os.path.join(os.path.dirname(os.path.abspath(args.results)), "points")
    chosen = {}
    for r in rows:
        if number(r[args.x], args.x) == at and r[args.group] not in chosen:
            chosen[r[args.group]] = os.path.join(points_dir, f"{int(r['point']):06}", "summary.json")
    plot_cdf([(g, path) for g, path in sorted(chosen.items())], args.out, f"{args.x} = {at:g}", args.name)


def plot_cdf(labelled, out_dir, subtitle="", name=""):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, path in labelled:
        try:
            with open(path) as f:
                cdf = json.load(f)["latency_cdf"]
        except (OSError, ValueError, KeyError) as e:
            fail(f"{path}: not an npusim summary.json with latency_cdf ({e})")
        ax.plot(cdf["ms"], [p / 100 for p in cdf["percent"]], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("share of samples at or below")
    ax.set_title("latency CDF" + (f" at {subtitle}" if subtitle else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out_dir, f"{name}latency-cdf")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", help="a sweep's results.csv")
    parser.add_argument("--x", help="the results.csv column on the x axis (a swept key, e.g. a rate)")
    parser.add_argument("--group", default="scheduler.policy", help="one curve per value of this column")
    parser.add_argument("--cdf-at", help="the x value whose points give the latency CDF (default: the largest)")
    parser.add_argument("--cdf", nargs="+", metavar="SUMMARY", help="plot the latency CDF of these summary.json files")
    parser.add_argument("--out", default="out/plots", help="directory for the figures")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                        help="plot only the points whose results.csv COLUMN is VALUE (repeatable)")
    parser.add_argument("--name", default="", metavar="PREFIX", help="prefix of the figure files' names")
    args = parser.parse_args()
    if args.cdf:
        labelled = []
        for path in args.cdf:
            try:
                with open(path) as f:
                    labelled.append((json.load(f)["policy"], path))
            except (OSError, ValueError, KeyError) as e:
                fail(f"{path}: not an npusim summary.json ({e})")
        plot_cdf(labelled, args.out)
        return
    if not args.results or not args.x:
        parser.error("give a results.csv and --x, or --cdf SUMMARY...")
    plot_sweep(args)


if __name__ == "__main__":
    main()
