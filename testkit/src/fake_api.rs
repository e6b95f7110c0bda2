//! The fake card API: card items (the `cards` type's payload) served by axum on loopback, from a
//! tokio runtime of its own, with faults a test programs and a request log it reads. The `http`
//! source's tests pull from it with a bearer key ([`Api::start`]); the benchmark's `--http` phase
//! with none ([`Api::without_key`]).
//!
//! `GET /v1/cards?updated_since=<RFC 3339>&updated_until=<RFC 3339>&limit=N&cursor=C` answers
//! `{"data":[…],"next_cursor":"…"|null}`: the items whose `updated_at` is in the half-open
//! window, sorted by (`updated_at`, `id`), `limit` per page (100 when absent), paged with an
//! opaque cursor. Started with a key, it wants `Authorization: Bearer <key>` (401 otherwise) and answers 400 to a
//! request without a readable window or with an unknown cursor.
//!
//! Pages are numbered by their place in the sequence the client follows: page 0 is the first
//! page of a window, page `s + 1` the one `s`'s cursor leads to. With
//! [`Faults::repeat_page`] `= Some(k)`, page `k + 1` holds page `k`'s items again (a duplicate
//! page) and every later page is shifted by one, so nothing is lost.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDateTime};
use serde_json::{json, Value};

/// How the API writes its timestamps (naive, one-second resolution), as the producers do.
pub const TS: &str = "%Y-%m-%d %H:%M:%S";

/// One card version, as the API serves it.
#[derive(Clone, Debug)]
pub struct Item {
    pub id: i64,
    pub updated_at: NaiveDateTime,
    /// The bytes served for it: compact JSON, keys in the API's own (not alphabetical) order.
    pub raw: String,
    /// Whether the warehouse is expected to load it (false: invalid, or refused by the database).
    pub loads: bool,
}

impl Item {
    /// An item served as `raw`, a card's JSON as a producer wrote it: its `id` and `updated_at`
    /// (written as [`TS`]) are read from it. `None` if it has neither.
    pub fn from_raw(raw: String) -> Option<Item> {
        let doc: Value = serde_json::from_str(&raw).ok()?;
        let id = doc["id"].as_i64()?;
        let updated_at = NaiveDateTime::parse_from_str(doc["updated_at"].as_str()?, TS).ok()?;
        Some(Item {
            id,
            updated_at,
            raw,
            loads: true,
        })
    }

    pub fn doc(&self) -> Value {
        serde_json::from_str(&self.raw).expect("served items are JSON")
    }

    pub fn version(&self) -> String {
        self.updated_at.format(TS).to_string()
    }
}

/// Names as the API writes them (JSON string literals): one escaped non-ASCII letter (a client
/// that re-serializes the item would write `é`), raw UTF-8, escaped quotes.
const NAMES: [&str; 5] = [
    r#""Ren\u00e9e Dupont""#,
    r#""Zoë Ñúñez""#,
    r#""Mary \"May\" O'Neil""#,
    r#""Ana Lima""#,
    r#""Kenji 佐藤""#,
];

/// A card version with these fields, written as the API writes it.
pub fn card(id: i64, updated_at: NaiveDateTime, active: bool, created_at: NaiveDateTime) -> Item {
    let name = NAMES[usize::try_from(id.rem_euclid(NAMES.len() as i64)).expect("small")];
    let user_id = (id * 37).rem_euclid(1000);
    let raw = format!(
        r#"{{"id":{id},"user_id":{user_id},"created_by_name":{name},"created_at":"{}","updated_at":"{}","active":{active}}}"#,
        created_at.format(TS),
        updated_at.format(TS),
    );
    Item {
        id,
        updated_at,
        raw,
        loads: true,
    }
}

