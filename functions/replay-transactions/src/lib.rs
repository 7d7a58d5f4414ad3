//! replay-transactions: drains the loyalty service's dead-letter queue. Each dead-lettered
//! transaction is replayed to the processing queue, skipped (already applied, already
//! handled), or parked for a person (poison, exhausted) — so that none is lost and none is
//! credited twice. Triggered by an SQS event source mapping with `ReportBatchItemFailures`;
//! answers with `batchItemFailures` so only the records that could not be handled return to
//! the dead-letter queue.
//!
//! Per batch: guardrails (kill switch, window, opt-in tag on the processing queue, dry run)
//! → one `BatchGetItem` on the idempotency ledger → one `BatchGetItem` on the
//! processed-transactions table → pure `plan::decide` per record → per-batch and hourly caps
//! → one `TransactWriteItems` claiming every record (and the hourly budget) → one
//! `SendMessageBatch` per 10 replays, parks in parallel → one `BatchWriteItem` recording the
//! outcomes. See docs/replay-transactions.md for the guarantees.

pub mod plan;
pub mod transaction;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use selfheal_aws::aws_config::SdkConfig;
use selfheal_aws::dynamodb::{DynamoIdempotency, DynamoProcessed};
use selfheal_aws::s3_parking::S3Parking;
use selfheal_aws::sqs::SqsQueues;
use selfheal_core::audit::{AuditBuilder, Auditor};
use selfheal_core::guard::ConfigError;
use selfheal_core::ports::idempotency::{
    Budget, Claim, ClaimResult, IdempotencyLedger, Settle, State,
};
use selfheal_core::ports::parking::{ParkedDocument, ParkingLocation, ParkingStore, QueueParking};
use selfheal_core::ports::processed::ProcessedLookup;
use selfheal_core::ports::queues::{is_fifo, Queues};
use selfheal_core::settings::parse_u64;
use selfheal_core::{
    AuditRecord, AwsError, Common, Decision, Function, HandlerError, Invocation, Response,
    SkipCode, SkipReason,
};
use selfheal_lambda::Options;

use plan::{Action, Facts, Incoming, ParkReason, Rules};

pub const FUNCTION: &str = "replay-transactions";

/// The ports are `#[async_trait]` traits; re-exported so that integration tests can wrap them
/// (fault injection, call counting) without a dependency of their own.
#[doc(hidden)]
pub use async_trait::async_trait;

/// How long the processing queue's tags (the opt-in) are cached.
const TAG_CACHE: Duration = Duration::from_secs(60);
/// Added to the Lambda deadline to make a claim's lease: covers clock skew between Lambda
/// hosts. After the lease, another invocation may take the record over.
const LEASE_MARGIN_SECONDS: i64 = 2;
/// Time that must be left before the deadline to start sending: enough to send and record.
const ACT_RESERVE: Duration = Duration::from_secs(2);

