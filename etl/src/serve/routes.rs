//! The read API's handlers: a row by key, a keyset list filtered on indexed columns, an
//! entity's raw history, and the OpenAPI document. Every answer is JSON; bad input is a 400 that
//! names the parameter, never a 500.

use std::collections::HashMap;
use std::num::IntErrorKind;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDateTime;
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::query::{
    rfc3339, Shape, Table, Version, DEFAULT_LIMIT, HISTORY_MAX, HISTORY_SQL, MAX_LIMIT,
};

/// What every handler shares.
pub struct Api {
    /// The served types, by their one name (the URL's `<type>`).
    pub tables: HashMap<String, Table>,
    /// The read API's own pool: ingestion's connections are never taken.
    pub pool: Pool,
    /// The OpenAPI document, serialized once at start-up.
    pub openapi: String,
    /// Where the lake keeps the raw events retired from the warehouse (`<lake_dir>/events/`).
    pub lake_events: String,
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/{type}", get(list))
        .route("/api/v1/{type}/{id}", get(row))
        .route("/api/v1/{type}/{id}/history", get(history))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint (see /api/v1/openapi.json)".into())
        })
        .with_state(api)
}

/// The last layer of the read API: an error answer that is not JSON yet (axum's own 405 for a
/// method other than GET, with an empty body, or a rejection's plain text) gets the same
/// `{"error": code, "message": sentence}` body as [`ApiError`]'s, its status and headers (`Allow`)
/// kept. So every error a client sees is JSON, whichever layer produced it.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("GET");
        format!("this endpoint answers {allowed} only (see /api/v1/openapi.json)")
    } else if text.is_empty() {
        reason.to_owned()
    } else {
        text
    };
    let body = json!({ "error": code, "message": message }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// An answer other than 200, as `{"error": code, "message": sentence}`.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized,
    NotFound(String),
    Unavailable(String),
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs its token: Authorization: Bearer <token>".to_owned(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error (logged by the server)".to_owned(),
            ),
        };
        let mut response =
            (status, Json(json!({ "error": code, "message": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> ApiError {
        tracing::warn!(error = %crate::load::error::causes(&error), "read API: no database connection");
        ApiError::Unavailable("the warehouse is unavailable; retry later".into())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> ApiError {
        let Some(db) = error.as_db_error() else {
            if error.is_closed()
                || std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>())
            {
                // The connection itself failed (closed, reset): the server is going or gone.
                tracing::warn!(error = %crate::load::error::causes(&error), "read API: database connection lost");
                return ApiError::Unavailable("the warehouse is unavailable; retry later".into());
            }
            // Anything else (a column whose type does not decode as the table said at start-up)
            // is ours, and permanent: a 500 that says so in the log, not a 503 to retry for ever.
            tracing::error!(error = %crate::load::error::causes(&error), "read API: a read failed");
            return ApiError::Internal;
        };
        let code = db.code().code();
        if code.starts_with("22") {
            // A data exception: a filter value the column's type cannot hold.
            return ApiError::BadRequest(format!("a parameter's value: {}", db.message()));
        }
        if code == "57014" {
            return ApiError::Unavailable(
                "the read took longer than the statement timeout; retry later".into(),
            );
        }
        // 40: a serialization failure or a standby's "conflict with recovery" (a read replica
        // behind `read_database_url`), transient like the classes after it.
        if ["08", "40", "53", "57", "58"].contains(&&code[..2]) {
            tracing::warn!(
                code,
                error = db.message(),
                "read API: the warehouse refused a read"
            );
            return ApiError::Unavailable("the warehouse is unavailable; retry later".into());
        }
        tracing::error!(code, error = db.message(), "read API: a read failed");
        ApiError::Internal
    }
}

type Answer = Result<Response, ApiError>;

async fn openapi(State(api): State<Arc<Api>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        api.openapi.clone(),
    )
        .into_response()
}

/// The served type called `name`, or a 404 naming the declared ones.
fn table<'a>(api: &'a Api, name: &str) -> Result<&'a Table, ApiError> {
    api.tables.get(name).ok_or_else(|| {
        let mut names: Vec<&str> = api.tables.keys().map(String::as_str).collect();
        names.sort_unstable();
        ApiError::NotFound(format!(
            "no event type is called {name:?} (declared: {})",
            names.join(", ")
        ))
    })
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::BadRequest(format!("the path: {}", rejection.body_text()))
}

/// `/<type>/{id}…`: the type's name, its table and the entity's key, or the 404/400 that says
/// which part is wrong.
fn entity(
    api: &Api,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, &Table, i64), ApiError> {
    let Path((name, id)) = path.map_err(path_error)?;
    let table = table(api, &name)?;
    let id = parse_id(&id)?;
    Ok((name, table, id))
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "the id {text:?} is not an integer (a 64-bit entity key)"
        ))
    })
}

