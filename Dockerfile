# syntax=docker/dockerfile:1
# Both services in one image: `telemetry-collector`, `renderer` and the demo's
# `demo-traffic` storefront player. docker-compose.yml picks the binary per service.
#
#   docker build -t render-telemetry .
#   docker run --rm render-telemetry telemetry-collector --help

# ---- build ------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds (BuildKit); the
# binaries are copied out because a cache mount is not part of the layer.
# protox compiles the .proto in Rust and rustls needs no OpenSSL: no extra packages.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p telemetry-collector -p renderer --bins \
 && mkdir -p /out \
 && cp target/release/telemetry-collector target/release/renderer \
       target/release/demo-traffic /out/

# ---- run --------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to NATS and to the Gemini API (rustls reads the system roots).
# curl: the compose health checks call /readyz with it (the binaries carry no HTTP
# client for that; ~1 MiB is cheaper than a health-check mode in each binary).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid, so volume permissions are predictable across rebuilds.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /data --shell /usr/sbin/nologin app \
 && mkdir -p /data/images \
 && chown -R app:app /data
COPY --from=builder /out/ /usr/local/bin/
USER app
WORKDIR /data
# No listen addresses here: the binaries default to loopback, and in a container each
# service must be told to listen on 0.0.0.0 (docker-compose.yml does, and its test
# checks the addresses against the published ports and health checks).
EXPOSE 8080 8081
CMD ["telemetry-collector", "--help"]
