//! Stateful timely-dataflow stage: validate, deduplicate, snap, enrich and H3-index raw positions.
#![deny(missing_docs)]
