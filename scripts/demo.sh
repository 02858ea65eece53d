#!/usr/bin/env bash
# The main job on the embedded default: start the emulated lab fleet on 127.42.0.x, scan it with
# the iso27400 profile, write one record per device and report.html to iotprobe-out/, print the
# summary, stop
# the lab. The scan's exit code (1 = some device nonconformant) is what the lab is built to show.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-iotprobe-out}
mkdir -p "$OUT"
export IOTPROBE_STATE_DIR=${IOTPROBE_STATE_DIR:-$PWD/.lab-state}
.venv/bin/iotprobe lab up --inventory-out "$OUT/lab-inventory.yaml"
trap '.venv/bin/iotprobe lab down >/dev/null' EXIT
set +e
.venv/bin/iotprobe scan -i "$OUT/lab-inventory.yaml" -o "$OUT" --format html --timeout 2 --budget 30 "$@"
code=$?
set -e
case $code in
  0) echo "exit 0: every device conformant" ;;
  1) echo "exit 1: at least one device nonconformant (the lab has bad personas on purpose)" ;;
  3) echo "exit 3: no failure, but at least one device inconclusive" ;;
  *) echo "exit $code: the scan did not complete"; exit "$code" ;;
esac