/// Settings of this function beyond the shared guardrails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SELFHEAL_REPLAY_PROCESSING_QUEUE_URL` (required): where transactions are replayed.
    pub processing_queue_url: String,
    /// `SELFHEAL_REPLAY_PARKING` (required): `s3://bucket/prefix/` or an SQS queue URL.
    pub parking: ParkingLocation,
    /// `SELFHEAL_REPLAY_PROCESSED_TABLE`: the loyalty service's processed-transactions table;
    /// unset means no "already applied" lookup.
    pub processed_table: Option<String>,
    /// `SELFHEAL_REPLAY_PROCESSED_KEY`: its partition key (a string), default `transaction_id`.
    pub processed_key: String,
    /// `SELFHEAL_REPLAY_MAX_REPLAYS`: replays per transaction before it is parked as
    /// exhausted, default 3.
    pub max_replays: u32,
    /// `SELFHEAL_REPLAY_BASE_DELAY_SECONDS`: delay of the first replay, doubled each time,
    /// capped at 900; default 30. Standard processing queues only (FIFO has no per-message
    /// delay).
    pub base_delay_seconds: u32,
    /// `SELFHEAL_REPLAY_MAX_PER_BATCH`: replays per invocation (blast radius per batch);
    /// the rest return to the dead-letter queue. Default 100 (set it at least to the event
    /// source mapping's BatchSize).
    pub max_per_batch: u32,
    /// `SELFHEAL_REPLAY_MAX_PER_HOUR`: replays per clock hour over all invocations, counted
    /// in the ledger; 0 turns the cap off. Default 10000.
    pub max_per_hour: u32,
    /// `SELFHEAL_REPLAY_RECORD_TTL_SECONDS`: how long the ledger remembers a handled message,
    /// default 1209600 (14 days, SQS's longest retention: no duplicate can arrive later).
    pub record_ttl_seconds: u64,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let processing_queue_url =
            get("SELFHEAL_REPLAY_PROCESSING_QUEUE_URL").ok_or(ConfigError::Missing {
                name: "SELFHEAL_REPLAY_PROCESSING_QUEUE_URL",
                why: "transactions are replayed to that queue",
            })?;
        let parking = get("SELFHEAL_REPLAY_PARKING").ok_or(ConfigError::Missing {
            name: "SELFHEAL_REPLAY_PARKING",
            why: "poison and exhausted transactions are parked there",
        })?;
        let parking = ParkingLocation::parse(&parking).map_err(|_| ConfigError::Invalid {
            name: "SELFHEAL_REPLAY_PARKING",
            value: parking.clone(),
            expected: "s3://bucket/prefix/ or an SQS queue URL",
        })?;
        let small = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            let v = parse_u64(&get, name, default)?;
            u32::try_from(v).map_err(|_| ConfigError::Invalid {
                name,
                value: v.to_string(),
                expected: "a whole number below 4294967296",
            })
        };
        Ok(Self {
            processing_queue_url,
            parking,
            processed_table: get("SELFHEAL_REPLAY_PROCESSED_TABLE"),
            processed_key: get("SELFHEAL_REPLAY_PROCESSED_KEY")
                .unwrap_or_else(|| "transaction_id".into()),
            max_replays: small("SELFHEAL_REPLAY_MAX_REPLAYS", 3)?,
            base_delay_seconds: small("SELFHEAL_REPLAY_BASE_DELAY_SECONDS", 30)?,
            max_per_batch: small("SELFHEAL_REPLAY_MAX_PER_BATCH", 100)?,
            max_per_hour: small("SELFHEAL_REPLAY_MAX_PER_HOUR", 10_000)?,
            record_ttl_seconds: parse_u64(&get, "SELFHEAL_REPLAY_RECORD_TTL_SECONDS", 14 * 86_400)?,
        })
    }

    fn rules(&self) -> Rules {
        Rules {
            max_replays: self.max_replays,
            base_delay_seconds: self.base_delay_seconds,
            target_fifo: is_fifo(&self.processing_queue_url),
        }
    }
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub struct Deps {
    pub common: Common,
    pub settings: Settings,
    pub queues: Arc<dyn Queues>,
    pub parking: Arc<dyn ParkingStore>,
    pub ledger: Arc<dyn IdempotencyLedger>,
    pub processed: Option<Arc<dyn ProcessedLookup>>,
    /// Routine outcomes (replays) are logged and measured but not notified: draining a
    /// queue must not send a notice per message. Parks, failures and escalations go through
    /// `common.audit`, which notifies.
    quiet: Auditor,
    tags: Mutex<Option<(Instant, BTreeMap<String, String>)>>,
}

impl Deps {
    pub async fn from_env(opts: Options) -> Result<Self, StartError> {
        let selfheal_lambda::Boot { common, sdk } =
            selfheal_lambda::from_env(FUNCTION, opts).await?;
        let settings = Settings::from_env()?;
        Ok(Self::with_sdk(common, &sdk, settings))
    }

    /// The production ports, built from the common SDK configuration.
    pub fn with_sdk(common: Common, sdk: &SdkConfig, settings: Settings) -> Self {
        let queues: Arc<dyn Queues> =
            Arc::new(SqsQueues(selfheal_aws::aws_sdk_sqs::Client::new(sdk)));
        let parking: Arc<dyn ParkingStore> = match &settings.parking {
            ParkingLocation::S3 { bucket, prefix } => Arc::new(S3Parking::new(
                selfheal_aws::config::s3_client(sdk),
                bucket,
                prefix,
            )),
            ParkingLocation::Queue { url } => Arc::new(QueueParking::new(queues.clone(), url)),
        };
        let ddb = selfheal_aws::aws_sdk_dynamodb::Client::new(sdk);
        let table = common
            .guard
            .policy()
            .ledger_table
            .clone()
            .unwrap_or_default();
        let ledger: Arc<dyn IdempotencyLedger> =
            Arc::new(DynamoIdempotency::new(ddb.clone(), table));
        let processed = settings.processed_table.as_ref().map(|t| {
            Arc::new(DynamoProcessed::new(ddb, t, &settings.processed_key))
                as Arc<dyn ProcessedLookup>
        });
        Self::new(common, settings, queues, parking, ledger, processed)
    }

