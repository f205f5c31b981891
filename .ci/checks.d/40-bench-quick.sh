#!/usr/bin/env bash
# bench/run.sh --quick: every benchmark stage for a few seconds against its own nisshi broker;
# fails only when a ratio falls below its generous floor (see bench/run.sh), not on absolute
# timings. About 3 minutes plus the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
bench/run.sh --quick