/// A small deterministic generator (splitmix64), so a failing test can be run again as it was.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Card versions: for each `(from, to, count)` span, `count` versions with `updated_at` in
/// [from, to) and ids drawn from `ids`, never two versions of one id with the same `updated_at`.
/// `created_at` is fixed per id, before every span.
pub fn generate(
    seed: u64,
    ids: std::ops::Range<i64>,
    spans: &[(NaiveDateTime, NaiveDateTime, usize)],
) -> Vec<Item> {
    let mut gen = Gen::new(seed);
    let first = spans.iter().map(|s| s.0).min().expect("at least one span");
    let created_base = first - chrono::Duration::days(30);
    let width = u64::try_from(ids.end - ids.start).expect("a non-empty id range");
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for &(from, to, count) in spans {
        let secs = u64::try_from((to - from).num_seconds()).expect("from < to");
        let mut made = 0;
        while made < count {
            let id = ids.start + i64::try_from(gen.below(width)).expect("fits");
            let at =
                from + chrono::Duration::seconds(i64::try_from(gen.below(secs)).expect("fits"));
            if !seen.insert((id, at)) {
                continue;
            }
            let created = created_base + chrono::Duration::minutes(id);
            items.push(card(id, at, gen.below(2) == 1, created));
            made += 1;
        }
    }
    items
}

/// One request the API received.
#[derive(Clone, Debug)]
pub struct Request {
    /// 1-based, over the API's life.
    pub n: usize,
    /// The `cursor` parameter, if any.
    pub cursor: Option<String>,
    /// The page it resolved to (None: unauthorized or a bad request).
    pub page: Option<usize>,
    /// The status answered.
    pub status: u16,
    /// Answered late on purpose (longer than the client's timeout): not received by the client.
    pub slow: bool,
    /// The items of the page answered (200 only), as served.
    pub items: Vec<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub limit: Option<usize>,
    /// The `Accept` header sent.
    pub accept: Option<String>,
    /// When it arrived.
    pub at: Instant,
}

impl Request {
    /// A page the client received (a 200 answered in time).
    pub fn served(&self) -> bool {
        self.status == 200 && !self.slow
    }
}

/// The faults a test programs. Page numbers are sequence numbers (see the module's doc); counts
/// are consumed as they are used.
#[derive(Default)]
pub struct Faults {
    /// 502 to these request numbers (1-based).
    pub fail_requests: HashSet<usize>,
    /// page → how many times to answer it 502 before serving it.
    pub fail_pages: HashMap<usize, usize>,
    /// page → how many times to answer it 429 with `Retry-After: 1` before serving it.
    pub rate_limited_pages: HashMap<usize, usize>,
    /// page → how many of its attempts to answer only after `slow_delay`.
    pub slow_pages: HashMap<usize, usize>,
    pub slow_delay: Duration,
    /// Serve this page's items again as the next page (duplicates).
    pub repeat_page: Option<usize>,
    /// Added before every page answered 200.
    pub page_delay: Duration,
    /// Cursors answered 400 ("expired") once each.
    pub expired_once: HashSet<String>,
}

struct Shared {
    /// The bearer key a request must present; `None`: any request is served.
    key: Option<String>,
    items: Vec<Item>,
    /// Indices of `items` in paging order (`updated_at`, `id`), kept with every change of the
    /// items: a page is then a slice of it, however many items there are, and a benchmark
    /// measures the client rather than the API.
    order: Vec<usize>,
    faults: Faults,
    log: Vec<Request>,
}

