#!/usr/bin/env bash
# Fuzzes DataStorage's batch-body path (cost measurement, parsing, the typed
# and Value reads, validation, JCS canonicalisation) for a bounded time with
# the stable mutation fuzzer (datastorage/tests/fuzz_batch_body.rs; JSON-aware
# mutations): FUZZ_SECONDS, default 120. `make test` runs it under CI.
# FUZZ_SAVE=1 adds the new outcomes it finds to the corpus,
# datastorage/fuzz/corpus/batch/, which it replays first. Its coverage-guided
# sibling over the same properties (datastorage/fuzz/properties.rs) is
# .ci/fuzz-cargo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
started=$(date +%s)
echo "== fuzz: batch bodies, stable mutation fuzzer, ${FUZZ_SECONDS}s"
cargo test -q -p datastorage --test fuzz_batch_body -- --nocapture
echo "== fuzz: done in $(( $(date +%s) - started ))s"
