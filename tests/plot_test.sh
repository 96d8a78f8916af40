#!/usr/bin/env bash
# scripts/plot_arrivals.py draws a figure from a generated trace and refuses a file that is
# not a trace. Usage: plot_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$npusim" trace default --samples 3000 --out "$work/t.csv" >/dev/null
/usr/bin/python3 "$source_dir/scripts/plot_arrivals.py" "$work/t.csv" --out "$work/a.png" --window-s 5
[[ -s "$work/a.png" ]] || { echo "no figure written" >&2; exit 1; }
[[ "$(head -c 8 "$work/a.png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] || { echo "not a PNG" >&2; exit 1; }
echo "time,who" > "$work/bad.csv"
if /usr/bin/python3 "$source_dir/scripts/plot_arrivals.py" "$work/bad.csv" --out "$work/b.png" 2>/dev/null; then
  echo "a file without the trace header was plotted" >&2
  exit 1
fi
echo "plot_arrivals: figure written, bad input refused"