    /// Any ports (tests wrap the production ones to inject faults or count calls).
    pub fn new(
        common: Common,
        settings: Settings,
        queues: Arc<dyn Queues>,
        parking: Arc<dyn ParkingStore>,
        ledger: Arc<dyn IdempotencyLedger>,
        processed: Option<Arc<dyn ProcessedLookup>>,
    ) -> Self {
        Self {
            common,
            settings,
            queues,
            parking,
            ledger,
            processed,
            quiet: Auditor::new(None),
            tags: Mutex::new(None),
        }
    }

    /// Whether the processing queue carries the opt-in tag (cached for a minute).
    async fn opted_in(&self) -> Result<bool, AwsError> {
        let cached = self
            .tags
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(at, _)| at.elapsed() < TAG_CACHE)
            .map(|(_, t)| t);
        let tags = match cached {
            Some(t) => t,
            None => {
                let t = self
                    .queues
                    .tags(&self.settings.processing_queue_url)
                    .await?;
                if let Ok(mut c) = self.tags.lock() {
                    *c = Some((Instant::now(), t.clone()));
                }
                t
            }
        };
        Ok(self
            .common
            .guard
            .policy()
            .opt_in
            .matches(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
}

/// How a record's handling ended.
#[derive(Debug, Clone)]
enum Ending {
    Acted(String),
    Skipped(SkipReason),
    DryRun(String),
    Failed(&'static str, String),
}

#[derive(Debug, Clone)]
struct Finish {
    ending: Ending,
    /// Reported in `batchItemFailures`: the record returns to the dead-letter queue.
    failed: bool,
    /// Notify-worthy outcomes go through `common.audit`; routine ones through `quiet`.
    loud: bool,
}

/// One record on its way through the batch.
struct Slot<'a> {
    msg: &'a SqsMessage,
    inc: Incoming,
    key: String,
    audit: AuditBuilder,
    /// An earlier record of this batch with the same ledger key: this one mirrors it.
    primary: Option<usize>,
    pending: Option<(Action, String)>,
    finish: Option<Finish>,
}

impl Slot<'_> {
    fn open(&self) -> bool {
        self.finish.is_none() && self.primary.is_none()
    }

    fn end(&mut self, ending: Ending, failed: bool) {
        let replayed = matches!(ending, Ending::Acted(_))
            && matches!(self.pending, Some((Action::Replay { .. }, _)));
        let loud = !replayed;
        self.pending = None;
        self.finish = Some(Finish {
            ending,
            failed,
            loud,
        });
    }

    fn detail(&mut self, key: &str, value: impl serde::Serialize) {
        self.audit = self.audit.clone().detail(key, value);
    }
}

fn epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
}

fn safe_name(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unnamed".into()
    } else {
        clean
    }
}

