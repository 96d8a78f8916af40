#!/usr/bin/python3
"""Turn a robustness-suite run into the Markdown section of docs/results.md.

    scripts/robustness_table.py out/robustness                 # prints the section
    scripts/robustness_table.py out/robustness --out section.md

Reads DIR/results.csv, DIR/devices.csv and DIR/suite.json (written by scripts/robustness-suite).
Every figure is a mean over the seeds. Per scenario it reports each policy's mean latency, p99
and tail SLO satisfaction, and judges exit_aware against issue 13's three targets:

- mean latency at most 1.05x the best baseline's (the baseline with the lowest mean);
- tail SLO satisfaction at least the best baseline's minus 2 points (the baseline with the
  highest tail SLO: the stricter reading);
- no device's mean latency above 3x its mean under edf.

and, when `clairvoyant` ran, the share of its gain that exit_aware captures:
(best baseline - exit_aware) / (best baseline - clairvoyant) on mean latency.
docs/robustness.md explains each column.
"""
import argparse
import csv
import json
import os
import sys
from collections import defaultdict

MEAN_TARGET = 1.05  # exit_aware's mean latency over the best baseline's, at most
TAIL_TARGET_POINTS = 2.0  # exit_aware's tail SLO may trail the best baseline's by this many points
DEVICE_TARGET = 3.0  # exit_aware's device mean over edf's, at most
OURS, BOUND, REFERENCE = "exit_aware", "clairvoyant", "edf"
PASS, MISS = "yes", "**no**"


def fail(message):
    sys.exit(f"robustness_table.py: error: {message}")


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        fail(f"{path}: {e.strerror}")


def mean(values):
    return sum(values) / len(values)


def load(folder):
    try:
        with open(os.path.join(folder, "suite.json")) as f:
            suite = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{os.path.join(folder, 'suite.json')}: not a robustness-suite record ({e})")
    rows = read_csv(os.path.join(folder, "results.csv"))
    device_rows = read_csv(os.path.join(folder, "devices.csv"))
    failed = [r for r in rows if r["status"] != "ok"]
    runs = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] == "ok":
            cell = runs[(r["scenario"], r["policy"])]
            for metric in ("latency_ms.mean", "latency_ms.p99", "slo.tail_satisfaction", "samples.dropped"):
                cell[metric].append(float(r[metric]))
    devices = defaultdict(lambda: defaultdict(list))
    for r in device_rows:
        if int(r["samples.completed"]) > 0:
            devices[(r["scenario"], r["policy"])][r["device"]].append(float(r["latency_ms.mean"]))
    metrics = {k: {m: mean(v) for m, v in cell.items()} for k, cell in runs.items()}
    device_means = {k: {d: mean(v) for d, v in cell.items()} for k, cell in devices.items()}
    return suite, metrics, device_means, failed


def judge(scenario, baselines, metrics, device_means):
    """exit_aware against the targets on one scenario; None where a figure cannot be had."""
    have = [p for p in baselines if (scenario, p) in metrics]
    ours = metrics.get((scenario, OURS))
    if not have or ours is None:
        return None
    best_mean = min(have, key=lambda p: metrics[(scenario, p)]["latency_ms.mean"])
    best_tail = max(have, key=lambda p: metrics[(scenario, p)]["slo.tail_satisfaction"])
    base_mean = metrics[(scenario, best_mean)]["latency_ms.mean"]
    base_tail = metrics[(scenario, best_tail)]["slo.tail_satisfaction"]
    verdict = {
        "best_mean_policy": best_mean, "best_mean_ms": base_mean, "best_tail_policy": best_tail,
        "best_tail": base_tail, "mean_ratio": base_mean / ours["latency_ms.mean"] if ours["latency_ms.mean"] > 0
        else float("inf"),
        "tail_points": 100 * (ours["slo.tail_satisfaction"] - base_tail),
        "clairvoyant_share": None, "worst_device": None, "worst_device_ratio": None,
    }
    verdict["mean_ok"] = ours["latency_ms.mean"] <= MEAN_TARGET * base_mean
    verdict["tail_ok"] = verdict["tail_points"] >= -TAIL_TARGET_POINTS
    bound = metrics.get((scenario, BOUND))
    if bound is not None and base_mean - bound["latency_ms.mean"] > 0:
        verdict["clairvoyant_share"] = (base_mean - ours["latency_ms.mean"]) / (base_mean - bound["latency_ms.mean"])
    ours_devices, edf_devices = device_means.get((scenario, OURS), {}), device_means.get((scenario, REFERENCE))
    if edf_devices:
        ratios = {d: ours_devices[d] / edf_devices[d] for d in ours_devices if edf_devices.get(d, 0) > 0}
        if ratios:
            verdict["worst_device"] = max(ratios, key=ratios.get)
            verdict["worst_device_ratio"] = ratios[verdict["worst_device"]]
    verdict["device_ok"] = verdict["worst_device_ratio"] is None or verdict["worst_device_ratio"] <= DEVICE_TARGET
    verdict["all_ok"] = verdict["mean_ok"] and verdict["tail_ok"] and verdict["device_ok"]
    return verdict


