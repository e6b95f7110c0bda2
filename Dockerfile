# One image for every service of docker-compose.yml: the etl daemon and the users, cards and
# loadgen producers, plus the JSON schemas the daemon loads at start-up (ETL_SCHEMAS_DIR; compose
# mounts the repository's schemas/ over them).
#
# Needs BuildKit (RUN --mount, and only the stages the runtime needs are built): `docker build`
# with the buildx plugin, `docker compose build`, or DOCKER_BUILDKIT=1 with a client older than 23.
#
# Build arguments (docker-compose.yml passes the same names from the environment or .env):
#   BUILD_IMAGE    image with a Rust toolchain for the in-Docker build  (default rust:1-bookworm)
#   RUNTIME_IMAGE  Debian bookworm (glibc) image the binaries run on    (default debian:bookworm-slim)
#   BINARIES       where the binaries come from:
#                    build     compiled here, in BUILD_IMAGE (the default)
#                    prebuilt  taken as they are from PREBUILT, e.g. a site's CI output:
#                      docker build --build-arg BINARIES=prebuilt --build-context prebuilt=DIR .
#                    where DIR holds etl, users, cards and loadgen built for Debian bookworm
#                    (cargo build --release -p etl -p services; DIR=target/release). A builder
#                    without named build contexts can be given an image holding the four
#                    binaries at / instead: --build-arg PREBUILT=that-image.
#   PREBUILT       the named build context or image read when BINARIES=prebuilt (default prebuilt)

ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARIES=build
ARG PREBUILT=prebuilt

# ---- build: the release binaries --------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binaries are
# copied out because a cache mount is not part of the image. No `--features`: the `failpoints`
# feature (the tests' fault points, etl/src/faults.rs) stays off, so the image has no fault code.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p etl -p services \
    && mkdir /out \
    && cp target/release/etl target/release/users target/release/cards target/release/loadgen /out/

# ---- the binaries, from one of the two sources; BuildKit builds only the one selected ----------
FROM scratch AS binaries-build
COPY --from=build /out/ /

FROM ${PREBUILT} AS binaries-prebuilt

FROM binaries-${BINARIES} AS binaries

# ---- runtime: the binaries, the schemas, the type declarations and the migrations ------------------
FROM ${RUNTIME_IMAGE}
COPY --from=binaries /etl /users /cards /loadgen /usr/local/bin/
COPY schemas/ /app/schemas/
COPY types/ /app/types/
COPY db/migrations/ /app/db/migrations/
WORKDIR /app
ENV ETL_SCHEMAS_DIR=/app/schemas \
    ETL_TYPES_DIR=/app/types \
    ETL_MIGRATIONS_DIR=/app/db/migrations \
    ETL_DATA_DIR=/data
CMD ["etl", "run"]
