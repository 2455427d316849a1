# syntax=docker/dockerfile:1.7
# One image for the whole platform: /usr/local/bin/{gateway,auth,users,chat,bots,operator}.
# Every pod names its binary as its command (the operator sets them; the chart
# runs /usr/local/bin/operator).
#
#   docker build -t ghcr.io/chat-platform/chat-platform:0.1.0 .
#
# Needs BuildKit (Docker 23+ uses it by default): the cargo registry and the
# target directory are cache mounts, so rebuilds compile only what changed.
# protoc is not needed: crates/proto uses the vendored one (protoc-bin-vendored).
# TLS is rustls everywhere, so the runtime needs glibc and CA certificates
# but no OpenSSL: distroless/cc has exactly that.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# sqlx checks its queries against the committed .sqlx/ data, not a database
# (also set in .cargo/config.toml).
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true
COPY . .
# The binaries are copied out of the cache-mounted target directory in the
# same step (a cache mount is not part of the image).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && for bin in gateway auth users chat bots operator; do \
         install -m 0755 "target/release/$bin" "/out/$bin"; \
       done

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="chat-platform" \
      org.opencontainers.image.description="ChatBot platform services (gateway, auth, users, chat, bots) and its Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/chat-platform/chat-platform" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ /usr/local/bin/
# distroless "nonroot": uid/gid 65532, no shell.
USER 65532:65532
# Admin port of every binary (/healthz, /readyz, /metrics); the gateway also
# serves HTTP on 8080, the gRPC services 50051-50054.
EXPOSE 9090 8080 50051 50052 50053 50054
CMD ["/usr/local/bin/operator", "run"]