def number(value, digits=2):
    if value is None:
        return "n/a"
    if value == float("inf"):
        return "∞"
    return f"{value:.{digits}f}"


def latency(ms):
    """Milliseconds with three significant figures at most, so 0.0845 and 1234 both read well."""
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def section(suite, metrics, device_means, failed, title):
    policies = suite["policies"]
    baselines = suite["baselines"]
    scenarios = suite["scenarios"]
    out = []
    w = out.append
    verdicts = {s["name"]: judge(s["name"], baselines, metrics, device_means) for s in scenarios}
    judged = [v for v in verdicts.values() if v is not None]
    met = sum(1 for v in judged if v["all_ok"])
    seeds = ", ".join(str(s) for s in suite["seeds"])
    w(f"{title}\n")
    w(f"`scripts/robustness-suite`: {len(scenarios)} scenarios of `configs/robustness/` × {len(policies)} policies × "
      f"seeds {seeds}, {suite['runs']} runs, {suite['failed']} failed. What the suite covers and how to read this "
      "table: [robustness.md](robustness.md). Every figure is a mean over the seeds.\n")
    if suite.get("skipped_policies"):
        w(f"Not run (not registered in this npusim): {', '.join('`' + p + '`' for p in suite['skipped_policies'])}; "
          "their columns read n/a.\n")
    failed_runs = {(r["scenario"], r["policy"]) for r in failed}
    w(f"**exit_aware against issue 13's targets:** all three met on {met} of {len(judged)} scenarios.\n")
    w("| scenario | load (b1 / b16) | best baseline (mean) | mean ratio best ÷ exit_aware | mean ≤ 1.05× best | "
      "tail SLO vs best baseline (tail) | tail ≥ best − 2 pts | worst device ÷ edf | device ≤ 3× edf | "
      "share of clairvoyant gain |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for s in scenarios:
        v = verdicts[s["name"]]
        load_text = (f"{s['load_batch1_percent']:.0f} / {s['load_batch16_percent']:.0f} %"
                     if s.get("load_batch1_percent") is not None else "n/a")
        if v is None:
            w(f"| {s['name']} | {load_text} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        device = (f"{number(v['worst_device_ratio'])}× ({v['worst_device']})" if v["worst_device"] else "n/a")
        w(f"| {s['name']} | {load_text} | {v['best_mean_policy']} {latency(v['best_mean_ms'])} ms | "
          f"{number(v['mean_ratio'], 3)} | {PASS if v['mean_ok'] else MISS} | "
          f"{v['tail_points']:+.2f} pts ({v['best_tail_policy']} {100 * v['best_tail']:.1f} %) | "
          f"{PASS if v['tail_ok'] else MISS} | {device} | {PASS if v['device_ok'] else MISS} | "
          f"{number(v['clairvoyant_share'])} |")
    w("")
    for title, metric, show in (
            ("Mean latency (ms)", "latency_ms.mean", latency),
            ("p99 latency (ms)", "latency_ms.p99", latency),
            ("Tail SLO satisfaction (% of windows meeting the tail target)", "slo.tail_satisfaction",
             lambda x: f"{100 * x:.1f}")):
        w(f"**{title}**\n")
        w("| scenario | " + " | ".join(policies) + " |")
        w("|---|" + "---|" * len(policies))
        for s in scenarios:
            cells = []
            for p in policies:
                m = metrics.get((s["name"], p))
                cells.append(show(m[metric]) if m else "failed" if (s["name"], p) in failed_runs else "n/a")
            w(f"| {s['name']} | " + " | ".join(cells) + " |")
        w("")
    dropping = sorted({(s["name"], p) for s in scenarios for p in policies
                       if metrics.get((s["name"], p), {}).get("samples.dropped", 0) > 0})
    if dropping:
        w("Runs that dropped samples (their latencies count completed samples only): " +
          ", ".join(f"{p} on {s} ({metrics[(s, p)]['samples.dropped']:.0f} a run)" for s, p in dropping) + ".\n")
    if failed:
        w("Failed runs: " + "; ".join(f"{r['scenario']} {r['policy']} seed {r['seed']}: {r['error']}"
                                       for r in failed) + ".\n")
    return "\n".join(out) + "\n", verdicts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the --out folder of scripts/robustness-suite")
    parser.add_argument("--out", help="write the section here instead of printing it")
    parser.add_argument("--title", default="## Robustness suite", help="the section's heading (default: %(default)s)")
    args = parser.parse_args()
    suite, metrics, device_means, failed = load(args.folder)
    text, _ = section(suite, metrics, device_means, failed, args.title)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
