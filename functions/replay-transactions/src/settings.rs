//! This function's settings beyond the shared guardrails, read from the environment and
//! validated once per cold start.

use selfheal_core::ports::parking::ParkingLocation;
use selfheal_core::ports::queues::is_fifo;
use selfheal_core::settings::{self, parse_u64};
use selfheal_core::ConfigError;

use crate::plan::Rules;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SELFHEAL_REPLAY_PROCESSING_QUEUE_URL` (required): where transactions are replayed.
    pub processing_queue_url: String,
    /// `SELFHEAL_REPLAY_PARKING` (required): `s3://bucket/prefix/` or an SQS queue URL.
    pub parking: ParkingLocation,
    /// `SELFHEAL_REPLAY_PARKING_MAX_BYTES`: the parking queue's MaximumMessageSize, default
    /// 262144 (256 KiB), between 1024 and 1048576 (SQS's range). A parked document larger
    /// than this is spilled (below). Not used when parking is S3.
    pub parking_max_bytes: usize,
    /// `SELFHEAL_REPLAY_SPILL`: `s3://bucket/prefix/` where a parked document too large for
    /// the parking queue is written whole, a small pointer to it being parked instead. Unset:
    /// such a record stays in the dead-letter queue and a person is told (once). Not used
    /// when parking is S3 (an object has no such limit).
    pub spill: Option<ParkingLocation>,
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
    /// `SELFHEAL_REPLAY_DLQ_RETENTION_SECONDS`: the dead-letter queue's MessageRetentionPeriod,
    /// default 1209600 (14 days, SQS's longest and the template's). Set it to the queue's
    /// value when shorter: a record is parked before that age (see below).
    pub dlq_retention_seconds: u64,
    /// `SELFHEAL_REPLAY_PARK_BEFORE_EXPIRY_SECONDS`: a record still in the dead-letter queue
    /// this long before its retention ends is parked as expiring; default 86400 (a day of
    /// redeliveries left to park it). Must be below the retention.
    pub park_before_expiry_seconds: u64,
    /// `SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS`: how long after a batch's replays are due (their
    /// delay included) its verification looks for them in the processed-transactions table,
    /// and the time between further looks; default 300, from 10 to 21600.
    pub verify_after_seconds: u64,
    /// `SELFHEAL_REPLAY_VERIFY_MAX_CHECKS`: looks at a batch's replays before the ones still
    /// not applied are escalated to a person; default 3, from 1 to 20, and all looks within a
    /// day (`verify_after_seconds` times this at most 86400: the ledger keeps a batch's list
    /// a day past its first look).
    pub verify_max_checks: u32,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(settings::env)
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = settings::lookup(get);
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
        let parking_max_bytes = parse_u64(&get, "SELFHEAL_REPLAY_PARKING_MAX_BYTES", 262_144)?;
        if !(1_024..=1_048_576).contains(&parking_max_bytes) {
            return Err(ConfigError::Invalid {
                name: "SELFHEAL_REPLAY_PARKING_MAX_BYTES",
                value: parking_max_bytes.to_string(),
                expected:
                    "a size in bytes from 1024 to 1048576 (the parking queue's MaximumMessageSize)",
            });
        }
        let spill = match get("SELFHEAL_REPLAY_SPILL") {
            None => None,
            Some(v) => match ParkingLocation::parse(&v) {
                Ok(l @ ParkingLocation::S3 { .. }) => Some(l),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "SELFHEAL_REPLAY_SPILL",
                        value: v.clone(),
                        expected: "s3://bucket/prefix/",
                    })
                }
            },
        };
        // Counts and caps are u32 in the ledger and the decisions; a larger value is a typo.
        let small = |name: &'static str, default: u64| -> Result<u32, ConfigError> {
            let v = parse_u64(&get, name, default)?;
            u32::try_from(v).map_err(|_| ConfigError::Invalid {
                name,
                value: v.to_string(),
                expected: "a whole number below 4294967296",
            })
        };
        let dlq_retention_seconds =
            parse_u64(&get, "SELFHEAL_REPLAY_DLQ_RETENTION_SECONDS", 14 * 86_400)?;
        let park_before_expiry_seconds =
            parse_u64(&get, "SELFHEAL_REPLAY_PARK_BEFORE_EXPIRY_SECONDS", 86_400)?;
        if park_before_expiry_seconds >= dlq_retention_seconds {
            return Err(ConfigError::Invalid {
                name: "SELFHEAL_REPLAY_PARK_BEFORE_EXPIRY_SECONDS",
                value: park_before_expiry_seconds.to_string(),
                expected: "fewer seconds than SELFHEAL_REPLAY_DLQ_RETENTION_SECONDS",
            });
        }
        let verify_after_seconds = parse_u64(&get, "SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS", 300)?;
        if !(10..=21_600).contains(&verify_after_seconds) {
            return Err(ConfigError::Invalid {
                name: "SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS",
                value: verify_after_seconds.to_string(),
                expected: "seconds from 10 to 21600",
            });
        }
        let verify_max_checks = small("SELFHEAL_REPLAY_VERIFY_MAX_CHECKS", 3)?;
        if !(1..=20).contains(&verify_max_checks)
            || verify_after_seconds * u64::from(verify_max_checks) > 86_400
        {
            return Err(ConfigError::Invalid {
                name: "SELFHEAL_REPLAY_VERIFY_MAX_CHECKS",
                value: verify_max_checks.to_string(),
                expected:
                    "from 1 to 20, and times SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS at most 86400",
            });
        }
        Ok(Self {
            processing_queue_url,
            parking,
            parking_max_bytes: usize::try_from(parking_max_bytes).unwrap_or(262_144),
            spill,
            processed_table: get("SELFHEAL_REPLAY_PROCESSED_TABLE"),
            processed_key: get("SELFHEAL_REPLAY_PROCESSED_KEY")
                .unwrap_or_else(|| "transaction_id".into()),
            max_replays: small("SELFHEAL_REPLAY_MAX_REPLAYS", 3)?,
            base_delay_seconds: small("SELFHEAL_REPLAY_BASE_DELAY_SECONDS", 30)?,
            max_per_batch: small("SELFHEAL_REPLAY_MAX_PER_BATCH", 100)?,
            max_per_hour: small("SELFHEAL_REPLAY_MAX_PER_HOUR", 10_000)?,
            record_ttl_seconds: parse_u64(&get, "SELFHEAL_REPLAY_RECORD_TTL_SECONDS", 14 * 86_400)?,
            dlq_retention_seconds,
            park_before_expiry_seconds,
            verify_after_seconds,
            verify_max_checks,
        })
    }

    /// The largest document the parking location takes as is: the queue's limit, none for S3.
    pub fn parking_limit(&self) -> Option<usize> {
        match self.parking {
            ParkingLocation::Queue { .. } => Some(self.parking_max_bytes),
            ParkingLocation::S3 { .. } => None,
        }
    }

    /// What the per-record decisions need to know of the settings.
    pub fn rules(&self) -> Rules {
        Rules {
            max_replays: self.max_replays,
            base_delay_seconds: self.base_delay_seconds,
            target_fifo: is_fifo(&self.processing_queue_url),
            park_at_age_seconds: self
                .dlq_retention_seconds
                .saturating_sub(self.park_before_expiry_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        assert_eq!(s.parking_max_bytes, 262_144);
        assert_eq!(s.spill, None);
        assert_eq!(s.parking_limit(), None, "S3 parking has no size limit");
        assert!(!s.rules().target_fifo);
        assert_eq!(s.rules().park_at_age_seconds, 13 * 86_400);
        assert_eq!((s.verify_after_seconds, s.verify_max_checks), (300, 3));
        for (after, checks, ok) in [
            ("10", "1", true),
            ("21600", "4", true),
            ("9", "1", false),
            ("21601", "1", false),
            ("300", "0", false),
            ("300", "21", false),
            ("21600", "5", false),
        ] {
            let mut env = REQUIRED.to_vec();
            env.push(("SELFHEAL_REPLAY_VERIFY_AFTER_SECONDS", after));
            env.push(("SELFHEAL_REPLAY_VERIFY_MAX_CHECKS", checks));
            assert_eq!(settings(&env).is_ok(), ok, "{after} x {checks}");
        }
        let mut short = REQUIRED.to_vec();
        short.push(("SELFHEAL_REPLAY_DLQ_RETENTION_SECONDS", "345600"));
        assert_eq!(
            settings(&short).unwrap().rules().park_at_age_seconds,
            3 * 86_400
        );
        short.push(("SELFHEAL_REPLAY_PARK_BEFORE_EXPIRY_SECONDS", "345600"));
        assert!(
            settings(&short).is_err(),
            "the margin must leave some retention"
        );
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
    fn parking_size_and_spill() {
        let queue = [
            REQUIRED[0],
            (
                "SELFHEAL_REPLAY_PARKING",
                "https://sqs.eu-west-1.amazonaws.com/1/parked",
            ),
        ];
        assert_eq!(settings(&queue).unwrap().parking_limit(), Some(262_144));
        for (value, ok) in [
            ("1024", true),
            ("1048576", true),
            ("1023", false),
            ("1048577", false),
        ] {
            let mut env = queue.to_vec();
            env.push(("SELFHEAL_REPLAY_PARKING_MAX_BYTES", value));
            assert_eq!(settings(&env).is_ok(), ok, "{value}");
        }
        let mut env = queue.to_vec();
        env.push(("SELFHEAL_REPLAY_SPILL", "s3://spill/big"));
        assert_eq!(
            settings(&env).unwrap().spill,
            Some(ParkingLocation::S3 {
                bucket: "spill".into(),
                prefix: "big/".into()
            })
        );
        let mut env = queue.to_vec();
        env.push((
            "SELFHEAL_REPLAY_SPILL",
            "https://sqs.eu-west-1.amazonaws.com/1/q",
        ));
        assert!(settings(&env).is_err(), "a spill location is a bucket");
    }
}
