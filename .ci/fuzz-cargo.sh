#!/usr/bin/env bash
# Coverage-guided fuzzing of DataStorage's batch bodies: the cargo-fuzz target
# `batch_body` (libFuzzer, datastorage/fuzz/) over the same properties as the
# stable fuzzer (datastorage/fuzz/properties.rs), from the corpus in
# datastorage/fuzz/corpus/batch/, for FUZZ_CARGO_SECONDS (default 120).
# .ci/run runs it after `make test` (its instrumented build of DataStorage
# takes about 10 minutes on 2 cores, which `make test` should not carry).
#
# cargo fuzz needs a nightly toolchain, which cannot be fetched here (rustup's
# servers are not reachable): where none is installed this says so and exits 0
# (the stable fuzzer has run in `make test`). cargo-fuzz itself comes from
# crates.io. New inputs go to a temporary folder whose path is printed: copy
# the ones worth keeping into the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds="${FUZZ_CARGO_SECONDS:-120}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "== fuzz: NO nightly toolchain here: the cargo-fuzz run is skipped; only the stable fuzzer ran"
    exit 0
fi
started=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
found=$(mktemp -d)
echo "== fuzz: batch bodies, cargo fuzz (libFuzzer), ${seconds}s"
cargo +nightly fuzz run --fuzz-dir "$root/datastorage/fuzz" batch_body \
    "$found" "$root/datastorage/fuzz/corpus/batch" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1
echo "== fuzz: cargo fuzz kept $(find "$found" -type f | wc -l) new inputs in $found"
echo "== fuzz: done in $(( $(date +%s) - started ))s"
