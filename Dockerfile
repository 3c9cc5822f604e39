# syntax=docker/dockerfile:1
# Build: docker build -t sluice .      Run: docker run -p 8080:8080 -e OPENAI_API_KEY=... sluice
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The store's schema migrations are embedded at compile time (sqlx::migrate!).
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin sluice && strip target/release/sluice

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY policies /etc/sluice/policies
USER sluice
WORKDIR /var/lib/sluice
ENV SLUICE_LISTEN=0.0.0.0:8080 \
    SLUICE_POLICIES=/etc/sluice/policies \
    SLUICE_STORE=sqlite:///var/lib/sluice/sluice.db
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["sluice"]
CMD ["serve"]
