# paytool in a container: the reference API (`paytool serve`) by default, any paytool
# command otherwise (the load generators of deploy/k8s/loadtest-segments.yaml use it).
# Build: docker build -t paytool:latest .
# Not built here: these machines reach no image registry (see README, "Deploying").

# ---- build: the release binary, from the locked dependency tree
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
RUN cargo build --release --locked --bin paytool \
    && strip target/release/paytool

# ---- run: a small Debian with the binary, as a user with no privileges
FROM debian:bookworm-slim
# curl for the HEALTHCHECK; ca-certificates for https targets and TLS to PostgreSQL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311* curl=7.88.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/paytool --create-home paytool
COPY --from=build /src/target/release/paytool /usr/local/bin/paytool
COPY profiles /etc/paytool/profiles
USER 10001
WORKDIR /var/lib/paytool
# Listen on every interface inside the container (the orchestrator publishes the port);
# drain 5 s on SIGTERM so a Service or balancer stops sending first.
ENV PAYTOOL_LISTEN=0.0.0.0:8080 \
    PAYTOOL_DATA_DIR=/var/lib/paytool/data \
    PAYTOOL_DRAIN_DELAY=5s
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["paytool"]
CMD ["serve"]