/// The API, serving until dropped.
pub struct Api {
    shared: Arc<Mutex<Shared>>,
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Api {
    /// Serves `items` on a free loopback port to clients presenting `key`.
    pub fn start(key: &str, items: Vec<Item>) -> Api {
        Api::serve(Some(key.to_owned()), items)
    }

    /// Serves `items` on a free loopback port to any client.
    pub fn without_key(items: Vec<Item>) -> Api {
        Api::serve(None, items)
    }

    fn serve(key: Option<String>, items: Vec<Item>) -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the API's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the API");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the API's address");
        let mut shared = Shared {
            key,
            items,
            order: Vec::new(),
            faults: Faults::default(),
            log: Vec::new(),
        };
        shared.sort();
        let shared = Arc::new(Mutex::new(shared));
        let app = Router::new()
            .route("/v1/cards", get(cards))
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("the API serves");
        });
        Api {
            shared,
            addr,
            runtime: Some(runtime),
        }
    }

    fn state(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("the API's state")
    }

    /// The endpoint, for `url` in etl.toml.
    pub fn url(&self) -> String {
        format!("http://{}/v1/cards", self.addr)
    }

    pub fn faults(&self, program: impl FnOnce(&mut Faults)) {
        program(&mut self.state().faults);
    }

    /// More items (new versions the API learns of).
    pub fn add(&self, items: &[Item]) {
        let mut state = self.state();
        state.items.extend_from_slice(items);
        state.sort();
    }

    /// Serves `raw` in place of the version (`id`, `updated_at`), marked as not loading.
    pub fn replace(&self, id: i64, updated_at: NaiveDateTime, raw: &str) {
        let mut state = self.state();
        let item = state
            .items
            .iter_mut()
            .find(|i| i.id == id && i.updated_at == updated_at)
            .expect("the item to replace exists");
        item.raw = raw.to_owned();
        item.loads = false;
    }

    pub fn items(&self) -> Vec<Item> {
        self.state().items.clone()
    }

    /// The items of the window [from, to), in the order the API pages them.
    pub fn window(&self, from: NaiveDateTime, to: NaiveDateTime) -> Vec<Item> {
        let state = self.state();
        let inside = state.window(from, to);
        inside.iter().map(|&i| state.items[i].clone()).collect()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state().log.clone()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The cursor of page `s`: opaque to the client.
fn cursor_of(page: usize) -> String {
    format!("c{:x}", page as u64 * 7919 + 104_729)
}

fn page_of(cursor: &str) -> Option<usize> {
    let v = u64::from_str_radix(cursor.strip_prefix('c')?, 16).ok()?;
    let offset = v.checked_sub(104_729)?;
    (offset % 7919 == 0).then(|| usize::try_from(offset / 7919).ok())?
}

/// RFC 3339 → naive UTC.
fn instant(text: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.naive_utc())
}

