#!/usr/bin/env bash
# Times the replay against plain Python parses of the same records, on one core, median (and
# fastest) of three interleaved runs, on two histories:
#
#   light: three accounts, mostly AWS-internal traffic, as NDJSON of records, NDJSON of
#          EventBridge envelopes, and a CloudTrail S3 folder of small gzipped log files;
#   dense: 400 accounts whose trails are mostly Lambda (Lambda's AssumeRoles, the
#          functions' own calls), ~15% from outside, functions chaining into hub accounts,
#          as one NDJSON file per account given one after another, the same histories
#          one after another in one file, the same records sorted, and a trail folder.
#
# Then the replay on every core (its defaults: every core reads; from four cores half of
# them decide, a shard of the accounts each; below, one detector). Prints the medians, the ratios and peak RSS, the
# fastest runs, and the median of each round's paired ratios, and checks that every form and
# core count concludes the same findings.
#
#   bash internal/gen/bench.sh                           # 300,000 light, 420,000 dense records
#   RECORDS=1000000 DENSE_RECORDS=1000000 bash internal/gen/bench.sh
#   MIX=dense bash internal/gen/bench.sh                 # one mix only
#
# Needs: Go, python3, taskset (util-linux) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${RECORDS:-300000}
dense=${DENSE_RECORDS:-420000}
mix=${MIX:-light dense}
core=${CORE:-0}
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "--- $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(go version | cut -d' ' -f3); $(python3 --version)"
go build -o "$work/outsider" ./cmd/outsider
go build -o "$work/gentrail" ./internal/gen/cmd/gentrail
cat >"$work/floor.py" <<'PY'
import gzip, json, os, sys
n = 0
for path in sys.argv[1:]:
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
# What a run concluded: each finding's last state (the fields of its lines, the last of
# each), with its lists of addresses and calls sorted: two shards that wrote one finding
# may have listed them in another order.
cat >"$work/final.py" <<'PY'
import json, sys
last = {}
for l in open(sys.argv[1]):
    f = json.loads(l)
    last.setdefault(f["Id"], {}).update(f)
for k in sorted(last):
    f = last[k]
    pf = f["ProductFields"]
    srt = lambda s: ",".join(sorted((s or "").split(",")))
    print(k, f["Title"], pf.get("outsider/Count"), pf.get("outsider/FailedCount"), pf.get("outsider/FirstSeen"),
          pf.get("outsider/LastSeen"), srt(pf.get("outsider/SourceIPs")), srt(pf.get("outsider/ApiCalls")),
          pf.get("outsider/Function"), pf.get("outsider/ChainedRoleArn"))
PY

