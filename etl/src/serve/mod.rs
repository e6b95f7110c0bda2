//! `etl serve`: the read API over the warehouse — start-up, listener, API token, its own
//! connection pool and the cap on requests in flight.
//!
//! A separate process rather than routes on the daemon's HTTP server: reads get their own
//! runtime, threads and pool, so a burst of lookups can never take a worker thread or a
//! connection the ingestion needs, and the API can be scaled, restarted or pointed at a
//! read-only replica (`read_database_url`) on its own.

pub mod openapi;
pub mod query;
pub mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::load::connect::Target;
use crate::load::DbError;

use self::query::Table;
use self::routes::{Api, ApiError};

/// Why `etl serve` did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting the operator must fix (exit status 2): the sentence says which.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("cannot serve on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// The API token, compared in constant time; its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// The token of `config`: the file `api_token_file` names (without its final newline), or
    /// `api_token` (`ETL_API_TOKEN`); none when neither is set or the value is empty.
    pub fn from_config(config: &Config) -> Result<Option<Token>, ServeError> {
        let text = match (&config.serve.api_token_file, &config.serve.api_token) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ServeError::Refused(format!(
                        "cannot read api_token_file {}: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            (None, Some(token)) => token.clone(),
            (None, None) => String::new(),
        };
        Ok((!text.is_empty()).then(|| Token(text.into_bytes().into())))
    }

    /// Whether an `Authorization` header value carries this token.
    fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        bool::from(given.ct_eq(&self.0))
    }
}

/// What every request passes through before its handler.
struct Gate {
    /// `None` on a loopback-only listener without a configured token.
    token: Option<Token>,
    /// One permit per request in flight; none left means 503 at once, never a queue (a queue
    /// would only turn an overload into timeouts for everyone).
    in_flight: Arc<Semaphore>,
}

async fn admit(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    // The document describes the API, not its data: readable without the token.
    if let Some(token) = &gate.token {
        if request.uri().path() != "/api/v1/openapi.json" {
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if !token.admits(authorization) {
                return ApiError::Unauthorized.into_response();
            }
        }
    }
    let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
        return ApiError::Unavailable(
            "too many requests in flight (serve_max_in_flight); retry later".into(),
        )
        .into_response();
    };
    next.run(request).await
}

/// The read API's pool: `read_database_url` (else the warehouse's URL), `serve_pool_size`
/// connections, each with `statement_timeout` and read-only transactions set as start-up
/// options (no extra round trip per connection or per request).
fn pool(config: &Config) -> Result<Pool, DbError> {
    let mut target = match &config.serve.database_url {
        Some(url) => Target::parse(url)?,
        None => Target::from_config(config)?,
    };
    let options = format!(
        "{} -c statement_timeout={} -c default_transaction_read_only=on",
        target.pg.get_options().unwrap_or_default(),
        config.serve.statement_timeout_ms
    );
    target.pg.options(options.trim_start());
    target.pg.application_name("etl serve");
    let manager = Manager::from_config(
        target.pg,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // A request waits this long at most for a connection, then answers 503.
    let wait = Duration::from_millis(config.serve.statement_timeout_ms.max(1000) * 5);
    Pool::builder(manager)
        .max_size(config.serve.pool_size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(DbError::Build)
}

/// Serves until `stop`: checks the token rule, binds, reads the tables' shapes, builds the
/// document, then answers.
pub async fn run(
    config: &Config,
    listen: Option<String>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let catalog = Catalog::load(config)?;
    let token = Token::from_config(config)?;
    let addr = listen.unwrap_or_else(|| config.serve.addr.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: addr.clone(),
        source,
    })?;
    if !local.ip().is_loopback() && token.is_none() {
        return Err(ServeError::Refused(format!(
            "the read API serves personal data and {local} is not a loopback address: set an API \
             token (api_token_file, or the ETL_API_TOKEN environment variable), or listen on \
             127.0.0.1"
        )));
    }

    let pool = pool(config)?;
    let client = pool.get().await.map_err(DbError::from)?;
    let problems = crate::load::upsert::check(&**client, catalog.iter())
        .await
        .map_err(DbError::from)?;
    if !problems.is_empty() {
        return Err(DbError::Tables(problems).into());
    }
    let mut tables = HashMap::new();
    for kind in catalog.iter() {
        let described = query::describe(&**client, kind)
            .await
            .map_err(DbError::from)?;
        tables.insert(kind.name().to_owned(), Table::new(kind, &described));
    }
    drop(client);
    let mut ordered: Vec<&Table> = tables.values().collect();
    ordered.sort_by(|a, b| a.name().cmp(b.name()));
    let document = openapi::document(&ordered, token.is_some());
    let openapi = document
        .to_json()
        .map_err(|e| ServeError::Refused(format!("cannot write the OpenAPI document: {e}")))?;

    let api = Arc::new(Api {
        tables,
        pool,
        openapi,
        lake_events: config.lake_dir().join("events").display().to_string(),
    });
    let gate = Arc::new(Gate {
        token: token.clone(),
        in_flight: Arc::new(Semaphore::new(config.serve.max_in_flight)),
    });
    let app = routes::router(api)
        .layer(axum::middleware::from_fn_with_state(gate, admit))
        .layer(axum::middleware::map_response(routes::json_errors));
    tracing::info!(
        addr = %local,
        types = %catalog.names(),
        token = token.is_some(),
        pool = config.serve.pool_size,
        max_in_flight = config.serve.max_in_flight,
        statement_timeout_ms = config.serve.statement_timeout_ms,
        "serving the read API on /api/v1 (document: /api/v1/openapi.json)"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    Ok(())
}
