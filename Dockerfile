# syntax=docker/dockerfile:1.7
#
# hybrid-online-store image: hos-operator and hos-proxy in one small,
# non-root runtime image.
#
#   docker build -t ghcr.io/hybrid-online-store/hybrid-online-store:0.1.0 .
#
# The entrypoint is hos-proxy: the proxy Deployments the operator creates
# (spec.proxy.enabled) pass only arguments (`serve --routing-table ...`).
# The Helm chart runs the operator with command /usr/local/bin/hos-operator.
# Needs BuildKit (the default builder of Docker 23+) for the cache mounts.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ---------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# Everything the workspace needs (see .dockerignore): the manifests, the lock
# file and the crates. Feast's protos are compiled by protox (pure Rust), the
# bundled SQLite and ring by the image's C compiler: no system packages needed.
COPY . .

# Cache the registry and the target dir across builds; copy the binaries out
# of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p operator -p proxy \
 && mkdir -p /out \
 && cp target/release/hos-operator target/release/hos-proxy /out/ \
 && strip /out/hos-operator /out/hos-proxy

# ---- runtime -------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and tzdata; no shell, no
# package manager. Debian 12, like the builder, so the glibc versions match.
# The :nonroot variant's default user is 65532:65532 (the chart's runAsUser).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hybrid-online-store" \
      org.opencontainers.image.description="hos-operator and hos-proxy: one Feast online store endpoint, many backends" \
      org.opencontainers.image.source="https://github.com/hybrid-online-store/hybrid-online-store" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder --chown=0:0 --chmod=0755 /out/hos-operator /out/hos-proxy /usr/local/bin/

USER 65532:65532
WORKDIR /home/nonroot

# 8080: hos-operator's /healthz, /readyz, /metrics (--metrics-addr);
# 6566: hos-proxy's Feast API (pass --listen 0.0.0.0:6566 in a Pod).
EXPOSE 8080 6566

ENTRYPOINT ["/usr/local/bin/hos-proxy"]
CMD ["--help"]
