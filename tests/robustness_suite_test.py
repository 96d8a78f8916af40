#!/usr/bin/python3
"""Smoke test of the robustness suite (docs/robustness.md), in a few seconds:

- every scenario of configs/robustness/ (and the trace generator beside them) validates, and
  states its load in the `# Load:` line the suite reads; scripts/expected-work, which computed
  those loads, agrees with `npusim model` when no sample leaves early;
- scripts/robustness-suite runs one scenario end to end and skips a policy npusim lacks;
- scripts/random-scenarios writes the same valid scenarios for the same seed, loads stated;
- scripts/robustness_table.py judges a tiny synthetic result exactly as docs/robustness.md says.

    tests/robustness_suite_test.py NPUSIM SOURCE_DIR
"""
import csv
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        failures.append(message)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def synthetic_suite(folder):
    """Two scenarios, three baselines, exit_aware, and clairvoyant on the first only.

    fast: best baseline edf (mean 2.0, tail 90 %), exit_aware 2.0 -> 1.6 (ratio 1.25), tail 89 %
          (-1 point, met), clairvoyant 1.2 -> share (2.0 - 1.6) / (2.0 - 1.2) = 0.5; device b
          4.0 / 2.0 = 2x edf (met).
    slow: best baseline fcfs (mean 1.0; tail best prema 100 %), exit_aware 1.1 -> ratio 0.909
          (missed), tail 95 % (-5 points, missed), device b 8.0 / 2.0 = 4x edf (missed);
          no clairvoyant run -> n/a.
    """
    suite = {"scenarios": [{"name": "fast", "file": "fast.yaml", "load_batch1_percent": 80.0,
                            "load_batch16_percent": 70.0},
                           {"name": "slow", "file": "slow.yaml", "load_batch1_percent": None,
                            "load_batch16_percent": None}],
             "policies": ["fcfs", "prema", "edf", "exit_aware", "clairvoyant"],
             "skipped_policies": [], "baselines": ["fcfs", "prema", "edf"], "seeds": [1, 2], "runs": 18,
             "failed": 0}
    with open(os.path.join(folder, "suite.json"), "w") as f:
        json.dump(suite, f)
    header = ["scenario", "policy", "seed", "status", "samples.dropped", "latency_ms.mean", "latency_ms.p99",
              "slo.tail_satisfaction", "error"]
    # (scenario, policy) -> per-seed (mean, tail); the means over the two seeds are in the docstring.
    runs = {("fast", "fcfs"): [(3.0, 0.5), (3.0, 0.5)], ("fast", "prema"): [(2.5, 0.8), (2.5, 0.8)],
            ("fast", "edf"): [(1.9, 0.9), (2.1, 0.9)], ("fast", "exit_aware"): [(1.5, 0.88), (1.7, 0.9)],
            ("fast", "clairvoyant"): [(1.2, 1.0), (1.2, 1.0)],
            ("slow", "fcfs"): [(1.0, 0.9), (1.0, 0.9)], ("slow", "prema"): [(1.5, 1.0), (1.5, 1.0)],
            ("slow", "edf"): [(1.2, 0.99), (1.2, 0.99)], ("slow", "exit_aware"): [(1.1, 0.95), (1.1, 0.95)]}
    rows, device_rows = [], []
    for (scenario, policy), seeds in runs.items():
        for seed, (m, tail) in enumerate(seeds, 1):
            rows.append([scenario, policy, seed, "ok", 0, m, 10 * m, tail, ""])
            b = {"exit_aware": 4.0 if scenario == "fast" else 8.0, "edf": 2.0}.get(policy, 1.0)
            device_rows.append([scenario, policy, seed, "a", "resnet56", 1, 1.0])
            device_rows.append([scenario, policy, seed, "b", "resnet50", 1, b])
    write_csv(os.path.join(folder, "results.csv"), header, rows)
    write_csv(os.path.join(folder, "devices.csv"),
              ["scenario", "policy", "seed", "device", "model", "samples.completed", "latency_ms.mean"], device_rows)


