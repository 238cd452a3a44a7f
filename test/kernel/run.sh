#!/usr/bin/env bash
# npm run test:kernel: the real-kernel suite (builds first via npm). Needs root for apt/qemu.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec node dist/test/kernel/harness.js "$@"
