#!/usr/bin/env bash
# Runs the demo N times in a row and prints, per run, the late points counted beside the points the
# demo sent late on purpose (each stamped inside a window already closed). With correct watermarks the
# two are equal in every run (issue: a stalled thread pool once turned millions of in-order points late).
#   benchmarks/demo-late-check.sh [runs=20] [points=2000000]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; points=${2:-2000000}
dotnet build src/Monitoring.Stream.Server -c Release -v q -nologo >/dev/null
bad=0
for i in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  out=$(dotnet src/Monitoring.Stream.Server/bin/Release/net10.0/monitoring-stream.dll demo --points "$points" --data-dir "$dir")
  late=$(echo "$out" | grep -o 'late [0-9,]* + still' | grep -o '[0-9,]*' | tr -d ,)
  injected=$(echo "$out" | grep -o 'late injected on purpose (into closed windows): [0-9,]*' | grep -o '[0-9,]*$' | tr -d ,)
  rm -rf "$dir"
  echo "run $i: late $late, injected $injected"
  # More late than injected: in-order points were made late. Fewer: an injected point was aggregated.
  if [ "$late" -ne "$injected" ]; then bad=$((bad + 1)); fi
done
echo "$runs runs: $bad where the late points counted differ from those injected"
[ "$bad" -eq 0 ]
