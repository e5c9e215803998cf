# syntax=docker/dockerfile:1
# Ferrule in a container: `docker build -t ferrule .`, then
#   docker run -d --name ferrule -p 8080:8080 -p 1883:1883 -v ferrule-data:/data ferrule
# Configuration comes from FERRULE_* environment variables (and $PORT for
# the HTTP port); data lives in the /data volume. docs/DEPLOY.md walks
# through it, backups included.

# --- build: the release binary, from the locked dependencies ---
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep the registry and build directory between image builds;
# the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferrule --bin ferrule \
    && cp target/release/ferrule /ferrule \
    && mkdir /data

# --- run: glibc and libgcc only, no shell, no package manager ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /ferrule /usr/local/bin/ferrule
# The volume's mount point, owned by the image's non-root user (65532),
# so that a fresh named volume starts out writable by it.
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
ENV FERRULE_DATA_DIR=/data
VOLUME ["/data"]
# HTTP (API, console, MQTT over WebSocket; $PORT moves it), MQTT, MQTT over TLS.
EXPOSE 8080 1883 8883
# `ferrule healthcheck` asks this server's /healthz on the configured
# HTTP port (following $PORT), so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ferrule", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ferrule"]
CMD ["serve"]
