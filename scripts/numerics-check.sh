#!/usr/bin/env bash
# Check the portable numerics: python -m bench.fingerprint natively and as two emulated CPUs
# (qemu-user: an AMD EPYC-Rome and an Intel Haswell, both AVX2), then compare the hashes.
#   bash scripts/numerics-check.sh                       # every piece (about 20 min under emulation)
#   bash scripts/numerics-check.sh methods=[funlora]     # fewer adapters, faster
#   CPUS="EPYC-Rome" bash scripts/numerics-check.sh      # one emulated CPU
# Extra key=value arguments go to bench.fingerprint (numerics=native shows what the pins fix).
# Exit 0 when every piece is identical on every CPU, 1 when one differs. Writes OUT (default
# /tmp/funlora-numerics-check): one JSON per CPU and the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0 ;; esac
bash scripts/setup.sh
if ! command -v qemu-x86_64 >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing qemu-user (Debian's; it runs a process as another x86-64 CPU)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user; } \
    >>.setup.log 2>&1 || { echo "error: could not install qemu-user; its output is in $PWD/.setup.log" >&2; exit 2; }
fi
OUT=${OUT:-/tmp/funlora-numerics-check}
mkdir -p "$OUT"
PY=$PWD/.venv/bin/python   # the venv's own path (not resolved): qemu runs it with the venv's packages
start=$(date +%s)
"$PY" -m bench.fingerprint out="$OUT/native.json" "$@" >/dev/null
pids=()
for cpu in ${CPUS:-EPYC-Rome Haswell}; do
  # TCG warns about CPU features it does not emulate: noise, not errors
  (qemu-x86_64 -cpu "$cpu" "$PY" -m bench.fingerprint out="$OUT/$cpu.json" "$@" 2>&1 \
     | grep -v "TCG doesn't support" >"$OUT/$cpu.log" || true) &
  pids+=($!)
done
wait "${pids[@]}"
files=("$OUT/native.json")
for cpu in ${CPUS:-EPYC-Rome Haswell}; do
  [ -s "$OUT/$cpu.json" ] || { echo "error: the emulated $cpu run failed; its log: $OUT/$cpu.log" >&2; exit 2; }
  files+=("$OUT/$cpu.json")
done
list=$(IFS=,; echo "${files[*]}")
echo "numerics check: $(( $(date +%s) - start )) s on $(nproc) cores; files in $OUT"
"$PY" -m bench.fingerprint compare="[$list]" | tee "$OUT/compare.txt"
