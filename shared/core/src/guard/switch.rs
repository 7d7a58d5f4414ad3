//! The kill switch: one value operators flip without redeploying. An SSM parameter holding
//! `on` or `off`, re-read at most once a minute; the `SELFHEAL_ENABLED` variable is the
//! fallback when no parameter is configured or it cannot be read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ports::parameters::Parameters;
use crate::settings::bool_word;

/// Where the switch's current value came from (recorded in audit records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchSource {
    Parameter,
    Environment,
    /// The parameter could not be read; the last value read is used.
    LastKnown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchState {
    pub enabled: bool,
    pub source: SwitchSource,
}

pub struct KillSwitch {
    parameter: Option<(Arc<dyn Parameters>, String)>,
    fallback: bool,
    ttl: Duration,
    cache: Mutex<Option<(Instant, bool)>>,
}

impl KillSwitch {
    pub const REFRESH: Duration = Duration::from_secs(60);

    pub fn new(parameter: Option<(Arc<dyn Parameters>, String)>, fallback: bool) -> Self {
        Self {
            parameter,
            fallback,
            ttl: Self::REFRESH,
            cache: Mutex::new(None),
        }
    }

    pub fn with_refresh(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub async fn state(&self) -> SwitchState {
        let Some((params, name)) = &self.parameter else {
            return SwitchState {
                enabled: self.fallback,
                source: SwitchSource::Environment,
            };
        };
        let cached = self.cache.lock().ok().and_then(|c| *c);
        if let Some((at, enabled)) = cached {
            if at.elapsed() < self.ttl {
                return SwitchState {
                    enabled,
                    source: SwitchSource::Parameter,
                };
            }
        }
        match params.get(name).await {
            Ok(Some(value)) => {
                // A value we cannot read as on/off stops the automation: an operator who
                // typed something into the kill switch most likely meant "stop".
                let enabled = bool_word(&value).unwrap_or_else(|| {
                    tracing::warn!(parameter = %name, value = %value, "kill switch value is neither on nor off; treating as off");
                    false
                });
                if let Ok(mut c) = self.cache.lock() {
                    *c = Some((Instant::now(), enabled));
                }
                SwitchState {
                    enabled,
                    source: SwitchSource::Parameter,
                }
            }
            Ok(None) => {
                tracing::warn!(parameter = %name, "kill switch parameter does not exist; using SELFHEAL_ENABLED");
                SwitchState {
                    enabled: self.fallback,
                    source: SwitchSource::Environment,
                }
            }
            Err(e) => {
                tracing::warn!(parameter = %name, error = %e, "kill switch parameter unreadable");
                match cached {
                    Some((_, enabled)) => SwitchState {
                        enabled,
                        source: SwitchSource::LastKnown,
                    },
                    None => SwitchState {
                        enabled: self.fallback,
                        source: SwitchSource::Environment,
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AwsError;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        value: Mutex<Result<Option<String>, AwsError>>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl Parameters for Fake {
        async fn get(&self, _: &str) -> Result<Option<String>, AwsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.value.lock().unwrap().clone()
        }
    }

    fn fake(v: Result<Option<String>, AwsError>) -> Arc<Fake> {
        Arc::new(Fake {
            value: Mutex::new(v),
            reads: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn parameter_wins_and_is_cached() {
        let p = fake(Ok(Some("off".into())));
        let s = KillSwitch::new(Some((p.clone(), "x".into())), true);
        assert!(!s.state().await.enabled);
        *p.value.lock().unwrap() = Ok(Some("on".into()));
        assert!(!s.state().await.enabled, "cached for a minute");
        assert_eq!(p.reads.load(Ordering::SeqCst), 1);
        let s = s.with_refresh(Duration::ZERO);
        assert!(s.state().await.enabled);
    }

    #[tokio::test]
    async fn fallbacks() {
        let none = KillSwitch::new(None, false);
        assert_eq!(
            none.state().await,
            SwitchState {
                enabled: false,
                source: SwitchSource::Environment
            }
        );
        let missing = KillSwitch::new(Some((fake(Ok(None)), "x".into())), true);
        assert!(missing.state().await.enabled);
        let garbage = KillSwitch::new(Some((fake(Ok(Some("pause".into()))), "x".into())), true);
        assert!(!garbage.state().await.enabled);
        let p = fake(Ok(Some("off".into())));
        let s = KillSwitch::new(Some((p.clone(), "x".into())), true).with_refresh(Duration::ZERO);
        assert!(!s.state().await.enabled);
        *p.value.lock().unwrap() = Err(AwsError::new("ssm:GetParameter", "x", "boom"));
        assert_eq!(
            s.state().await,
            SwitchState {
                enabled: false,
                source: SwitchSource::LastKnown
            }
        );
    }
}
