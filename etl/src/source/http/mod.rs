//! The HTTP API source: an API polled on a schedule (or over one window by `etl pull`), page by
//! page, each page landed raw and its items loaded as events, its position stored once every
//! item of the page is settled.
//!
//! ```text
//! window ─▶ fetch page (retries) ─▶ land raw NDJSON ─▶ items ─Record─▶ Intake ─▶ pool ─▶ commit
//!    ▲                                                    │ rejected        │
//!    │                                                    ▼                 ▼
//!    └── position stored ◀── every item settled ◀── dead-letter row ◀── Ack (per item)
//! ```
//!
//! One page is in flight at a time, so a restart asks again for at most the page it was on;
//! that page's events are the same events (their ids are derived from the item's version), so
//! asking again changes nothing.

pub mod client;
pub mod item;
pub mod landing;
pub mod page;
pub mod position;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use chrono::Utc;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::deadletter::{self, DeadLetter};
use super::{Ack, Acknowledge, Fate, Intake, Mode, Record, Source, Started};
use crate::catalog::{Catalog, Kind};
pub use crate::config::http::{HttpConfig, Window};
use crate::config::Config;
use crate::load::error::SetupError;
use crate::load::Warehouse;
use crate::ops::metrics::HTTP_SINCE_SUCCESS;
use crate::outcome;
use crate::stats::Stats;
use client::{ApiClient, FetchError};
use position::Position;

/// The run name of the scheduled pulls' position.
const SCHEDULE: &str = "schedule";

/// An API source and what it knows while it runs.
pub struct HttpSource {
    config: Arc<HttpConfig>,
    kind: Kind,
    client: ApiClient,
    warehouse: Warehouse,
    stats: Arc<Stats>,
    /// `<data_dir>/lake/raw`: where pages land.
    landing: PathBuf,
    data_dir: PathBuf,
    /// Items of the current page not settled yet.
    in_flight: AtomicU64,
    /// 1 once a drain's or a backfill's pull has stopped short.
    stuck: AtomicUsize,
    /// When a page last arrived (the start, before the first).
    last_success: Mutex<Instant>,
}

/// How a pull ended.
#[derive(Debug, PartialEq, Eq)]
enum Pulled {
    /// Every page of the window is settled; its position says done.
    Complete,
    /// Another replica holds this run's lock.
    Busy,
    /// The schedule's last window ended less than an interval ago (another replica pulled it).
    NotDue,
    /// Stopped short (logged as an ERROR); the position says where to resume.
    Failed,
    /// The daemon is stopping; the position says where to resume.
    Interrupted,
}

impl HttpSource {
    pub fn new(
        source: &HttpConfig,
        config: &Config,
        catalog: &Catalog,
        stats: Arc<Stats>,
        warehouse: Warehouse,
    ) -> Result<HttpSource, SetupError> {
        source.validate()?;
        let kind = catalog.get(&source.type_name).cloned().ok_or_else(|| {
            SetupError(format!(
                "source {:?}: type {:?} is not declared (declared: {})",
                source.name,
                source.type_name,
                catalog.names()
            ))
        })?;
        let source = Arc::new(source.clone());
        Ok(HttpSource {
            client: ApiClient::new(source.clone())?,
            config: source,
            kind,
            warehouse,
            stats,
            landing: config.landing_dir(),
            data_dir: config.data_dir.clone(),
            in_flight: AtomicU64::new(0),
            stuck: AtomicUsize::new(0),
            last_success: Mutex::new(Instant::now()),
        })
    }
}

impl Source for HttpSource {
    fn start(self: Arc<Self>, mode: Mode, intake: Intake, stop: CancellationToken) -> Started {
        let (done_tx, done_rx) = oneshot::channel();
        let discovery = tokio::spawn(async move {
            let gauge = tokio::spawn(self.clone().publish_staleness(stop.clone()));
            self.run(mode, &intake, &stop).await;
            gauge.abort();
            let _ = done_tx.send(());
            Ok(())
        });
        Started {
            discovery,
            finished: vec![done_rx],
        }
    }

