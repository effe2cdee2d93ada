#!/usr/bin/env bash
# Builds the page that `monitoring-stream run` serves at /: installs the pinned npm packages
# (package-lock.json) and copies the page's sources and the charting library into
# src/Monitoring.Stream.Server/wwwroot. The result is committed, so the executable serves the page
# offline and building the service needs no npm; run this after changing web/src or package.json.
#   web/build.sh          (or: cd web && npm run build)
set -euo pipefail
cd "$(dirname "$0")"
out=../src/Monitoring.Stream.Server/wwwroot
if [ ! -d node_modules/uplot ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
rm -rf "$out"
mkdir -p "$out/vendor"
cp src/index.html src/app.js src/app.css "$out/"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css "$out/vendor/"
cp node_modules/uplot/LICENSE "$out/vendor/uPlot.LICENSE"
echo "page built into $(cd "$out" && pwd)"