impl Deps {
    /// Handles one batch of dead-lettered records. Never fails as a whole: every problem is
    /// a per-record failure (the record returns to the dead-letter queue) with an audit.
    pub async fn handle_batch(&self, msgs: &[SqsMessage], inv: &Invocation) -> Response {
        let now = Utc::now();
        let ts = now.timestamp();
        let c = &self.common;
        let source = msgs
            .iter()
            .find_map(|m| m.event_source_arn.clone())
            .unwrap_or_default();
        let trigger = format!("sqs:{}", source.rsplit(':').next().unwrap_or("?"));
        let source_fifo = is_fifo(&source)
            || msgs
                .iter()
                .any(|m| m.attributes.contains_key("MessageGroupId"));
        let mut first_of_key: HashMap<String, usize> = HashMap::new();
        let mut slots: Vec<Slot> = msgs
            .iter()
            .enumerate()
            .map(|(i, msg)| {
                let inc = plan::read_record(msg);
                let key = plan::ledger_key(FUNCTION, &inc);
                let target = inc
                    .transaction_id()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("message:{}", inc.message_id));
                let audit = c.audit_for(inv, &trigger, &target).details(json!({
                    "message_id": inc.message_id,
                    "replay_count": inc.replay_count(),
                    "group": inc.group_id,
                }));
                let primary = first_of_key.get(&key).copied();
                first_of_key.entry(key.clone()).or_insert(i);
                Slot {
                    msg,
                    inc,
                    key,
                    audit,
                    primary,
                    pending: None,
                    finish: None,
                }
            })
            .collect();
        self.run_stages(&mut slots, inv, now, ts).await;
        resolve_followers(&mut slots);
        if source_fifo {
            hold_back(&mut slots);
        }
        self.respond(slots).await
    }

    async fn run_stages(
        &self,
        slots: &mut [Slot<'_>],
        inv: &Invocation,
        now: DateTime<Utc>,
        ts: i64,
    ) {
        let c = &self.common;
        let fifo = slots.iter().any(|s| s.inc.group_id.is_some());
        // Guardrails that hold for the whole batch. A record that is not handled is reported
        // failed, so it stays in the dead-letter queue: nothing is deleted unhandled.
        if let Some(reason) = c.guard.preflight(now).await {
            end_open(slots, || Ending::Skipped(reason.clone()), true);
            return;
        }
        match self.opted_in().await {
            Ok(true) => {}
            Ok(false) => {
                let reason = SkipReason::new(
                    SkipCode::NotOptedIn,
                    format!(
                        "processing queue {} does not carry the opt-in tag {}",
                        self.settings.processing_queue_url,
                        c.guard.policy().opt_in
                    ),
                );
                end_open(slots, || Ending::Skipped(reason.clone()), true);
                return;
            }
            Err(e) => {
                end_open(slots, || Ending::Failed("tags-failed", e.to_string()), true);
                return;
            }
        }

        // Facts: the ledger, then the processed-transactions table for what is not done.
        let keys: Vec<String> = slots
            .iter()
            .filter(|s| s.open())
            .map(|s| s.key.clone())
            .collect();
        let ledger = match self.ledger.entries(&keys).await {
            Ok(l) => l,
            Err(e) => {
                end_open(
                    slots,
                    || Ending::Failed("ledger-read-failed", e.to_string()),
                    true,
                );
                return;
            }
        };
        let candidates: Vec<String> = slots
            .iter()
            .filter(|s| s.open() && !matches!(ledger.get(&s.key), Some(State::Done { .. })))
            .filter_map(|s| {
                s.inc
                    .parsed
                    .as_ref()
                    .ok()
                    .map(|(t, _)| t.transaction_id.clone())
            })
            .collect();
        let mut applied = HashSet::new();
        if let (Some(p), false) = (&self.processed, candidates.is_empty()) {
            match p.applied(&candidates).await {
                Ok(a) => applied = a,
                Err(e) => {
                    // Without the lookup a replay could credit twice: those records wait.
                    for s in slots.iter_mut().filter(|s| s.open()) {
                        if s.inc.parsed.is_ok()
                            && !matches!(ledger.get(&s.key), Some(State::Done { .. }))
                        {
                            s.end(
                                Ending::Failed("processed-lookup-failed", e.to_string()),
                                true,
                            );
                        }
                    }
                }
            }
        }

        // Decide, record by record.
        let rules = self.settings.rules();
        for s in slots.iter_mut().filter(|s| s.open()) {
            let facts = Facts {
                ledger: ledger.get(&s.key).cloned(),
                applied: s
                    .inc
                    .transaction_id()
                    .is_some_and(|t| s.inc.parsed.is_ok() && applied.contains(t)),
                now: ts,
            };
            match plan::decide(&s.inc, &facts, &rules) {
                Decision::Skip { reason } => {
                    // A record someone else is handling goes back to the queue; one already
                    // handled or applied is done.
                    let failed = reason.code == SkipCode::ChangeInProgress;
                    s.end(Ending::Skipped(reason), failed);
                }
                Decision::Act { action, reason } => s.pending = Some((action, reason)),
            }
        }
        if fifo {
            hold_back(slots);
        }

        if c.guard.dry_run() {
            for s in slots.iter_mut() {
                if let Some((action, reason)) = s.pending.take() {
                    let would = match &action {
                        Action::Replay { message, .. } => {
                            s.detail("delay_seconds", message.delay_seconds);
                            format!("replay to {}: {reason}", self.settings.processing_queue_url)
                        }
                        Action::Park { reason: why, .. } => {
                            format!(
                                "park ({}) at {}: {reason}",
                                why.as_str(),
                                self.parking.location()
                            )
                        }
                    };
                    s.end(Ending::DryRun(would), true);
                }
                // Dry run changes nothing, and deleting a message from the dead-letter
                // queue is a change: every record stays.
                if let Some(f) = &mut s.finish {
                    f.failed = true;
                }
            }
            return;
        }

        // Blast radius per batch.
        let mut replays = 0u32;
        for s in slots.iter_mut() {
            if matches!(s.pending, Some((Action::Replay { .. }, _))) {
                replays += 1;
                if replays > self.settings.max_per_batch {
                    let reason = SkipReason::new(
                        SkipCode::BlastRadius,
                        format!(
                            "{} replays per batch at most (SELFHEAL_REPLAY_MAX_PER_BATCH); this one returns to the queue",
                            self.settings.max_per_batch
                        ),
                    );
                    s.end(Ending::Skipped(reason), true);
                }
            }
        }
        if fifo {
            hold_back(slots);
        }

        // Claim everything about to be acted on, and the hourly budget, in one transaction.
        let lease_until =
            inv.deadline.map(epoch).unwrap_or(ts + 900).max(ts) + LEASE_MARGIN_SECONDS;
        let expires_at = ts + self.settings.record_ttl_seconds as i64;
        let claimed: Vec<usize> = (0..slots.len())
            .filter(|&i| slots.get(i).is_some_and(|s| s.pending.is_some()))
            .collect();
        let claims: Vec<Claim> = claimed
            .iter()
            .filter_map(|&i| slots.get(i))
            .map(|s| Claim {
                key: s.key.clone(),
                owner: inv.request_id.clone(),
                lease_until,
                expires_at,
                uses_budget: matches!(s.pending, Some((Action::Replay { .. }, _))),
            })
            .collect();
        let budget = (self.settings.max_per_hour > 0).then(|| Budget {
            key: format!("{FUNCTION}#replay-budget#{}", now.format("%Y%m%d%H")),
            cap: self.settings.max_per_hour,
            expires_at: ts + 2 * 3600,
        });
        if !claims.is_empty() {
            match self.ledger.claim(&claims, budget.as_ref(), ts).await {
                Err(e) => {
                    for &i in &claimed {
                        if let Some(s) = slots.get_mut(i) {
                            s.end(Ending::Failed("claim-failed", e.to_string()), true);
                        }
                    }
                }
                Ok(results) => {
                    for (&i, r) in claimed.iter().zip(results) {
                        let Some(s) = slots.get_mut(i) else { continue };
                        match r {
                            ClaimResult::Claimed => {}
                            ClaimResult::Conflict => s.end(
                                Ending::Skipped(SkipReason::new(
                                    SkipCode::ChangeInProgress,
                                    "another invocation claimed this message first; it returns to the queue and is looked at again",
                                )),
                                true,
                            ),
                            ClaimResult::BudgetRefused => s.end(
                                Ending::Skipped(SkipReason::new(
                                    SkipCode::BlastRadius,
                                    format!(
                                        "{} replays this hour at most (SELFHEAL_REPLAY_MAX_PER_HOUR); this one returns to the queue",
                                        self.settings.max_per_hour
                                    ),
                                )),
                                true,
                            ),
                        }
                    }
                }
            }
        }
        if fifo {
            hold_back(slots);
        }

        // Act: replays in SendMessageBatch requests, parks in parallel.
        let mut done: Vec<Settle> = Vec::new();
        let mut release: Vec<String> = Vec::new();
        if inv.remaining().is_some_and(|left| left < ACT_RESERVE) {
            // Too close to the deadline to send and record: a claim must not outlive the
            // invocation that acts on it. The claims are given back; the records return.
            for s in slots.iter_mut().filter(|s| s.pending.is_some()) {
                release.push(s.key.clone());
                s.end(
                    Ending::Failed(
                        "deadline",
                        "too close to the Lambda deadline to replay safely; returns to the queue"
                            .into(),
                    ),
                    true,
                );
            }
        }
        let replay_idx: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                matches!(
                    slots.get(i).and_then(|s| s.pending.as_ref()),
                    Some((Action::Replay { .. }, _))
                )
            })
            .collect();
        let messages: Vec<_> = replay_idx
            .iter()
            .filter_map(|&i| match slots.get(i).and_then(|s| s.pending.as_ref()) {
                Some((Action::Replay { message, .. }, _)) => Some(message.clone()),
                _ => None,
            })
            .collect();
        let (park_idx, docs) = self.park_docs(slots, inv, now);
        let (sent, parked) = tokio::join!(
            async {
                if messages.is_empty() {
                    Vec::new()
                } else {
                    self.queues
                        .send(&self.settings.processing_queue_url, &messages)
                        .await
                }
            },
            async {
                if docs.is_empty() {
                    Vec::new()
                } else {
                    self.parking.park(&docs).await
                }
            }
        );
        let queue = &self.settings.processing_queue_url;
        for (&i, res) in replay_idx.iter().zip(sent) {
            let Some(s) = slots.get_mut(i) else { continue };
            let (delay, count) = match &s.pending {
                Some((
                    Action::Replay {
                        message,
                        replay_count,
                        ..
                    },
                    _,
                )) => (message.delay_seconds, *replay_count),
                _ => (None, 0),
            };
            match res {
                Ok(id) => {
                    s.detail("action", "replayed");
                    s.detail("sqs_message_id", &id);
                    s.detail("delay_seconds", delay);
                    done.push(Settle {
                        key: s.key.clone(),
                        outcome: "replayed".into(),
                        detail: format!("replay {count} sent to {queue} as message {id}"),
                        at: ts,
                        expires_at,
                    });
                    let reason = s
                        .pending
                        .as_ref()
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    s.end(
                        Ending::Acted(format!("replayed to {queue}: {reason}")),
                        false,
                    );
                }
                Err(e) if !e.retryable => {
                    // SQS refuses this message and would refuse it again: park it instead
                    // of cycling it through the dead-letter queue.
                    s.detail("replay_error", e.to_string());
                    s.pending = Some((
                        Action::Park {
                            reason: ParkReason::Unreplayable,
                            detail: e.to_string(),
                        },
                        format!("the processing queue refused the replay: {e}"),
                    ));
                }
                Err(e) => {
                    s.detail("retryable", true);
                    release.push(s.key.clone());
                    s.end(Ending::Failed("replay-failed", e.to_string()), true);
                }
            }
        }
        self.settle_parks(
            slots,
            &park_idx,
            parked,
            ts,
            expires_at,
            &mut done,
            &mut release,
        );
        // Second pass: replays SQS refused for good.
        let (park_idx, docs) = self.park_docs(slots, inv, now);
        if !docs.is_empty() {
            let parked = self.parking.park(&docs).await;
            self.settle_parks(
                slots,
                &park_idx,
                parked,
                ts,
                expires_at,
                &mut done,
                &mut release,
            );
        }

        // Record outcomes. A failure here is logged, not retried through the queue: the work
        // is done, and a redelivery would find the claim and wait for its lease.
        if !done.is_empty() || !release.is_empty() {
            if let Err(e) = self.ledger.settle(&done, &release).await {
                tracing::error!(function = FUNCTION, error = %e, "ledger settle failed");
                let settled: HashSet<&String> =
                    done.iter().map(|d| &d.key).chain(&release).collect();
                for s in slots.iter_mut() {
                    if settled.contains(&s.key) {
                        s.detail("ledger_settle_error", e.to_string());
                    }
                }
            }
        }
    }

    /// Parked documents for every pending park, with the indices they belong to.
    fn park_docs(
        &self,
        slots: &[Slot<'_>],
        inv: &Invocation,
        now: DateTime<Utc>,
    ) -> (Vec<usize>, Vec<ParkedDocument>) {
        let mut idx = Vec::new();
        let mut docs = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            let Some((Action::Park { reason, detail }, _)) = &s.pending else {
                continue;
            };
            let doc = json!({
                "reason": reason.as_str(),
                "detail": detail,
                "parked_at": now.to_rfc3339(),
                "function": FUNCTION,
                "request_id": inv.request_id,
                "transaction_id": s.inc.transaction_id(),
                "source": {
                    "queue_arn": s.msg.event_source_arn,
                    "message_id": s.msg.message_id,
                    "attributes": s.msg.attributes,
                },
                "message": {
                    "body": s.msg.body,
                    "message_attributes": s.msg.message_attributes,
                },
                "replay_by_hand": {
                    "queue_url": self.settings.processing_queue_url,
                    "message_group_id": s.inc.group_id,
                    "replay_count": s.inc.replay_count(),
                    "how": "send message.body with message.message_attributes to queue_url; reset replay-count to 0 to grant the full replay allowance again",
                },
            });
            idx.push(i);
            docs.push(ParkedDocument {
                name: format!("{}/{}", reason.as_str(), safe_name(&s.inc.message_id)),
                json: doc.to_string(),
            });
        }
        (idx, docs)
    }

    #[allow(clippy::too_many_arguments)]
    fn settle_parks(
        &self,
        slots: &mut [Slot<'_>],
        idx: &[usize],
        results: Vec<Result<String, AwsError>>,
        ts: i64,
        expires_at: i64,
        done: &mut Vec<Settle>,
        release: &mut Vec<String>,
    ) {
        let location = self.parking.location();
        for (&i, res) in idx.iter().zip(results) {
            let Some(s) = slots.get_mut(i) else { continue };
            let (why, reason) = match &s.pending {
                Some((Action::Park { reason: why, .. }, r)) => (*why, r.clone()),
                _ => continue,
            };
            match res {
                Ok(at) => {
                    s.detail("action", "parked");
                    s.detail("park_reason", why.as_str());
                    s.detail("parked_at", &at);
                    done.push(Settle {
                        key: s.key.clone(),
                        outcome: "parked".into(),
                        detail: format!("{} at {at}", why.as_str()),
                        at: ts,
                        expires_at,
                    });
                    s.end(
                        Ending::Acted(format!("parked ({}) at {location}: {reason}", why.as_str())),
                        false,
                    );
                }
                Err(e) => {
                    s.detail("retryable", e.retryable);
                    release.push(s.key.clone());
                    s.end(Ending::Failed("park-failed", e.to_string()), true);
                }
            }
        }
    }

    async fn respond(&self, slots: Vec<Slot<'_>>) -> Response {
        let mut response = SqsBatchResponse::default();
        let mut audits = Vec::with_capacity(slots.len());
        for s in slots {
            let finish = s.finish.unwrap_or(Finish {
                // Unreachable by construction; a record nobody finished must not be deleted.
                ending: Ending::Failed("not-handled", "the record was not handled".into()),
                failed: true,
                loud: true,
            });
            let audit = s.audit.detail("reported_failed", finish.failed);
            let rec: AuditRecord = match finish.ending {
                Ending::Acted(r) => audit.acted(r),
                Ending::Skipped(r) => audit.skipped(&r),
                Ending::DryRun(w) => audit.dry_run(w),
                Ending::Failed(code, m) => audit.failed(code, m),
            };
            if finish.loud {
                self.common.audit.record(&rec).await;
            } else {
                self.quiet.record(&rec).await;
            }
            if finish.failed {
                response.add_failure(s.inc.message_id.clone());
            }
            audits.push(rec);
        }
        Response {
            body: serde_json::to_value(&response)
                .unwrap_or_else(|_| json!({"batchItemFailures": []})),
            audits,
        }
    }
}

