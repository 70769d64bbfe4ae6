#!/usr/bin/env bash
# Run the whole test command (tests and scenarios, then the Node twin's smoke subset given as the remaining
# arguments, as `make test`) RUNS times in a row (default 10) and stop at the first failure or skip. A test that fails or skips sometimes is a bug to find, not a run to
# retry. Prints each run's time and result line.
set -uo pipefail
runs=${1:-10}
profile=${2:-ci}
workers=${3:-2}
node_smoke=("${@:4}")
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
keep=reports/out  # a failed run's whole log is kept here
start=$SECONDS
for i in $(seq 1 "$runs"); do
  t0=$SECONDS
  .venv/bin/python -m pytest -q -n "$workers" --dr-profile="$profile" tests scenarios -ra \
    -p no:cacheprovider >"$log_dir/run.log" 2>&1
  rc=$?
  result=$(tail -n 1 "$log_dir/run.log")
  grep -q "skipped" <<<"$result" && rc=1
  if [ "$rc" -eq 0 ] && [ "${#node_smoke[@]}" -gt 0 ]; then
    .venv/bin/python -m pytest -q -n "$workers" --dr-profile="$profile" --bridge node "${node_smoke[@]}" \
      -ra -p no:cacheprovider >>"$log_dir/run.log" 2>&1
    rc=$?
    smoke=$(tail -n 1 "$log_dir/run.log")
    grep -q "skipped" <<<"$smoke" && rc=1
    result="$result; node smoke: $smoke"
  fi
  echo "run $i/$runs: $((SECONDS - t0)) s, $result"
  if [ "$rc" -ne 0 ]; then
    grep -E "^(FAILED|ERROR|SKIPPED)" "$log_dir/run.log"
    mkdir -p "$keep" && cp "$log_dir/run.log" "$keep/repeat-run-$i.log"
    echo "repeat: the whole log of run $i is $keep/repeat-run-$i.log" >&2
    echo "repeat: run $i of $runs did not pass cleanly (exit $rc); stopped after $((SECONDS - start)) s" >&2
    exit 1
  fi
done
echo "repeat: $runs of $runs runs passed with nothing skipped, in $((SECONDS - start)) s"
