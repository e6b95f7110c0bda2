//! What a database error means for the events that met it: classified by SQLSTATE into
//! "not about the rows" (retry, blame no event), "refused by the rows" (isolate and reject the
//! offending events) and "unknown" (retry, but never for ever).

use deadpool_postgres::PoolError;

use super::DbError;
// The refusal is part of a rejection's reason, so it lives with the reasons; the loader only
// fills it in.
pub use crate::rejection::Refusal;

/// The class of a failed attempt to apply a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Hits every event alike: the server is unreachable, shutting down or out of resources, a
    /// serialization failure or deadlock, a read-only transaction during a failover, a statement
    /// timeout, a permission revoked or a table changed by a DBA. Retried with backoff for as
    /// long as it lasts; no event is ever rejected for it.
    Transient(Transient),
    /// Can only come from the rows themselves: data exceptions (class 22), integrity constraint
    /// violations (23), `WITH CHECK OPTION` violations (44). The offending events are isolated
    /// and rejected; the rest of the batch commits.
    Refused(Refusal),
    /// In neither list (a trigger's `RAISE`, a program limit, …): retried like a transient
    /// error, but an event that keeps failing alone with it is finally rejected.
    Unknown(Refusal),
}

/// Why the database could not take a batch, for the log and `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transient {
    /// One key per cause (the SQLSTATE, or `connection`), so it is logged once per cause.
    pub key: String,
    /// A sentence for the operator.
    pub cause: String,
    /// True when the server answered (it is up, but refused for a reason not about the rows).
    pub server_answered: bool,
}

/// SQLSTATE classes that only the rows can cause.
const ROW_CLASSES: &[&str] = &["22", "23", "44"];

/// SQLSTATE classes that are about the connection, the server, the transaction or the schema,
/// never about one row: connection exception (08), invalid transaction state (25, e.g. 25006
/// read-only during a failover), authorization (28), invalid catalog (3D), transaction rollback
/// (40: serialization failure, deadlock), syntax or access rule (42: 42501 permission denied,
/// 42703/42P01 a column or table changed by a DBA), feature not supported (0A), invalid
/// statement name (26: a prepared statement gone with its connection), insufficient resources
/// (53), object not in prerequisite state (55: lock not available), operator intervention (57:
/// 57014 statement timeout or cancel, 57P01 admin shutdown), system error (58), configuration
/// file error (F0), internal error (XX).
const TRANSIENT_CLASSES: &[&str] = &[
    "08", "25", "28", "3D", "40", "42", "0A", "26", "53", "55", "57", "58", "F0", "XX",
];

impl Fault {
    pub fn of(error: &DbError) -> Fault {
        // Bounded like an unknown error: a bug must not stall the pipeline for ever.
        if let DbError::Internal(message) = error {
            return Fault::Unknown(Refusal {
                sqlstate: "XX000".into(),
                table: None,
                constraint: None,
                column: None,
                message: message.clone(),
            });
        }
        let postgres = match error {
            DbError::Postgres(e) => Some(e),
            DbError::Pool(PoolError::Backend(e)) => Some(e),
            _ => None,
        };
        let Some(db) = postgres.and_then(|e| e.as_db_error()) else {
            return Fault::Transient(Transient {
                key: "connection".into(),
                cause: format!("cannot reach the database: {error}"),
                server_answered: false,
            });
        };
        let sqlstate = db.code().code();
        let class = &sqlstate[..sqlstate.len().min(2)];
        let mut message = db.message().to_owned();
        if let Some(detail) = db.detail() {
            message.push_str(" (");
            message.push_str(detail);
            message.push(')');
        }
        if TRANSIENT_CLASSES.contains(&class) {
            return Fault::Transient(Transient {
                key: sqlstate.to_owned(),
                cause: format!(
                    "the database refused the batch for a reason that is not about its events \
                     (SQLSTATE {sqlstate}: {message})"
                ),
                server_answered: true,
            });
        }
        let refusal = Refusal {
            sqlstate: sqlstate.to_owned(),
            table: db.table().map(str::to_owned),
            constraint: db.constraint().map(str::to_owned),
            column: db.column().map(str::to_owned),
            message: crate::rejection::shortened(message),
        };
        if ROW_CLASSES.contains(&class) {
            Fault::Refused(refusal)
        } else {
            Fault::Unknown(refusal)
        }
    }
}

/// The database's current trouble, shared by the workers and `/readyz`: set by a transient
/// fault, cleared by the next commit. Each cause is logged once when it starts and once when it
/// ends, not on every retry.
#[derive(Debug, Default)]
pub struct Health {
    current: std::sync::Mutex<Option<Transient>>,
}

impl Health {
    /// Records a transient fault; true if it is a new cause (worth one log line).
    pub fn trouble(&self, fault: &Transient) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let new = current.as_ref().is_none_or(|c| c.key != fault.key);
        *current = Some(fault.clone());
        new
    }

    /// A batch committed: the trouble (if any) is over. Returns what it was.
    pub fn recovered(&self) -> Option<Transient> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Why batches cannot commit right now, if they cannot.
    pub fn trouble_now(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.cause.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_what_the_issue_names() {
        for state in [
            "25006", "57014", "42501", "42703", "42P01", "40001", "40P01", "53300",
        ] {
            assert!(TRANSIENT_CLASSES.contains(&&state[..2]), "{state}");
        }
        for state in ["22003", "23514", "23505", "22P02"] {
            assert!(ROW_CLASSES.contains(&&state[..2]), "{state}");
        }
        for state in ["P0001", "54000"] {
            assert!(!ROW_CLASSES.contains(&&state[..2]));
            assert!(!TRANSIENT_CLASSES.contains(&&state[..2]));
        }
    }

    #[test]
    fn a_pool_timeout_is_transient_and_says_the_server_did_not_answer() {
        let error = DbError::Pool(PoolError::Closed);
        match Fault::of(&error) {
            Fault::Transient(t) => assert!(!t.server_answered),
            other => panic!("{other:?}"),
        }
    }
}
