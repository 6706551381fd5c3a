# syntax=docker/dockerfile:1.7
#
# dkim-relay container image.
#
#   docker build -t dkim-relay .
#   docker run -d --name dkim-relay \
#     -v /srv/dkim-relay/etc:/etc/dkim-relay:ro \
#     -v dkim-relay-spool:/var/spool/dkim-relay \
#     -p 587:587 -p 465:465 -p 127.0.0.1:9187:9187 dkim-relay
#
# The config (/etc/dkim-relay/config.yaml) must set `metrics.address: "0.0.0.0:9187"` for the
# HEALTHCHECK, and `spool_dir: /var/spool/dkim-relay` (the default) so the queue is on the volume.
# BuildKit is required (cache mounts); it is the default builder of current Docker releases.

# Rust >= 1.98 is needed without --ignore-rust-version (mail-parser's rust-version); "1" is the
# current stable release. Pin a version with --build-arg RUST_VERSION=1.99 for reproducible images.
ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=trixie

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# .dockerignore lets in only the crate (Cargo.toml, Cargo.lock, src/, benches/, tests/) and the
# files the runtime stage copies.
COPY . .
# The same command CI runs. --locked: the image gets exactly the dependency versions of Cargo.lock.
# The registry and target directories are cache mounts, so the binary is copied out of target/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/dkim-relay /out/dkim-relay

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim

# ca-certificates: roots for verifying MX/smarthost certificates (delivery.tls: required,
# relay_host). Not version-pinned on purpose: it should follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so that volume ownership and Kubernetes' runAsNonRoot/fsGroup work.
RUN groupadd --system --gid 10001 dkim-relay \
    && useradd --system --uid 10001 --gid dkim-relay --no-create-home \
        --home-dir /var/spool/dkim-relay --shell /usr/sbin/nologin dkim-relay \
    && install -d -o dkim-relay -g dkim-relay -m 0750 /var/spool/dkim-relay /run/dkim-relay \
    && install -d -m 0755 /etc/dkim-relay

COPY --from=build /out/dkim-relay /usr/local/bin/dkim-relay
COPY --chmod=0755 contrib/docker/entrypoint.sh /usr/local/lib/dkim-relay/entrypoint
COPY --chmod=0755 contrib/docker/healthcheck.sh /usr/local/lib/dkim-relay/healthcheck
COPY config/production.yaml /usr/share/doc/dkim-relay/config.example.yaml

# `docker exec dkim-relay mailq` lists the queue (argv[0] dispatch).
RUN ln -s dkim-relay /usr/local/bin/mailq \
    && ln -s dkim-relay /usr/local/bin/sendmail

ENV DKIM_RELAY_CONFIG=/etc/dkim-relay/config.yaml
VOLUME ["/etc/dkim-relay", "/var/spool/dkim-relay"]
# 587 submission (STARTTLS), 465 submissions (implicit TLS), 9187 /metrics /healthz /readyz.
# Binding 465/587 as a non-root user works because Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in a container's network namespace (Kubernetes: see
# contrib/kubernetes/statefulset.yaml).
EXPOSE 587 465 9187
USER 10001:10001

# SIGTERM: stop accepting, let sessions finish, leave the spool consistent. Give it time:
# docker stop --time 60.
STOPSIGNAL SIGTERM
# The slim image has no curl: healthcheck is a bash /dev/tcp HTTP probe of /healthz (bash is
# part of every Debian image), so nothing is installed for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/lib/dkim-relay/healthcheck", "/healthz"]

# The entrypoint runs `dkim-relay check-config` before `serve`: a bad config stops the container
# at once, with the errors (file:line:column) in `docker logs`.
ENTRYPOINT ["/usr/local/lib/dkim-relay/entrypoint"]
CMD ["serve"]
