//! GTFS-driven bus fleet simulator with realistic GPS faults, producing RawPosition to Kafka.
#![deny(missing_docs)]
