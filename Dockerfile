# syntax=docker/dockerfile:1

# Build stage. Dependencies are cached with BuildKit cache mounts (the cargo
# registry and the target directory persist between builds) rather than with
# a separate layer: the workspace manifests declare benches and tests whose
# files cargo requires when it loads the workspace, so a manifests-only layer
# would need stub files for every member.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p cairn-server \
 && install -D -m 0755 target/release/cairn /out/cairn

# Runtime stage. curl is installed for the health check in docker-compose.yml.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 cairn \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/cairn --no-create-home \
        --no-log-init --shell /usr/sbin/nologin cairn \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/cairn
COPY --from=build /out/cairn /usr/local/bin/cairn

# The data directory holds the local signing keys (operator.key, note.key,
# unless they are in KMS) and the content blobs (blobs/); with the default database URL it also holds the SQLite
# database. A new named volume mounted here takes this directory's owner.
ENV CAIRN_LISTEN=0.0.0.0:8080 \
    CAIRN_DATA_DIR=/var/lib/cairn
VOLUME ["/var/lib/cairn"]
USER 10001:10001
WORKDIR /var/lib/cairn
EXPOSE 8080

# No HEALTHCHECK here: the port depends on CAIRN_LISTEN; docker-compose.yml
# checks http://127.0.0.1:8080/readyz with curl.
ENTRYPOINT ["cairn"]
CMD ["serve"]
