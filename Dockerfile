# hearback: multi-stage build, small non-root runtime image.
#   docker build -t hearback .
#   docker run -p 8080:8080 -v hearback-data:/var/lib/hearback hearback
# PostgreSQL: -e HEARBACK_DATABASE_URL=postgres://… and run `hearback migrate` once per release.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin hearback

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hearback --create-home hearback
COPY --from=build /src/target/release/hearback /usr/local/bin/hearback
COPY hearback.example.toml /etc/hearback/hearback.toml
COPY flows /etc/hearback/flows

ENV HEARBACK_CONFIG=/etc/hearback/hearback.toml \
    HEARBACK_DATABASE_URL=sqlite:///var/lib/hearback/hearback.db \
    HEARBACK_SERVER__LISTEN=0.0.0.0:8080 \
    HEARBACK_FLOWS__DIR=/etc/hearback/flows \
    HEARBACK_LOG__FORMAT=json

USER hearback
WORKDIR /var/lib/hearback
VOLUME ["/var/lib/hearback"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["hearback"]
CMD ["serve"]
