# syntax=docker/dockerfile:1
# Images for the issuer and the sidecar, from one build:
#   docker build --target issuer  -t devmentor/issuer:0.1.0 .
#   docker build --target sidecar -t devmentor/sidecar:0.1.0 .
# The runtime images are distroless (no shell, no package manager) and run
# as uid 65532, the uid the Kubernetes manifests expect. ./scripts/test.sh
# cannot build images (no Docker engine on its machines); it checks this
# file's structure and that the binaries need no library the runtime image
# lacks (scripts/check-deploy.sh).

# Bookworm, so the binaries link against the glibc and OpenSSL 3 that the
# debian12 runtime images carry. The version is the workspace's rust-version.
FROM docker.io/library/rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p issuer -p sidecar --bin issuer --bin sidecar \
 && install -D -m 0755 target/release/issuer /out/issuer \
 && install -D -m 0755 target/release/sidecar /out/sidecar

# glibc, libgcc, OpenSSL 3 and CA certificates; nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot AS issuer
COPY --from=build /out/issuer /usr/local/bin/issuer
USER 65532:65532
EXPOSE 3002
ENTRYPOINT ["/usr/local/bin/issuer"]
CMD ["serve"]

FROM gcr.io/distroless/cc-debian12:nonroot AS sidecar
COPY --from=build /out/sidecar /usr/local/bin/sidecar
USER 65532:65532
EXPOSE 9001 9002
ENTRYPOINT ["/usr/local/bin/sidecar"]
CMD ["serve"]