    fn backlog(&self) -> u64 {
        self.in_flight()
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A flaky API is not the daemon's unreadiness: its pulls retry on their own.
    fn ready(&self) -> bool {
        true
    }

    fn stuck(&self) -> usize {
        self.stuck.load(Ordering::Relaxed)
    }
}

/// One item's ack: its fate goes back to the page waiting for it.
struct ItemAck {
    settled: mpsc::UnboundedSender<Settled>,
    origin: String,
    /// The envelope as submitted, kept for the dead-letter row if it is refused.
    bytes: Vec<u8>,
}

struct Settled {
    fate: Fate,
    origin: String,
    bytes: Vec<u8>,
}

impl Acknowledge for ItemAck {
    fn settle(self: Box<Self>, fate: Fate) {
        let ItemAck {
            settled,
            origin,
            bytes,
        } = *self;
        // The page waits for every item; if it has stopped waiting the run is over and the
        // page is pulled again next time.
        let _ = settled.send(Settled {
            fate,
            origin,
            bytes,
        });
    }
}

impl HttpSource {
    async fn run(&self, mode: Mode, intake: &Intake, stop: &CancellationToken) {
        let name = &self.config.name;
        if let Some(window) = self.config.window {
            // `etl pull`: this window once. Unfinished until it completes, so that a run cut
            // short (a hard stop while a page is in flight) never exits 0.
            self.stuck.store(1, Ordering::Relaxed);
            let run = format!("backfill {window}");
            match self.pull(&run, Some(window), intake, stop).await {
                Pulled::Complete => self.stuck.store(0, Ordering::Relaxed),
                Pulled::Busy => {
                    tracing::error!(source = %name, %window, "another etl is pulling this window; try again when it has finished")
                }
                _ => {}
            }
            return;
        }
        if mode == Mode::Drain {
            self.stuck.store(1, Ordering::Relaxed);
            if matches!(
                self.pull(SCHEDULE, None, intake, stop).await,
                Pulled::Complete | Pulled::NotDue
            ) {
                self.stuck.store(0, Ordering::Relaxed);
            }
            return;
        }
        loop {
            let began = Instant::now();
            if self.pull(SCHEDULE, None, intake, stop).await == Pulled::Busy {
                tracing::info!(source = %name, "another replica is pulling this source; skipping this interval");
            }
            let wait = self.config.interval().saturating_sub(began.elapsed());
            if !crate::backoff::sleep(wait, stop).await {
                return;
            }
        }
    }