/// Ends every record still open (and every pending one) the same way.
fn end_open(slots: &mut [Slot<'_>], ending: impl Fn() -> Ending, failed: bool) {
    for s in slots
        .iter_mut()
        .filter(|s| s.finish.is_none() && s.primary.is_none())
    {
        s.end(ending(), failed);
    }
}

/// A record with the same key as an earlier one in this batch (a duplicate delivered in
/// the same batch) mirrors it: done when the first is done, failed when it failed.
fn resolve_followers(slots: &mut [Slot<'_>]) {
    for i in 0..slots.len() {
        let Some(p) = slots.get(i).and_then(|s| s.primary) else {
            continue;
        };
        let primary = slots.get(p).and_then(|s| s.finish.clone());
        let primary_id = slots
            .get(p)
            .map(|s| s.inc.message_id.clone())
            .unwrap_or_default();
        let Some(s) = slots.get_mut(i) else { continue };
        let (ending, failed) = match primary {
            Some(Finish { failed: false, .. }) => (
                Ending::Skipped(SkipReason::new(
                    SkipCode::AlreadyDone,
                    format!("duplicate of message {primary_id} in this batch, which was handled"),
                )),
                false,
            ),
            _ => (
                Ending::Skipped(SkipReason::new(
                    SkipCode::ChangeInProgress,
                    format!("duplicate of message {primary_id} in this batch, which was not handled; it returns to the queue"),
                )),
                true,
            ),
        };
        s.detail("duplicate_of", primary_id);
        s.end(ending, failed);
    }
}

/// FIFO order: once a record of a message group fails, later records of that group fail too.
/// One not acted on yet is held back; one already acted on stays recorded as acted (the
/// ledger remembers it, so its redelivery is skipped) but is reported failed.
fn hold_back(slots: &mut [Slot<'_>]) {
    let groups: Vec<Option<String>> = slots.iter().map(|s| s.inc.group_id.clone()).collect();
    let failed: Vec<bool> = slots
        .iter()
        .map(|s| s.finish.as_ref().is_some_and(|f| f.failed))
        .collect();
    let refs: Vec<Option<&str>> = groups.iter().map(|g| g.as_deref()).collect();
    for i in plan::held_back(&refs, &failed) {
        let Some(s) = slots.get_mut(i) else { continue };
        let group = s.inc.group_id.clone().unwrap_or_default();
        s.detail("held_back", true);
        match &mut s.finish {
            Some(f) => f.failed = true,
            None if s.pending.is_some() || s.primary.is_none() => s.end(
                Ending::Skipped(SkipReason::new(
                    SkipCode::HeldBack,
                    format!("an earlier record of message group {group} in this batch was not handled; this one waits for it"),
                )),
                true,
            ),
            None => {}
        }
    }
}

impl Function for Deps {
    async fn handle(&self, event: Value, inv: Invocation) -> Result<Response, HandlerError> {
        let event: SqsEvent = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                return Err(self
                    .common
                    .reject(&inv, "sqs", format!("not an SQS event: {e}"))
                    .await)
            }
        };
        Ok(self.handle_batch(&event.records, &inv).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    const REQUIRED: [(&str, &str); 2] = [
        (
            "SELFHEAL_REPLAY_PROCESSING_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/loyalty",
        ),
        ("SELFHEAL_REPLAY_PARKING", "s3://parked/loyalty"),
    ];

    #[test]
    fn settings_defaults_and_errors() {
        let s = settings(&REQUIRED).unwrap();
        assert_eq!(s.max_replays, 3);
        assert_eq!(s.base_delay_seconds, 30);
        assert_eq!(s.max_per_batch, 100);
        assert_eq!(s.max_per_hour, 10_000);
        assert_eq!(s.processed_key, "transaction_id");
        assert_eq!(s.processed_table, None);
        assert_eq!(s.record_ttl_seconds, 1_209_600);
        assert!(!s.rules().target_fifo);
        assert!(settings(&REQUIRED[..1]).is_err());
        assert!(settings(&REQUIRED[1..]).is_err());
        let mut bad = REQUIRED.to_vec();
        bad.push(("SELFHEAL_REPLAY_MAX_REPLAYS", "many"));
        assert!(settings(&bad).is_err());
        let mut bad = REQUIRED.to_vec();
        bad[1] = ("SELFHEAL_REPLAY_PARKING", "somewhere");
        assert!(settings(&bad).is_err());
    }

    #[test]
    fn lease_epoch_rounds_up() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(epoch(t), 2);
        assert_eq!(epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(3)), 3);
        assert_eq!(safe_name("a/b c"), "a_b_c");
        assert_eq!(safe_name(""), "unnamed");
    }

    #[test]
    fn every_sample_event_for_this_function_parses() {
        let samples = selfheal_core::samples::for_function(FUNCTION).unwrap();
        let mut seen = 0;
        for (name, v) in samples {
            let ev: SqsEvent = serde_json::from_value(v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!ev.records.is_empty(), "{name}");
            let valid = ev
                .records
                .iter()
                .filter(|m| plan::read_record(m).parsed.is_ok())
                .count();
            assert!(valid > 0, "{name}: has a valid transaction");
            seen += 1;
        }
        assert!(
            seen >= 2,
            "expected standard and FIFO samples, found {seen}"
        );
    }
}
