#!/usr/bin/env bash
# Dependency policy (deny.toml): licenses, banned and duplicate crates, sources; RustSec advisories
# when a copy of the advisory database is present. Installs cargo-deny once per machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

DENY_VERSION=0.20
if ! cargo deny --version 2>/dev/null | grep -q "cargo-deny $DENY_VERSION"; then
  echo "deny: installing cargo-deny $DENY_VERSION from crates.io (once per machine, a few minutes)"
  cargo install cargo-deny --version "~$DENY_VERSION" --locked --quiet
fi

# cargo deny reads `cargo metadata` for every target platform, which needs crates that a build
# on this platform never downloads (android_system_properties, valuable, ...): fetch them all
# first, from crates.io, so the offline check below does not depend on what the cache holds.
cargo fetch --locked --quiet

# Offline from here: never try to fetch the advisory database.
checks=(licenses bans sources)
db=${CARGO_DENY_DB:-$HOME/.cargo/advisory-dbs}
if compgen -G "$db/*/crates" >/dev/null; then
  checks+=(advisories)
else
  echo "deny: no RustSec advisory database under $db (it comes from github.com/rustsec/advisory-db," \
    "which this machine cannot reach): advisories NOT checked; run 'cargo deny fetch' where it can"
fi
cargo deny --locked --offline check --hide-inclusion-graph "${checks[@]}"