async fn row(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Answer {
    let (name, table, id) = entity(&api, path)?;
    let client = api.pool.get().await?;
    let statement = client.prepare_cached(&table.point_sql).await?;
    match client.query_opt(&statement, &[&id]).await? {
        Some(row) => Ok(Json(Value::Object(table.row_json(&row)?)).into_response()),
        None => Err(ApiError::NotFound(format!("no {name} has id {id}"))),
    }
}

async fn list(
    State(api): State<Arc<Api>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Answer {
    let Path(name) = path.map_err(path_error)?;
    let table = table(&api, &name)?;
    let Query(pairs) =
        query.map_err(|r| ApiError::BadRequest(format!("the query string: {}", r.body_text())))?;
    let mut after: Option<i64> = None;
    let mut limit: Option<i64> = None;
    let mut filters: Vec<(usize, String)> = Vec::new();
    for (key, value) in pairs {
        let twice = || ApiError::BadRequest(format!("the parameter {key} is given twice"));
        match key.as_str() {
            "after" => {
                if after.is_some() {
                    return Err(twice());
                }
                after = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "after={value:?} is not an integer (the previous page's next_after)"
                    ))
                })?);
            }
            "limit" => {
                if limit.is_some() {
                    return Err(twice());
                }
                limit = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit={value:?} is not an integer from 1 to {MAX_LIMIT}"
                            ))
                        })?,
                );
            }
            _ => {
                let Some(field) = table.filter(&key) else {
                    let filterable: Vec<&str> = table
                        .filters
                        .iter()
                        .map(|&i| table.fields[i].name.as_str())
                        .collect();
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {key:?}: a {name} list filters on {} (its indexed \
                         columns) and takes after and limit",
                        if filterable.is_empty() {
                            "nothing".to_owned()
                        } else {
                            filterable.join(", ")
                        }
                    )));
                };
                if filters.iter().any(|(f, _)| *f == field) {
                    return Err(twice());
                }
                // Checked here, not left to the server's cast: once a statement's plan is
                // generic the cast runs per row, so over an empty table a value the column
                // cannot hold would be answered with an empty page instead of a 400.
                let refused = match table.fields[field].shape {
                    Shape::Int8 => value.parse::<i64>().err(),
                    Shape::Int4 => value.parse::<i32>().err(),
                    _ => None,
                };
                if let Some(error) = refused {
                    let column = &table.fields[field].sql_type;
                    let what = match error.kind() {
                        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "out of range for",
                        _ => "not an integer, as is",
                    };
                    return Err(ApiError::BadRequest(format!(
                        "{key}={value:?} is {what} the column {key} ({column})"
                    )));
                }
                filters.push((field, value));
            }
        }
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    // A text can hold no NUL character: nothing equals such a value.
    if filters
        .iter()
        .any(|(f, v)| v.contains('\0') && table.fields[*f].shape == Shape::Text)
    {
        return Ok(Json(json!({ "items": [], "next_after": null })).into_response());
    }
    let fields: Vec<usize> = filters.iter().map(|(f, _)| *f).collect();
    let sql = table.list_sql(&fields, after.is_some());
    // One more row than asked: whether there is a next page.
    let fetch = limit + 1;
    let mut params: Vec<&(dyn ToSql + Sync)> = filters
        .iter()
        .map(|(_, v)| v as &(dyn ToSql + Sync))
        .collect();
    if let Some(after) = &after {
        params.push(after);
    }
    params.push(&fetch);
    let client = api.pool.get().await?;
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &params).await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    let next_after = match (more, page.last()) {
        (true, Some(last)) => table.key_of(last)?,
        _ => None,
    };
    let items = page
        .iter()
        .map(|row| table.row_json(row).map(Value::Object))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "items": items, "next_after": next_after })).into_response())
}

async fn history(
    State(api): State<Arc<Api>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Answer {
    let (name, table, id) = entity(&api, path)?;
    let client = api.pool.get().await?;
    let (versions_sql, meta_sql) = tokio::try_join!(
        client.prepare_cached(HISTORY_SQL),
        client.prepare_cached(&table.history_meta_sql)
    )?;
    let params: [&(dyn ToSql + Sync); 2] = [&name, &id];
    let bound = HISTORY_MAX + 1;
    let versions_params: [&(dyn ToSql + Sync); 3] = [&name, &id, &bound];
    let (mut rows, meta) = tokio::try_join!(
        client.query(&versions_sql, &versions_params),
        client.query_one(&meta_sql, &params)
    )?;
    // Rows come newest first: past the bound, the oldest one is dropped.
    let truncated = rows.len() as i64 > HISTORY_MAX;
    rows.truncate(HISTORY_MAX as usize);
    let retired: i64 = meta.try_get(0)?;
    let forgotten_through: Option<NaiveDateTime> = meta.try_get(1)?;
    let row_exists: bool = meta.try_get(2)?;
    if rows.is_empty() && retired == 0 && !row_exists {
        return Err(ApiError::NotFound(format!(
            "no {name} has id {id}, now or in the raw zone"
        )));
    }
    let versions = rows
        .iter()
        .map(|r| {
            Ok(Version {
                event_id: r.try_get::<_, Uuid>(0)?,
                event_at: r.try_get(1)?,
                payload: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let versions: Vec<Value> = table
        .version_order(versions)
        .into_iter()
        .map(|v| {
            json!({
                "event_id": v.event_id.to_string(),
                "event_at": rfc3339(v.event_at),
                "payload": v.payload,
            })
        })
        .collect();
    let note = if truncated {
        Some(format!(
            "only the newest {HISTORY_MAX} versions are answered; older ones are in the raw \
             zone (the events table) and the lake ({})",
            api.lake_events
        ))
    } else if retired > 0 {
        Some(format!(
            "{retired} older version(s) of this entity left the warehouse's raw zone for the \
             lake: they are in {} (Parquet, by ingestion date)",
            api.lake_events
        ))
    } else {
        forgotten_through.map(|at| {
            format!(
                "raw events up to {} may have left for the lake ({}) longer ago than the \
                 warehouse keeps their ids, so older versions may be there, uncounted",
                rfc3339(at),
                api.lake_events
            )
        })
    };
    Ok(Json(json!({
        "type": name,
        "id": id,
        "versions": versions,
        "retired_versions": retired,
        "complete": note.is_none(),
        "note": note,
    }))
    .into_response())
}
