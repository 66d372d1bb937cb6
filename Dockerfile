# The operator's container image: a static-enough Rust build on Debian, run on distroless
# as a non-root user (uid 65532, as the chart's securityContext expects).
#
#   docker build -t ghcr.io/maturity-operator/maturity-operator:0.1.0 .
#
# Needs a Docker (or compatible) engine and network access to crates.io; neither exists on
# the development machines this project is built on, so this file is not built by
# `make test` (the chart test runs the operator binary as a local process instead).

# --- build ---
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# jemalloc (the operator's allocator) is built from C with make, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --features otlp \
    && rm -rf src target/release/.fingerprint/maturity-operator-*
COPY src ./src
RUN cargo build --release --locked --features otlp \
    && strip target/release/maturity-operator

# --- run ---
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/maturity-operator /maturity-operator
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["/maturity-operator"]
CMD ["run"]
