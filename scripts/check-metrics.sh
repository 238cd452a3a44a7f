#!/usr/bin/env bash
# Runs `promtool check metrics` (Debian's prometheus package) on the /metrics of a real agent
# process on a simulated host, after a claim and a module loss, so every metric family has
# samples (the recovery histogram included). Needs `npm run build` first. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 1; }
dir=$(mktemp -d)
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
pt() { node dist/bundle/passthru.js --sim qemu-guest --state-dir "$dir/state" "$@"; }

# node itself in the background (not through the pt function): $! is then the agent's pid.
node dist/bundle/passthru.js --sim qemu-guest --state-dir "$dir/state" agent --listen 127.0.0.1:0 \
  >"$dir/out" 2>"$dir/err" &
agent_pid=$!
url=
for _ in $(seq 100); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$dir/out" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the agent printed no URL" >&2; cat "$dir/err" >&2; exit 1; }

pt claim 0000:01:00.0 >/dev/null
pt sim modprobe-r vfio_pci >/dev/null
fetch() { node -e 'fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))' "$1"; }
for _ in $(seq 100); do
  fetch "${url}metrics" >"$dir/metrics"
  grep -q '^passthru_recovery_duration_seconds_count 1$' "$dir/metrics" && break
  sleep 0.1
done
grep -q '^passthru_vfio_module_losses_total 1$' "$dir/metrics" || { echo "no loss in the metrics" >&2; exit 1; }
grep -q '^passthru_recovery_duration_seconds_count 1$' "$dir/metrics" || { echo "no recovery observed" >&2; exit 1; }
version=$(node -p 'require("./package.json").version')
grep -q "^passthru_build_info{version=\"$version\"} 1$" "$dir/metrics" ||
  { echo "passthru_build_info does not say version $version" >&2; exit 1; }
promtool check metrics <"$dir/metrics"
echo "promtool check metrics: ok ($(grep -c '^# TYPE' "$dir/metrics") metric families from ${url}metrics)"
