#!/usr/bin/env bash
# scripts/summary_table.py tabulates real summaries and refuses a file that is not one.
# Usage: summary_table_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for policy in fcfs exit_aware; do
  "$npusim" run default --set simulation.duration_s=5 --set scheduler.policy=$policy --out "$work/$policy" >/dev/null
done
table=$(/usr/bin/python3 "$source_dir/scripts/summary_table.py" --csv "$work/fcfs/summary.json" "$work/exit_aware/summary.json")
[[ $(echo "$table" | wc -l) -eq 3 ]] || { echo "expected a header and two rows: $table" >&2; exit 1; }
[[ $(echo "$table" | sed -n 3p | cut -d, -f2) == exit_aware ]] || { echo "second row is not exit_aware: $table" >&2; exit 1; }
echo '{"x": 1}' > "$work/bad.json"
if /usr/bin/python3 "$source_dir/scripts/summary_table.py" "$work/bad.json" 2>/dev/null; then
  echo "a file that is not a summary was tabulated" >&2
  exit 1
fi
echo "summary_table: two runs tabulated, bad input refused"
