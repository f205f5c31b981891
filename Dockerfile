# busflow: one image with the `busflow` binary and the bundled Cairns GTFS feed.
#   docker build -t busflow .        (or: docker compose up)
FROM rust:1.95-slim-bookworm AS build
# librdkafka is built from the rdkafka crate's bundled sources (configure + make, no cmake).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin busflow

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin busflow
COPY --from=build /src/target/release/busflow /usr/local/bin/busflow
COPY data/cairns_gtfs.zip /usr/share/busflow/cairns_gtfs.zip
ENV BUSFLOW_GTFS=/usr/share/busflow/cairns_gtfs.zip \
    BUSFLOW_LOG_FORMAT=json
USER busflow
ENTRYPOINT ["busflow"]
CMD ["--help"]
