#!/usr/bin/env bash
# Times the replay against plain Python parses of the same records, on one core, in three
# interleaved runs, for each form a trail comes in: NDJSON of records, NDJSON of
# EventBridge envelopes, and a CloudTrail S3 folder of small gzipped log files. Then the
# replay on every core. Prints the medians, the ratios and peak RSS.
#
#   bash internal/gen/bench.sh            # 300,000 records
#   RECORDS=1000000 bash internal/gen/bench.sh
#
# Needs: Go, python3, taskset (util-linux) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${RECORDS:-300000}
core=${CORE:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "--- building and generating $records records ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
go build -o "$work/outsider" ./cmd/outsider
go run ./internal/gen/cmd/gentrail -records "$records" -form ndjson >"$work/records.ndjson" 2>/dev/null
go run ./internal/gen/cmd/gentrail -records "$records" -form envelopes >"$work/envelopes.ndjson" 2>/dev/null
go run ./internal/gen/cmd/gentrail -records "$records" -form trail -out "$work/trail" 2>/dev/null
cat >"$work/floor.py" <<'PY'
import gzip, json, os, sys
path, n = sys.argv[1], 0
if os.path.isdir(path):
    for root, _, files in os.walk(path):
        for f in files:
            with gzip.open(os.path.join(root, f)) as g:
                n += len(json.load(g)["Records"])
else:
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
            n += 1
print(n)
PY

# seconds and peak RSS (KB) of a command (its findings kept in $work/out)
timed() { /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/out" 2>/dev/null; cat "$work/t"; }
# the last state of each finding, one line each, sorted: what a run concluded
final() { python3 -c 'import json,sys
last={}
for l in open(sys.argv[1]):
    f=json.loads(l); last[f["Id"]]=l.strip()
print("\n".join(sorted(last.values())))' "$1"; }
declare -A rep flo rss
for run in 1 2 3; do
	for form in records.ndjson envelopes.ndjson trail; do
		read -r s m < <(timed taskset -c "$core" "$work/outsider" replay --fresh --state "$work/state" --progress 0 --parallel 1 --format json "$work/$form")
		rep[$form]+="$s "; rss[$form]+="$m "
		final "$work/out" >"$work/final.one-core.$form"
		read -r s _ < <(timed taskset -c "$core" python3 "$work/floor.py" "$work/$form")
		flo[$form]+="$s "
	done
done
median() { tr ' ' '\n' | grep . | sort -n | sed -n 2p; }
printf '\n%-18s %12s %12s %8s %10s\n' input "replay s" "floor s" ratio "peak RSS"
for form in records.ndjson envelopes.ndjson trail; do
	r=$(echo "${rep[$form]}" | median); f=$(echo "${flo[$form]}" | median); m=$(echo "${rss[$form]}" | median)
	printf '%-18s %12s %12s %7.2fx %8d MB\n' "$form" "$r" "$f" "$(awk -v f="$f" -v r="$r" 'BEGIN { print f / r }')" $((m / 1024))
done
echo
echo "ratio: the floor's time over the replay's (above 1: the replay is faster); one core, median of three"
for form in records.ndjson envelopes.ndjson trail; do
	ts=""
	for run in 1 2 3; do
		read -r s m < <(timed "$work/outsider" replay --fresh --state "$work/state" --progress 0 --format json "$work/$form")
		ts+="$s "
	done
	final "$work/out" >"$work/final.every-core.$form"
	echo "every core ($(nproc)), $form: median $(echo "$ts" | median) s, $((m / 1024)) MB"
done
echo
same=yes
for f in "$work"/final.*; do
	if ! cmp -s "$f" "$work/final.one-core.records.ndjson"; then
		same=no
		echo "findings differ: $(basename "$f") against one-core records.ndjson"
	fi
done
echo "findings ($(wc -l <"$work/final.one-core.records.ndjson")): identical on every form, one core and every core: $same"
