#!/usr/bin/env bash
# Fuzz smoke run: the cargo-fuzz targets in fuzz/ for 20 s each on their committed corpus (#8),
# one target at a time on one core; a crash fails the check and names the input. The long runs
# (10 minutes per target) are done by hand with scripts/fuzz.sh --seconds 600, see
# docs/fuzzing.md. fuzz/ is its own cargo workspace with its own target dir (coverage-instrumented
# release build with debug assertions): 6 minutes cold on a busy 2-core machine, about 2 minutes for
# the six 20 s runs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# rustfmt only: a clippy pass would be a third full build of the dependency tree.
cargo fmt --manifest-path fuzz/Cargo.toml --check
scripts/fuzz.sh --seconds "${BUSFLOW_FUZZ_CI_SECONDS:-20}"
