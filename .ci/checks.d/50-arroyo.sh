#!/usr/bin/env bash
# The Arroyo side of issue #9 (sql/arroyo): its own cargo workspace, because arroyo-udf-plugin
# pins chrono below the main workspace's. Formatting, clippy, and the tests: the UDFs' parity
# with busflow-core's H3 helpers, and the checker over every .sql file under sql/arroyo/ (plus
# a parse of sql/queries/*.sql). No Arroyo cluster is involved.
# Its own target dir (arrow 51 is not shared with the main build): about 4 minutes cold on an
# idle 2-core machine, seconds after that.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${ARROYO_TARGET_DIR:-$HOME/.cache/busflow/arroyo-target}"
manifest=sql/arroyo/Cargo.toml

# Per member: `cargo fmt --all` would also format the path dependency busflow-core (the main
# workspace's business), and a virtual manifest alone gives cargo fmt no targets.
for member in sql/arroyo/check sql/arroyo/udfs/*/; do
  cargo fmt --manifest-path "${member%/}/Cargo.toml" --check
done
cargo clippy --manifest-path "$manifest" --workspace --all-targets --locked -- -D warnings
cargo test --manifest-path "$manifest" --workspace --locked