# seconds and peak RSS (KB) of a command (its findings kept in $work/out)
timed() { /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/out" 2>/dev/null; cat "$work/t"; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
best() { tr ' ' '\n' | grep . | sort -n | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A inputs rep flo rss two rss2 pr ps
forms=()
if [[ " $mix " == *" light "* ]]; then
	echo "--- generating the light mix: $records records"
	"$work/gentrail" -records "$records" -form ndjson >"$work/light.ndjson" 2>/dev/null
	"$work/gentrail" -records "$records" -form envelopes >"$work/light.envelopes.ndjson" 2>/dev/null
	"$work/gentrail" -records "$records" -form trail -out "$work/light.trail" 2>/dev/null
	inputs[light/ndjson]="$work/light.ndjson"
	inputs[light/envelopes]="$work/light.envelopes.ndjson"
	inputs[light/trail]="$work/light.trail"
	forms+=(light/ndjson light/envelopes light/trail)
fi
if [[ " $mix " == *" dense "* ]]; then
	echo "--- generating the dense mix: $dense records"
	"$work/gentrail" -mix dense -records "$dense" -form ndjson >"$work/dense.sorted.ndjson"
	"$work/gentrail" -mix dense -records "$dense" -form accounts -out "$work/dense.accounts" 2>/dev/null
	"$work/gentrail" -mix dense -records "$dense" -form trail -out "$work/dense.trail" 2>&1 | tail -1
	inputs[dense/accounts]="$(ls -d "$work"/dense.accounts/*.ndjson | tr '\n' ' ')"
	# The same histories one after another in one file (cat */*.ndjson): read as segments
	# from where its time goes back.
	cat "$work"/dense.accounts/*.ndjson >"$work/dense.concatenated.ndjson"
	inputs[dense/concat]="$work/dense.concatenated.ndjson"
	inputs[dense/sorted]="$work/dense.sorted.ndjson"
	# Its files hold twelve hours each (CloudTrail's hold five minutes of a busy account):
	# records come up to twelve hours behind other accounts' and regions', so the reorder
	# window is thirteen hours.
	inputs[dense/trail]="--reorder-window 13h $work/dense.trail"
	forms+=(dense/accounts dense/concat dense/sorted dense/trail)
fi

for run in $(seq "$runs"); do
	for form in "${forms[@]}"; do
		# shellcheck disable=SC2086 # the per-account form is many paths
		read -r r1 m < <(timed taskset -c "$core" "$work/outsider" replay --fresh --state "$work/state" --progress 0 --parallel 1 --format json ${inputs[$form]})
		rep[$form]+="$r1 "
		rss[$form]+="$m "
		python3 "$work/final.py" "$work/out" >"$work/final.one-core.${form/\//.}"
		# shellcheck disable=SC2086
		read -r f1 _ < <(timed taskset -c "$core" python3 "$work/floor.py" ${inputs[$form]#--reorder-window 13h })
		flo[$form]+="$f1 "
		# shellcheck disable=SC2086
		read -r s m < <(timed "$work/outsider" replay --fresh --state "$work/state" --progress 0 --format json ${inputs[$form]})
		two[$form]+="$s "
		rss2[$form]+="$m "
		pr[$form]+="$(ratio "$f1" "$r1") "
		ps[$form]+="$(ratio "$r1" "$s") "
		python3 "$work/final.py" "$work/out" >"$work/final.every-core.${form/\//.}"
	done
done

printf '\n%-16s %9s %9s %7s %9s %12s %8s %9s\n' input "replay s" "floor s" ratio "peak RSS" "$(nproc) cores s" speedup "peak RSS"
for form in "${forms[@]}"; do
	r=$(echo "${rep[$form]}" | median)
	f=$(echo "${flo[$form]}" | median)
	m=$(echo "${rss[$form]}" | median)
	t=$(echo "${two[$form]}" | median)
	m2=$(echo "${rss2[$form]}" | median)
	printf '%-16s %9s %9s %6sx %6d MB %12s %7sx %6d MB\n' "$form" "$r" "$f" "$(ratio "$f" "$r")" $((m / 1024)) "$t" "$(ratio "$r" "$t")" $((m2 / 1024))
done
# The same, each time the fastest of the runs: on a shared machine a run is slowed by
# others' work, never sped up, and the fastest of each is the least disturbed.
printf '\nthe fastest of %d runs each:\n%-16s %9s %9s %7s %12s %8s\n' "$runs" input "replay s" "floor s" ratio "$(nproc) cores s" speedup
for form in "${forms[@]}"; do
	r=$(echo "${rep[$form]}" | best)
	f=$(echo "${flo[$form]}" | best)
	t=$(echo "${two[$form]}" | best)
	printf '%-16s %9s %9s %6sx %12s %7sx\n' "$form" "$r" "$f" "$(ratio "$f" "$r")" "$t" "$(ratio "$r" "$t")"
done
# The same, paired: each round runs the replay, the floor and both cores back to back, so
# its ratios compare runs minutes apart at most; the median of the rounds' ratios is the
# least moved by a machine whose speed drifts over the bench.
printf '\nthe median of the rounds'"'"' ratios:\n%-16s %7s %8s\n' input ratio speedup
for form in "${forms[@]}"; do
	printf '%-16s %6sx %7sx\n' "$form" "$(echo "${pr[$form]}" | median)" "$(echo "${ps[$form]}" | median)"
done
echo
echo "ratio: the floor's time over the replay's, both on one core (above 1: the replay is faster)"
if [ "$(nproc)" -ge 4 ]; then
	deciding="--shards $(( $(nproc) / 2 )) deciding"
else
	deciding="one detector deciding beside the readers"
fi
echo "speedup: the replay on one core over the replay on every core (the default --parallel $(nproc): every core reads, $deciding)"
echo
same=yes
for m in light dense; do
	ref=$(ls "$work"/final.one-core.$m.* 2>/dev/null | head -1) || true
	[[ -n "$ref" ]] || continue
	for f in "$work"/final.*."$m".*; do
		if ! cmp -s "$f" "$ref"; then
			same=no
			echo "findings differ: $(basename "$f") against $(basename "$ref")"
		fi
	done
	echo "$m: $(wc -l <"$ref") findings"
done
echo "identical on every form of a mix, one core and every core: $same"
[[ $same == yes ]]
