# syntax=docker/dockerfile:1
# gatehouse: multi-stage build, small non-root runtime image.
# Build: docker build -t gatehouse .
# Run:   docker run -p 8000:8000 -p 8001:8001 -v gatehouse-data:/data -e OPENROUTER_API_KEY \
#          -e GATEHOUSE_AUTH__MODE=open -e GATEHOUSE_ADMIN__TOKEN=... gatehouse
# Config: /app/gateway.yaml (mount your own over it, or pass --config), overridden by GATEHOUSE_*
# variables (`__` nests: GATEHOUSE_PROXY__LISTEN). More in deploy/README.md.
# (No Docker engine runs on the development machines: this file is not built in CI.)
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
COPY examples examples
COPY tests tests
# BuildKit cache mounts keep the crates.io downloads and the target directory between builds;
# the binary is copied out of the cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gatehouse \
    && cp target/release/gatehouse /gatehouse \
    && mkdir -p /data

# distroless/cc: glibc, libgcc, CA certificates; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=build /gatehouse /usr/local/bin/gatehouse
COPY gateway.yaml /app/gateway.yaml
COPY policies /app/policies
# The event store's directory, writable by the non-root user (mount a volume here to keep it).
COPY --from=build --chown=65532:65532 /data /data
ENV GATEHOUSE_PROXY__LISTEN=0.0.0.0:8000 \
    GATEHOUSE_ADMIN__LISTEN=0.0.0.0:8001 \
    GATEHOUSE_STORE__PATH=/data/gatehouse.db
# Numeric (distroless's `nonroot`), so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8000 8001
# The image has no shell or HTTP client: `gatehouse health` asks the admin listener's /health
# itself (same config and env as the server). Kubernetes ignores this and probes over HTTP.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gatehouse", "health", "--config", "/app/gateway.yaml"]
# gatehouse drains in-flight requests and streams on SIGTERM (proxy.grace_period_secs).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/app/gateway.yaml"]
