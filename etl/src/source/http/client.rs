//! Asking an API for one page: the request (window, page, key), timeouts, and retries with
//! jittered exponential backoff on what a retry can fix (connection errors, timeouts, 429 after
//! its `Retry-After`, 5xx, a body that is not what the configuration describes); any other
//! answer is a configuration error. The key never appears in what this module reports.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use tokio_util::sync::CancellationToken;

use super::page::{self, Next, Page};
use crate::backoff::{self, Backoff};
use crate::config::http::{HttpConfig, Pagination, Window};
use crate::load::error::SetupError;
use crate::ops::metrics::HTTP_RETRIES;

/// The longest `Retry-After` honoured: an API asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Why a page could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// Every attempt failed with something a retry could have fixed: the pull resumes from this
    /// page next time.
    Exhausted(String),
    /// An answer no retry changes (401, 403, 404, 400…): the configuration is wrong.
    Refused(String),
    /// The daemon is stopping.
    Stopped,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Exhausted(what) | FetchError::Refused(what) => f.write_str(what),
            FetchError::Stopped => f.write_str("stopped"),
        }
    }
}

/// One attempt's failure.
enum Failure {
    /// Worth another attempt; `status` labels the retry metric.
    Transient {
        status: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

/// An API source's HTTP client.
pub struct ApiClient {
    http: reqwest::Client,
    config: std::sync::Arc<HttpConfig>,
    method: Method,
    base: Url,
    headers: HeaderMap,
    key: Option<String>,
}

impl ApiClient {
    pub fn new(config: std::sync::Arc<HttpConfig>) -> Result<ApiClient, SetupError> {
        let bad = |what: String| SetupError(format!("source {:?}: {what}", config.name));
        let base = Url::parse(&config.url).map_err(|e| bad(format!("url: {e}")))?;
        let origin = base.origin();
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(config.timeout())
            .user_agent(concat!("etl/", env!("CARGO_PKG_VERSION")))
            // A redirect elsewhere would carry the key to another host: only the API's own.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.url().origin() == origin && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        let key = config.api_key()?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("{name:?} is not a header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("the header {name} has a value HTTP cannot carry")))?;
            headers.insert(name, value);
        }
        if let (Some(key), None) = (&key, &config.api_key_param) {
            let name = HeaderName::from_bytes(config.api_key_header.as_bytes())
                .map_err(|_| bad("api_key_header is not a header name".into()))?;
            let mut value = HeaderValue::from_str(&format!("{}{key}", config.api_key_prefix))
                .map_err(|_| bad("the API key holds characters a header cannot carry".into()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let method = if config.method.eq_ignore_ascii_case("POST") {
            Method::POST
        } else {
            Method::GET
        };
        Ok(ApiClient {
            http,
            config,
            method,
            base,
            headers,
            key,
        })
    }

    /// `text` with the API key replaced by `***`: an API may echo the key in an error body.
    pub fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(key) => text.replace(key.as_str(), "***"),
            None => text.to_owned(),
        }
    }

    /// The URL of the page `next` of `window` (none: the first).
    fn url(&self, window: &Window, next: Option<&Next>) -> Result<Url, String> {
        let mut url = match next {
            Some(Next::Url(link)) => {
                let link = Url::parse(link).map_err(|e| format!("stored link: {e}"))?;
                // Stored before `url` was changed to another host: the key is never sent there.
                if link.origin() != self.base.origin() {
                    return Err(format!(
                        "the stored next-page link leads to {}, not to the configured url's origin",
                        link.origin().ascii_serialization()
                    ));
                }
                match &self.config.api_key_param {
                    Some(param) => page::without_param(&link, param),
                    None => link,
                }
            }
            _ => self.base.clone(),
        };
        {
            let mut query = url.query_pairs_mut();
            if !matches!(next, Some(Next::Url(_))) {
                let format = |t: chrono::DateTime<chrono::Utc>| {
                    t.format(&self.config.time_format).to_string()
                };
                let (from, to) = (format(window.from), format(window.to));
                for (name, value) in &self.config.query {
                    query.append_pair(name, &value.replace("{from}", &from).replace("{to}", &to));
                }
                if let (Some(param), Some(size)) =
                    (&self.config.page_size_param, self.config.page_size)
                {
                    query.append_pair(param, &size.to_string());
                }
                match (&self.config.pagination, next) {
                    (Pagination::Cursor { param, .. }, Some(Next::Cursor(cursor))) => {
                        query.append_pair(param, cursor);
                    }
                    (Pagination::Page { param, first }, next) => {
                        let n = match next {
                            Some(Next::Page(n)) => *n,
                            _ => *first,
                        };
                        query.append_pair(param, &n.to_string());
                    }
                    _ => {}
                }
            }
            if let (Some(param), Some(key)) = (&self.config.api_key_param, &self.key) {
                query.append_pair(param, key);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// The page `next` of `window`, retried up to `max_attempts` times.
    pub async fn fetch(
        &self,
        window: &Window,
        next: Option<&Next>,
        page_no: i64,
        stop: &CancellationToken,
    ) -> Result<Page, FetchError> {
        let url = self.url(window, next).map_err(FetchError::Refused)?;
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.retry_initial_ms.max(1)),
            Duration::from_millis(self.config.retry_max_ms.max(1)),
        );
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            // A request is not waited for past a stop: the page is asked for again next time.
            let answer = tokio::select! {
                answer = self.attempt(&url, next) => answer,
                _ = stop.cancelled() => return Err(FetchError::Stopped),
            };
            let failure = match answer {
                Ok(page) => return Ok(page),
                Err(failure) => failure,
            };
            match failure {
                Failure::Permanent(detail) => {
                    return Err(FetchError::Refused(
                        self.redact(&format!("page {page_no}: {detail}")),
                    ))
                }
                Failure::Transient {
                    status,
                    detail,
                    retry_after,
                } => {
                    let detail = self.redact(&detail);
                    if attempt == attempts {
                        return Err(FetchError::Exhausted(format!(
                            "page {page_no}: {detail} ({attempts} attempts)"
                        )));
                    }
                    metrics::counter!(HTTP_RETRIES, "source" => self.config.name.clone(), "status" => status.clone())
                        .increment(1);
                    let delay = match retry_after {
                        Some(after) => after.min(MAX_RETRY_AFTER),
                        None => backoff.next_jittered(),
                    };
                    tracing::warn!(
                        source = %self.config.name,
                        page = page_no,
                        status = %status,
                        attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        detail = %detail,
                        "retrying a page"
                    );
                    if !backoff::sleep(delay, stop).await {
                        return Err(FetchError::Stopped);
                    }
                }
            }
        }
        Err(FetchError::Exhausted(format!(
            "page {page_no}: no attempt made"
        )))
    }

    async fn attempt(&self, url: &Url, next: Option<&Next>) -> Result<Page, Failure> {
        let mut response = self
            .http
            .request(self.method.clone(), url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            // The start of the error body is enough to explain it; the rest is not read.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() >= 4096 {
                    break;
                }
            }
            let body = String::from_utf8_lossy(&body);
            let detail = format!(
                "the API answered {status}: {}",
                body.chars().take(200).collect::<String>().trim()
            );
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status.is_server_error()
                {
                    Failure::Transient {
                        status: status.as_u16().to_string(),
                        detail,
                        retry_after,
                    }
                } else {
                    Failure::Permanent(detail)
                },
            );
        }
        let body = self.body(response).await?;
        page::parse(&body, &self.config, next, url).map_err(|detail| Failure::Transient {
            status: "invalid_body".into(),
            detail: detail.to_string(),
            retry_after: None,
        })
    }

    /// The body, refused past `max_page_bytes` (a page that large will not shrink).
    async fn body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
        let limit = self.config.max_page_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(Failure::Permanent(format!(
                    "the page is larger than max_page_bytes ({limit}); ask for smaller pages (page_size)"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A failure before any answer: the label is `timeout` or `connection`.
fn transport(error: &reqwest::Error) -> Failure {
    let status = if error.is_timeout() {
        "timeout"
    } else {
        "connection"
    };
    // The URL may carry the key as a parameter: never in the message.
    let mut detail = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(c) = cause {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        match c.downcast_ref::<reqwest::Error>() {
            Some(e) if e.url().is_some() => {
                let mut plain = reqwest::Error::to_string(e);
                if let Some(url) = e.url() {
                    plain = plain.replace(url.as_str(), "");
                }
                detail.push_str(plain.replace(" for url ()", "").trim());
            }
            _ => detail.push_str(&c.to_string()),
        }
        cause = c.source();
    }
    Failure::Transient {
        status: status.into(),
        detail,
        retry_after: None,
    }
}

/// `Retry-After`, in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(extra: &str) -> ApiClient {
        let config: HttpConfig = toml::from_str(&format!(
            "name = \"crm\"\ntype = \"cards\"\nurl = \"http://api.test/v1/cards?fixed=1\"\n\
             item = {{ key = \"/id\", version = \"/v\" }}\n{extra}"
        ))
        .expect("valid");
        ApiClient::new(std::sync::Arc::new(config)).expect("client")
    }

    fn window() -> Window {
        Window {
            from: crate::config::http::parse_instant("2026-11-20").expect("date"),
            to: crate::config::http::parse_instant("2026-11-21").expect("date"),
        }
    }

    #[test]
    fn the_request_carries_the_window_the_page_and_the_size() {
        let c = client(
            "query = { since = \"{from}\", until = \"{to}\" }\npage_size = 50\npage_size_param = \"limit\"\n\
             pagination = { style = \"cursor\", field = \"/next\", param = \"after\" }",
        );
        let first = c.url(&window(), None).expect("url");
        assert_eq!(
            first.as_str(),
            "http://api.test/v1/cards?fixed=1&since=2026-11-20T00%3A00%3A00Z&until=2026-11-21T00%3A00%3A00Z&limit=50"
        );
        let second = c
            .url(&window(), Some(&Next::Cursor("c2".into())))
            .expect("url");
        assert!(second.as_str().ends_with("&limit=50&after=c2"), "{second}");
    }

    #[test]
    fn a_key_in_the_query_is_redacted_from_reports() {
        std::env::set_var("ETL_TEST_CLIENT_KEY", "sk-secret-123");
        let c = client("api_key_env = \"ETL_TEST_CLIENT_KEY\"\napi_key_param = \"key\"");
        let url = c.url(&window(), None).expect("url");
        assert!(url.as_str().contains("key=sk-secret-123"));
        assert_eq!(c.redact("bad key sk-secret-123"), "bad key ***");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }
}
