# gatehouse: multi-stage build, small non-root runtime image.
# Build: docker build -t gatehouse .
# Run:   docker run -p 8000:8000 -p 8001:8001 -v gatehouse-data:/data -e OPENROUTER_API_KEY \
#          -e GATEHOUSE_AUTH__MODE=open -e GATEHOUSE_ADMIN__TOKEN=... gatehouse
# (No Docker engine runs on the development machines: this file is not built in CI.)
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
COPY examples examples
COPY tests tests
RUN cargo build --release --locked --bin gatehouse && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY gateway.yaml /app/gateway.yaml
COPY policies /app/policies
# The event store's directory, writable by the non-root user (mount a volume here to keep it).
COPY --from=build --chown=nonroot:nonroot /data /data
ENV GATEHOUSE_PROXY__LISTEN=0.0.0.0:8000 \
    GATEHOUSE_ADMIN__LISTEN=0.0.0.0:8001 \
    GATEHOUSE_STORE__PATH=/data/gatehouse.db
USER nonroot
EXPOSE 8000 8001
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/app/gateway.yaml"]
