#!/usr/bin/env bash
# Fuzzes DataStorage's batch-body path (cost measurement, parsing, validation,
# JCS canonicalisation) for a bounded time: FUZZ_SECONDS, default 120.
# Stable toolchain only (CI cannot fetch nightly, which cargo fuzz needs); see
# datastorage/tests/fuzz_batch_body.rs for what it checks. The corpus it
# replays and mutates is datastorage/fuzz/corpus/batch/; run with FUZZ_SAVE=1
# to add the new outcomes it finds there, then commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
echo "== fuzz: batch bodies for ${FUZZ_SECONDS}s"
started=$(date +%s)
cargo test -q -p datastorage --test fuzz_batch_body -- --nocapture
echo "== fuzz: done in $(( $(date +%s) - started ))s"