def main():
    npusim, source = sys.argv[1], sys.argv[2]
    env = dict(os.environ, SYSTEMC_DISABLE_COPYRIGHT_MESSAGE="1")
    scenarios = sorted(glob.glob(os.path.join(source, "configs", "robustness", "*.yaml")))
    check(len(scenarios) >= 12, f"{len(scenarios)} robustness scenarios (issue 13 asks for at least 12)")
    load_line = re.compile(r"^# Load: [0-9.]+ % of the NPU at batch 1 \([0-9.]+ % with full batches of 16\)")
    for path in scenarios + glob.glob(os.path.join(source, "configs", "robustness", "traces", "*.yaml")):
        name = os.path.relpath(path, source)
        result = subprocess.run([npusim, "validate", path], capture_output=True, text=True, env=env)
        check(result.returncode == 0, f"{name} validates" + (f": {result.stderr.strip()}" if result.returncode else ""))
    for path in scenarios:
        with open(path) as f:
            check(bool(load_line.match(f.readline())), f"{os.path.relpath(path, source)} states its load first")

    # The stated loads rest on scripts/expected-work: exits make a sample cheaper than the whole
    # network, and with every sample at the final classifier (tilt 50: 0.999 of them) it costs
    # the whole network, as `npusim model` prices it.
    work = subprocess.run([os.path.join(source, "scripts", "expected-work"), "resnet56", "--tilt", "0", "--tilt", "50",
                           "--npusim", npusim, "--json"], capture_output=True, text=True, env=env)
    check(work.returncode == 0, f"expected-work runs ({work.stderr.strip()})")
    if work.returncode == 0:
        usual, hard = [json.loads(line) for line in work.stdout.splitlines()]
        check(usual["batch1_cycles"] < 0.8 * usual["no_exit_batch1_cycles"],
              f"exits cut ResNet-56's batch-1 work: {usual['batch1_cycles']:.0f} < 0.8 x {usual['no_exit_batch1_cycles']}")
        check(abs(hard["batch1_cycles"] / hard["no_exit_batch1_cycles"] - 1) < 0.002 and
              abs(hard["batch16_cycles_per_sample"] / hard["no_exit_batch16_cycles_per_sample"] - 1) < 0.002,
              "without early exits the expected work is the whole network's, at batch 1 and 16")

    with tempfile.TemporaryDirectory() as tmp:
        # One short scenario, end to end; a policy the binary lacks is a note, not a failure.
        out = os.path.join(tmp, "suite")
        result = subprocess.run([os.path.join(source, "scripts", "robustness-suite"), "--npusim", npusim, "--out", out,
                                 "--scenarios", os.path.join(source, "configs", "robustness", "mbv2-poisson-40-loose.yaml"),
                                 "--policies", "edf", "exit_aware", "no_such_policy", "--seeds", "1", "--jobs", "2"],
                                capture_output=True, text=True)
        check(result.returncode == 0, f"robustness-suite runs a scenario (status {result.returncode}: "
              f"{result.stderr.strip()[-300:]})")
        check("policy no_such_policy is not registered" in result.stderr, "an unregistered policy is skipped")
        if result.returncode == 0:
            with open(os.path.join(out, "results.csv"), newline="") as f:
                rows = list(csv.DictReader(f))
            check([(r["policy"], r["status"]) for r in rows] == [("edf", "ok"), ("exit_aware", "ok")],
                  "results.csv has one ok row per policy")
            with open(os.path.join(out, "suite.json")) as f:
                suite = json.load(f)
            check(suite["skipped_policies"] == ["no_such_policy"] and suite["scenarios"][0]["load_batch1_percent"] == 40,
                  "suite.json records the skipped policy and the stated load")
            again = subprocess.run([os.path.join(source, "scripts", "robustness-suite"), "--npusim", npusim, "--out", out,
                                    "--scenarios", os.path.join(source, "configs", "robustness", "mbv2-poisson-40-loose.yaml")],
                                   capture_output=True, text=True)
            check(again.returncode == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr,
                  f"an existing suite is refused in one line naming --resume: {again.stderr.strip()!r}")

        # Random held-out scenarios: the same seed writes the same bytes, each validates and
        # states its load as the suite's do.
        generator = os.path.join(source, "scripts", "random-scenarios")
        firsts = [os.path.join(tmp, "random-a"), os.path.join(tmp, "random-b")]
        for folder in firsts:
            made = subprocess.run([generator, "2026", "12", folder], capture_output=True, text=True)
            check(made.returncode == 0, f"random-scenarios writes a set ({made.stderr.strip()})")
        written = sorted(glob.glob(os.path.join(firsts[0], "*.yaml")))
        check(len(written) == 12, f"random-scenarios 2026 12 writes 12 files, not {len(written)}")
        for path in written:
            with open(path, "rb") as f, open(os.path.join(firsts[1], os.path.basename(path)), "rb") as g:
                check(f.read() == g.read(), f"{os.path.basename(path)} is the same for the same seed")
            result = subprocess.run([npusim, "validate", path], capture_output=True, text=True, env=env)
            check(result.returncode == 0, f"{os.path.basename(path)} validates {result.stderr.strip()}")
            with open(path) as f:
                check(bool(load_line.match(f.readline())), f"{os.path.basename(path)} states its load first")
        usage = subprocess.run([generator, "x"], capture_output=True, text=True)
        check(usage.returncode == 2 and usage.stderr.count("\n") == 1, "random-scenarios refuses bad arguments in one line")

        synthetic = os.path.join(tmp, "synthetic")
        os.makedirs(synthetic)
        synthetic_suite(synthetic)
        table = subprocess.run([os.path.join(source, "scripts", "robustness_table.py"), synthetic],
                               capture_output=True, text=True)
        check(table.returncode == 0, f"robustness_table.py reads a suite ({table.stderr.strip()})")
        lines = {}
        for line in table.stdout.splitlines():  # the verdict table comes first, then the per-metric ones
            if line.startswith(("| fast |", "| slow |")):
                lines.setdefault(line.split("|")[1].strip(), line)
        fast, slow = lines.get("fast", ""), lines.get("slow", "")
        check("all three met on 1 of 2 scenarios" in table.stdout, "counts the scenarios that meet every target")
        check("| 80 / 70 % | edf 2.00 ms | 1.250 | yes | -1.00 pts (edf 90.0 %) | yes | 2.00× (b) | yes | 0.50 |" in fast,
              f"fast: ratio 1.25, tail -1 point, device 2x, clairvoyant share 0.5: {fast!r}")
        check("| n/a | fcfs 1.00 ms | 0.909 | **no** | -5.00 pts (prema 100.0 %) | **no** | 4.00× (b) | **no** | n/a |"
              in slow, f"slow: every target missed, no clairvoyant run: {slow!r}")
        broken = subprocess.run([os.path.join(source, "scripts", "robustness_table.py"), os.path.join(tmp, "none")],
                                capture_output=True, text=True)
        check(broken.returncode != 0 and broken.stderr.count("\n") == 1, "a missing suite is one error line")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
