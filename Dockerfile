# Nimbus: one image, three roles (`nimbus api`, `nimbus worker`, `nimbus up`).
# Multi-stage: the builder has the Rust toolchain, the wasm32-wasip1 target
# and the C toolchain the QuickJS shim is compiled with; the runtime image
# has the binary only.
FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang-19 llvm-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p nimbus-cli

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 nimbus \
 && install -d -m 0700 -o nimbus -g nimbus /var/cache/nimbus
COPY --from=builder /src/target/release/nimbus /usr/local/bin/nimbus
USER nimbus
EXPOSE 8080
ENTRYPOINT ["nimbus"]
CMD ["--help"]