    /// Pulls `run`'s window (`fixed`, or for the schedule the one after the last completed)
    /// from its stored position, holding the run's advisory lock throughout.
    async fn pull(
        &self,
        run: &str,
        fixed: Option<Window>,
        intake: &Intake,
        stop: &CancellationToken,
    ) -> Pulled {
        let name = &self.config.name;
        // One connection for the lock, the positions and the dead letters of this pull: the
        // session lock lives as long as it does.
        let db = match self.warehouse.client().await {
            Ok(db) => db,
            Err(error) => {
                tracing::error!(source = %name, %error, "pull stopped: the warehouse is unreachable; the next pull resumes from the stored position");
                return Pulled::Failed;
            }
        };
        match position::try_lock(&db, name, run).await {
            Ok(true) => {}
            Ok(false) => return Pulled::Busy,
            Err(error) => {
                tracing::error!(source = %name, %error, "pull stopped: cannot take the pull's lock in the warehouse");
                return Pulled::Failed;
            }
        }
        let pulled = AssertUnwindSafe(self.pull_locked(&db, run, fixed, intake, stop))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(source = %name, "pull stopped: the pull failed unexpectedly (a bug); the next pull resumes from the stored position");
                Pulled::Failed
            });
        // A connection still holding the lock must never go back to the pool (its next user
        // would hold the lock unknowingly, and every replica would skip the source): unless the
        // unlock says it is released, the connection is closed, which releases it.
        if !matches!(position::unlock(&db, name, run).await, Ok(true)) {
            tracing::warn!(source = %name, "cannot release the pull's lock; closing its connection instead");
            drop(deadpool_postgres::Object::take(db));
        }
        pulled
    }

    async fn pull_locked(
        &self,
        db: &tokio_postgres::Client,
        run: &str,
        fixed: Option<Window>,
        intake: &Intake,
        stop: &CancellationToken,
    ) -> Pulled {
        let name = &self.config.name;
        let stored = match position::load(db, name, run).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(source = %name, %error, "pull stopped: cannot read the stored position");
                return Pulled::Failed;
            }
        };
        let now = crate::config::http::now_in_seconds();
        let interval = chrono::TimeDelta::from_std(self.config.interval())
            .unwrap_or(chrono::TimeDelta::hours(1));
        let mut at = match (fixed, stored) {
            (Some(window), Some(p)) if p.window == window && !p.done => p,
            (Some(window), _) => Position::start(window),
            (None, Some(p)) if !p.done => p,
            (None, Some(p)) => {
                // Each replica has its own timer: the schedule is the stored window's, so that
                // N replicas make one pull per interval, not N. (A second's slack: windows end
                // on whole seconds.)
                if now + chrono::TimeDelta::seconds(1) <= p.window.to + interval {
                    return Pulled::NotDue;
                }
                Position::start(Window {
                    from: p.window.to,
                    to: now,
                })
            }
            (None, None) => Position::start(Window {
                from: self
                    .config
                    .start
                    .or_else(|| now.checked_sub_signed(interval))
                    .unwrap_or(now),
                to: now,
            }),
        };
        if at.window.from >= at.window.to {
            return Pulled::Complete;
        }
        let mut resumed = at.next.is_some();
        if resumed {
            tracing::info!(source = %name, window = %at.window, pages = at.pages, "resuming a pull from its stored position");
        }
        // Stored before the first page, so a crash resumes this window, not a newer one.
        if let Err(error) = position::save(db, name, run, &at, false).await {
            tracing::error!(source = %name, %error, "pull stopped: cannot store the position");
            return Pulled::Failed;
        }
        // A numbered page identical to the one before: the API ignores the page parameter.
        let mut previous_page: Option<u64> = None;
        loop {
            if stop.is_cancelled() {
                return Pulled::Interrupted;
            }
            let page_no = at.pages + 1;
            let page = match self
                .client
                .fetch(&at.window, at.next.as_ref(), page_no, stop)
                .await
            {
                Ok(page) => page,
                Err(FetchError::Stopped) => return Pulled::Interrupted,
                // A resumed position the API refuses (an expired cursor, a link to a host no
                // longer configured): the window starts again from its first page, once; its
                // events are the same events.
                Err(FetchError::Refused(reason)) if resumed => {
                    tracing::warn!(source = %name, window = %at.window, %reason, "the API refused the stored position; pulling the window again from its first page");
                    resumed = false;
                    at = Position::start(at.window);
                    continue;
                }
                Err(error) => {
                    let advice = match error {
                        FetchError::Refused(_) => {
                            "check the source's configuration (URL, key, parameters)"
                        }
                        _ => "the next pull resumes from this page",
                    };
                    tracing::error!(source = %name, window = %at.window, reason = %error, advice, "pull stopped");
                    return Pulled::Failed;
                }
            };
            if matches!(
                self.config.pagination,
                crate::config::http::Pagination::Page { .. }
            ) {
                let digest = digest(&page.items);
                if !page.items.is_empty() && previous_page == Some(digest) {
                    tracing::error!(source = %name, page = page_no, reason = "the API answered with the same items as the page before: it ignores the page parameter", advice = "check pagination.param", "pull stopped");
                    return Pulled::Failed;
                }
                previous_page = Some(digest);
            }
            if let Ok(mut last) = self.last_success.lock() {
                *last = Instant::now();
            }
            outcome::page_received(name, page.items.len() as u64);
            let landing = (self.landing.clone(), name.clone(), page.items);
            let landed = tokio::task::spawn_blocking(move || {
                let (root, name, items) = landing;
                landing::land(&root, &name, page_no as u64, &items, Utc::now()).map(|p| (p, items))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let (landed, items) = match landed {
                Ok(landed) => landed,
                Err(error) => {
                    tracing::error!(source = %name, %error, "pull stopped: cannot write the page to the landing zone");
                    return Pulled::Failed;
                }
            };
            if !self.load_page(db, &landed, &items, intake).await {
                return Pulled::Interrupted;
            }
            at.pages = page_no;
            at.items += items.len() as i64;
            at.done = page.next.is_none();
            at.next = page.next;
            resumed = false;
            if let Err(error) = position::save(db, name, run, &at, true).await {
                tracing::error!(source = %name, %error, "pull stopped: cannot store the position; the next pull asks for this page again");
                return Pulled::Failed;
            }
            crash_point!(HttpPageSaved);
            if at.done {
                tracing::info!(source = %name, from = %at.window.from.to_rfc3339(), to = %at.window.to.to_rfc3339(), pages = at.pages, items = at.items, "pull complete");
                return Pulled::Complete;
            }
        }
    }

    /// Hands every item of a landed page to the intake and waits until each is committed or
    /// dead-lettered. False if any is not (the pipeline is closing): the page is pulled again.
    async fn load_page(
        &self,
        db: &tokio_postgres::Client,
        landed: &std::path::Path,
        items: &[String],
        intake: &Intake,
    ) -> bool {
        let shown = landed
            .strip_prefix(&self.data_dir)
            .unwrap_or(landed)
            .display()
            .to_string();
        let (settled_tx, mut settled) = mpsc::unbounded_channel();
        for (line, item) in items.iter().enumerate() {
            let origin = format!("{shown}:{}", line + 1);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            match item::envelope(item, &self.config.item, &self.config.name, &self.kind) {
                Ok(bytes) => {
                    let ack = Ack::new(ItemAck {
                        settled: settled_tx.clone(),
                        origin: origin.clone(),
                        bytes: bytes.clone(),
                    });
                    let record = Record {
                        kind: self.kind.clone(),
                        bytes,
                        origin,
                        ack,
                    };
                    if intake.submit(record).await.is_err() {
                        // Closing: the record's ack says Retry, so the page is not settled and
                        // the items after it need not be offered.
                        break;
                    }
                }
                Err(rejection) => Ack::new(ItemAck {
                    settled: settled_tx.clone(),
                    origin,
                    bytes: item.as_bytes().to_vec(),
                })
                .resolve(Fate::Rejected(rejection)),
            }
        }
        drop(settled_tx);
        let mut settled_all = true;
        let mut committed = 0;
        while let Some(Settled {
            fate,
            origin,
            bytes,
        }) = settled.recv().await
        {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            match fate {
                Fate::Committed => committed += 1,
                Fate::Rejected(rejection) => {
                    let letter = DeadLetter {
                        source: "http",
                        origin: &origin,
                        subject: &self.config.name,
                        type_name: Some(self.kind.name()),
                        bytes: &bytes,
                        rejection: &rejection,
                    };
                    match deadletter::store(db, &letter).await {
                        // Pulled again (a resumed page, an overlapping window): already
                        // dead-lettered and reported.
                        Ok(false) => {}
                        Ok(true) => {
                            outcome::item_rejected(&self.stats, &self.kind, &origin, &rejection)
                        }
                        Err(error) => {
                            tracing::warn!(%origin, %error, "cannot store a rejected item in rejected_events; its page is pulled again");
                            settled_all = false;
                        }
                    }
                }
                Fate::Retry => settled_all = false,
            }
        }
        outcome::items_committed(&self.stats, committed);
        settled_all
    }

    /// Keeps `etl_http_seconds_since_success{source}` current while the source runs: since a
    /// page was last settled by any replica (the warehouse knows), so that a replica whose
    /// peers do the pulling does not look stale; since this process last received a page, or
    /// started, when the warehouse cannot say.
    async fn publish_staleness(self: Arc<Self>, stop: CancellationToken) {
        let gauge = metrics::gauge!(HTTP_SINCE_SUCCESS, "source" => self.config.name.clone());
        loop {
            let here = self
                .last_success
                .lock()
                .map(|last| last.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            let anywhere = match self.warehouse.client().await {
                Ok(db) => position::since_last_page(&db, &self.config.name)
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
            gauge.set(anywhere.map_or(here, |a| a.min(here)).floor());
            if !crate::backoff::sleep(Duration::from_secs(5), &stop).await {
                return;
            }
        }
    }
}

/// A cheap fingerprint of a page's items.
fn digest(items: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    items.hash(&mut hasher);
    hasher.finish()
}
