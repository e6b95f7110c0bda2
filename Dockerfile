# One image for every service of docker-compose.yml: the etl daemon and the users, cards and
# loadgen producers, plus the JSON schemas the daemon loads at start-up (ETL_SCHEMAS_DIR).

# ---- build: the release binaries --------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds; the binaries are
# copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p etl -p services \
    && mkdir /out \
    && cp target/release/etl target/release/users target/release/cards target/release/loadgen /out/

# ---- runtime: the binaries and the schemas, nothing else ----------------------------------------
FROM debian:bookworm-slim
COPY --from=build /out/ /usr/local/bin/
COPY schemas/ /app/schemas/
WORKDIR /app
ENV ETL_SCHEMAS_DIR=/app/schemas \
    ETL_DATA_DIR=/data
CMD ["etl", "run"]
