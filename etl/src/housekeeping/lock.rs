//! The advisory locks of the scheduled passes: one pass of each job at a time over every
//! replica. Session-level, so a process that dies releases its lock with its connection. The
//! names are hashed into the lock keys (`hashtextextended(name, 0)`): they must not change.

/// The lake's export and raw retention (also taken by `etl export`).
pub const LAKE: &str = "etl lake";
/// The retention of the `done/`, `failed/` and landing folders: its own lock, so a long lake
/// export does not hold it up.
pub const FOLDERS: &str = "etl folder retention";

/// Waits for the session-level advisory lock called `name` (one scheduled job at a time over
/// every replica).
pub async fn wait(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&name])
        .await
        .map(drop)
}

/// Takes the session-level advisory lock called `name` if no other session holds it: false
/// means another replica runs that job now, and this one skips its turn.
pub async fn take(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&name],
        )
        .await?
        .try_get(0)
}