async fn cards(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (delay, response) = shared
        .lock()
        .expect("the API's state")
        .answer(&headers, &query);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

impl Shared {
    /// Puts `order` in paging order again (stable: equal versions keep their order of arrival).
    fn sort(&mut self) {
        let items = &self.items;
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| (items[i].updated_at, items[i].id));
        self.order = order;
    }

    /// The items of the window [from, to) in paging order, as indices of `items`.
    fn window(&self, from: NaiveDateTime, to: NaiveDateTime) -> &[usize] {
        let at = |t: NaiveDateTime| {
            self.order
                .partition_point(|&i| self.items[i].updated_at < t)
        };
        let (first, end) = (at(from), at(to));
        &self.order[first..end.max(first)]
    }

    fn answer(
        &mut self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> (Duration, Response) {
        let n = self.log.len() + 1;
        let mut entry = Request {
            n,
            cursor: query.get("cursor").cloned(),
            page: None,
            status: 0,
            slow: false,
            items: Vec::new(),
            from: query.get("updated_since").and_then(|t| instant(t)),
            to: query.get("updated_until").and_then(|t| instant(t)),
            limit: query.get("limit").and_then(|l| l.parse().ok()),
            accept: headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            at: Instant::now(),
        };
        let authorized = self.key.as_ref().is_none_or(|key| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {key}").as_str())
        });
        if !authorized {
            let body = json!({"error": "unauthorized: a valid API key is required"});
            return self.finish(entry, StatusCode::UNAUTHORIZED, body.to_string(), None);
        }
        let (Some(from), Some(to)) = (entry.from, entry.to) else {
            let body = json!({"error": "updated_since and updated_until (RFC 3339) are required"});
            return self.finish(entry, StatusCode::BAD_REQUEST, body.to_string(), None);
        };
        if let Some(c) = entry.cursor.as_deref() {
            if self.faults.expired_once.remove(c) {
                let body = json!({"error": "cursor expired"});
                return self.finish(entry, StatusCode::BAD_REQUEST, body.to_string(), None);
            }
        }
        let page = match entry.cursor.as_deref() {
            None => Some(0),
            Some(c) => page_of(c),
        };
        let Some(page) = page else {
            let body = json!({"error": "unknown cursor"});
            return self.finish(entry, StatusCode::BAD_REQUEST, body.to_string(), None);
        };
        entry.page = Some(page);

        let faults = &mut self.faults;
        if faults.fail_requests.contains(&n) || take(&mut faults.fail_pages, page) {
            return self.finish(entry, StatusCode::BAD_GATEWAY, "bad gateway".into(), None);
        }
        if take(&mut faults.rate_limited_pages, page) {
            let body = json!({"error": "rate limited"}).to_string();
            return self.finish(entry, StatusCode::TOO_MANY_REQUESTS, body, Some("1"));
        }
        let mut delay = faults.page_delay;
        if take(&mut faults.slow_pages, page) {
            entry.slow = true;
            delay += faults.slow_delay;
        }

        let limit = entry.limit.unwrap_or(100).max(1);
        let inside = self.window(from, to);
        let underlying = |s: usize| match self.faults.repeat_page {
            Some(k) if s > k => s - 1,
            _ => s,
        };
        let first = underlying(page).saturating_mul(limit);
        let items: Vec<String> = inside
            .iter()
            .skip(first)
            .take(limit)
            .map(|&i| self.items[i].raw.clone())
            .collect();
        let next = if underlying(page + 1).saturating_mul(limit) < inside.len() {
            format!("\"{}\"", cursor_of(page + 1))
        } else {
            "null".to_owned()
        };
        let body = format!(r#"{{"data":[{}],"next_cursor":{next}}}"#, items.join(","));
        entry.items = items;
        let (_, response) = self.finish(entry, StatusCode::OK, body, None);
        (delay, response)
    }

    fn finish(
        &mut self,
        mut entry: Request,
        status: StatusCode,
        body: String,
        retry_after: Option<&str>,
    ) -> (Duration, Response) {
        entry.status = status.as_u16();
        self.log.push(entry);
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(secs) = retry_after {
            response = response.header(header::RETRY_AFTER, secs);
        }
        let response = response.body(Body::from(body)).expect("a valid response");
        (Duration::ZERO, response)
    }
}

/// Uses one of `page`'s programmed faults, if any is left.
fn take(faults: &mut HashMap<usize, usize>, page: usize) -> bool {
    match faults.get_mut(&page) {
        Some(left) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    }
}

/// The expected `cards` table: for each id, its latest loadable version (greatest
/// `updated_at`) among `items`, as `warehouse_cards` reads the table.
pub fn oracle(items: &[Item]) -> Value {
    let mut latest: BTreeMap<i64, &Item> = BTreeMap::new();
    for item in items.iter().filter(|i| i.loads) {
        match latest.get(&item.id) {
            Some(best) if best.updated_at >= item.updated_at => {}
            _ => {
                latest.insert(item.id, item);
            }
        }
    }
    Value::Array(
        latest
            .values()
            .map(|item| {
                let d = item.doc();
                json!({
                    "id": d["id"], "user_id": d["user_id"], "created_by_name": d["created_by_name"],
                    "created_at": d["created_at"], "updated_at": d["updated_at"],
                    "active": d["active"], "event_at": d["updated_at"],
                })
            })
            .collect(),
    )
}

/// The expected raw zone: one event per distinct loadable version, ordered by (id, version),
/// its payload the item and its `event_at` the item's `updated_at`.
pub fn expected_events(items: &[Item]) -> Value {
    let mut versions: BTreeMap<(i64, String), &Item> = BTreeMap::new();
    for item in items.iter().filter(|i| i.loads) {
        versions.insert((item.id, item.version()), item);
    }
    Value::Array(
        versions
            .into_iter()
            .map(|((id, version), item)| {
                json!({"id": id, "version": version, "event_at": version, "payload": item.doc()})
            })
            .collect(),
    )
}
