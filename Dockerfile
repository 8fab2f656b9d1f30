# spindle container image: a static binary on `scratch`, running as nobody.
#
# Two ways to build it; both end in the same runtime image:
#
#   docker build -t spindle .
#       Default target `runtime`: compiles in the `builder` stage
#       (docker.io/library/rust:1-bookworm).
#
#   RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
#     CARGO_PROFILE_RELEASE_STRIP=symbols \
#     cargo build --release --locked --target x86_64-unknown-linux-gnu
#   docker build --target runtime-local -t spindle .
#       Target `runtime-local`: copies the binary built on the host from
#       target/x86_64-unknown-linux-gnu/release/spindle (.dockerignore lets that
#       one file through) and never runs the builder stage (BuildKit and
#       buildah/podman skip stages the target does not need). For machines
#       without access to the base image registry, and for CI, which has the
#       binary already.
#
# Run (graceful stop needs the 10s default stop timeout > graceful_timeout 8s in
# config/docker.toml; see there):
#   docker run -d --name spindle -p 8080:8080 -p 7007:7007 spindle

# --- builder: a static glibc binary -----------------------------------------
# Fully qualified: podman (and docker without the docker.io default) resolves a
# short name only through registries.conf's unqualified-search-registries, which
# is empty on many machines ("short-name did not resolve to an alias").
FROM docker.io/library/rust:1-bookworm AS builder
WORKDIR /build
# Static, so the runtime stage needs no libc, loader or /etc: +crt-static on
# the gnu target links glibc statically. The target is named explicitly so
# RUSTFLAGS does not also apply to build scripts and proc macros (cargo only
# keeps host and target flags apart when --target is given).
# Cargo.toml's release profile keeps line tables (debug = 1) for backtraces and
# profiling on a developer's machine: 22 MB of a 26 MB binary. The image gets
# none of it: the env overrides the profile (cargo reads CARGO_PROFILE_* over
# Cargo.toml), and `strip` below makes sure of it.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# Dependency layer: build every dependency against a dummy crate, so editing
# src/ does not recompile them. If Cargo.toml ever names explicit [[bin]],
# [[bench]] or [[example]] paths, stub them here too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && rm -rf src
# config/spindle.toml is compiled in (include_str!): the embedded default config.
COPY config/spindle.toml ./config/spindle.toml
COPY src ./src
# COPY keeps the context's mtimes, which may be older than the dummy build:
# touch, or cargo would keep the dummy binary as up to date.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && strip -o /spindle target/x86_64-unknown-linux-gnu/release/spindle

# --- runtime-base: everything but the binary --------------------------------
FROM scratch AS runtime-base
COPY config/docker.toml /etc/spindle/spindle.toml
# nobody:nogroup. Numeric, because scratch has no /etc/passwd. Ports are above
# 1024, so no capability is needed either.
USER 65534:65534
# echo (RFC 862), HTTP/1.1
EXPOSE 7007 8080
# SIGTERM is spindle's graceful stop (drain, finish in-flight work, exit 0).
# spindle handles SIGTERM/SIGINT itself, also as PID 1, so no init is needed.
STOPSIGNAL SIGTERM
# GET /healthz on the config's first HTTP listener; exit 0 on 200 within 2s.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/spindle", "healthcheck", "--config", "/etc/spindle/spindle.toml"]
ENTRYPOINT ["/usr/local/bin/spindle"]
CMD ["--config", "/etc/spindle/spindle.toml"]

# --- runtime-local: the binary built on the host -----------------------------
# Build it stripped (the CARGO_PROFILE_RELEASE_* variables above): scratch has no
# `strip` to run here, and an unstripped binary makes a 26 MB image of a 4 MB one.
# .ci/packaging.sh fails if the image grows past 8 MiB.
FROM runtime-base AS runtime-local
COPY target/x86_64-unknown-linux-gnu/release/spindle /usr/local/bin/spindle

# --- runtime (default): the binary from the builder stage -------------------
FROM runtime-base AS runtime
COPY --from=builder /spindle /usr/local/bin/spindle
