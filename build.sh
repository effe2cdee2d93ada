#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./build.sh build     compile everything (Release)
#   ./build.sh test      install what the tests need, then run every test project
#   ./build.sh run       build and start the service on its defaults (http://127.0.0.1:9400) with a small synthetic load
#   ./build.sh demo      run the engine's main job on its embedded defaults
#   ./build.sh bench     run the BenchmarkDotNet suite (pass a filter after it, e.g. '*Sketch*')
#   ./build.sh load      run the end-to-end load harness against the OpenTelemetry SDK
#                        (./build.sh load --check: each headline claim of docs/benchmarks.md beside today's figure)
#   ./build.sh load-http the HTTP ingest load test on loopback (--mode overload: 64 unpaced senders; --mode stall: the same against a stalled sink)
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

configuration=${CONFIGURATION:-Release}
results=artifacts/test-results

install_test_prerequisites() {
  # The time-series sink's integration tests start their own VictoriaMetrics and Prometheus
  # (Debian packages) on loopback ports with temporary folders. The packages' post-install scripts
  # would start system services: a temporary policy-rc.d refuses that, and whatever was started
  # anyway is stopped, so nothing is left listening on the default ports.
  local missing=()
  command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian)"
    local policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      policy_created=1
    fi
    apt-get update -qq
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ "$policy_created" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    for service in victoria-metrics prometheus; do
      if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
    done
  fi
  # Interop tests read our output with independent implementations from npm (apache-arrow) and
  # produce to Kafka with one (kafkajs, @msgpack/msgpack); they are installed into tests/interop once and reused.
  if [ -f tests/interop/package.json ] && { [ ! -d tests/interop/node_modules ] || [ ! -d tests/interop/node_modules/kafkajs ]; }; then
    echo "== installing npm interop readers"
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # The browser tests (tests/Monitoring.Stream.Browser.Tests) drive Debian's headless Chromium at
  # /usr/bin/chromium through Playwright's driver from the Microsoft.Playwright NuGet package; no browser
  # is ever downloaded.
  if [ ! -x /usr/bin/chromium ]; then
    echo "== installing chromium (Debian) for the browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  fi
  # The Python producer of docs/wire-format.md (tests/interop/produce_points.py) runs under Debian's
  # python3 with Debian's msgpack and confluent-kafka modules.
  if ! /usr/bin/python3 -c "import msgpack, confluent_kafka" >/dev/null 2>&1; then
    echo "== installing python3-msgpack python3-confluent-kafka (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-msgpack python3-confluent-kafka
  fi
  # The store's full-disk test mounts a small tmpfs and fills it: it needs mount/umount
  # (util-linux) and root or CAP_SYS_ADMIN; without them that test fails and says why.
  if ! command -v mount >/dev/null 2>&1 || ! command -v umount >/dev/null 2>&1; then
    echo "== installing mount (util-linux) for the full-disk test"
    apt-get update && apt-get install -y --no-install-recommends mount
  fi
}

cmd=${1:-build}
shift || true
case "$cmd" in
  build)
    dotnet build Monitoring.Stream.sln -c "$configuration"
    ;;
  test)
    install_test_prerequisites
    rm -rf "$results"
    dotnet build Monitoring.Stream.sln -c "$configuration"
    # A test that stops making progress for 10 minutes fails the run with its name instead of
    # holding the machine: the blame collector kills the hung test host and reports the test.
    dotnet test Monitoring.Stream.sln -c "$configuration" --no-build \
      --blame-hang-timeout 10m --blame-hang-dump-type none \
      --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results" "$@"
    ;;
  run)
    dotnet run --project src/Monitoring.Stream.Server -c "$configuration" -- run --demo-load "$@"
    ;;
  demo)
    dotnet run --project src/Monitoring.Stream.Server -c "$configuration" -- demo "$@"
    ;;
  bench)
    dotnet run --project benchmarks/Monitoring.Stream.Benchmarks -c Release -- --filter "${1:-*}" "${@:2}"
    ;;
  load)
    dotnet run --project benchmarks/Monitoring.Stream.Benchmarks -c Release -- load "$@"
    ;;
  load-http)
    # The harness starts the built service as a process (src/Monitoring.Stream.Server/bin/Release), so both are built first.
    dotnet build src/Monitoring.Stream.Server -c Release
    dotnet run --project benchmarks/Monitoring.Stream.Benchmarks -c Release -- load-http "$@"
    ;;
  *)
    echo "usage: $0 {build|test|run|demo|bench|load|load-http}" >&2
    exit 2
    ;;
esac
