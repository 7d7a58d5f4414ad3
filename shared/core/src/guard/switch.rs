//! The kill switch: one value operators flip without redeploying. An SSM parameter holding
//! `on` or `off`, re-read at most once a minute, and the `SELFHEAL_ENABLED` variable.
//!
//! It fails closed. `SELFHEAL_ENABLED=false` stops the function whatever the parameter says.
//! When a parameter is configured, a missing parameter, a value that is neither on nor off, or
//! a parameter that cannot be read means off; the last value read is trusted for a bounded
//! time only (`SELFHEAL_KILL_SWITCH_MAX_STALE_SECONDS`, 5 minutes by default), so that an SSM
//! hiccup does not stop healing but an outage or a deleted parameter does.

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
    /// The parameter could not be read; the last value read, recent enough, is used.
    LastKnown,
    /// The configured parameter does not exist: off.
    Missing,
    /// The parameter could not be read and no recent value is known: off.
    Unreadable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchState {
    pub enabled: bool,
    pub source: SwitchSource,
}

pub struct KillSwitch {
    parameter: Option<(Arc<dyn Parameters>, String)>,
    environment: bool,
    ttl: Duration,
    max_staleness: Duration,
    /// The last value read from the parameter, and when.
    cache: Mutex<Option<(Instant, bool)>>,
}

impl KillSwitch {
    pub const REFRESH: Duration = Duration::from_secs(60);
    pub const MAX_STALENESS: Duration = Duration::from_secs(300);

    /// `environment` is `SELFHEAL_ENABLED`: when false, the switch is off whatever the
    /// parameter says.
    pub fn new(parameter: Option<(Arc<dyn Parameters>, String)>, environment: bool) -> Self {
        Self {
            parameter,
            environment,
            ttl: Self::REFRESH,
            max_staleness: Self::MAX_STALENESS,
            cache: Mutex::new(None),
        }
    }

    pub fn with_refresh(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a value read before is trusted while the parameter cannot be read.
    pub fn with_max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    pub async fn state(&self) -> SwitchState {
        let off = |source| SwitchState {
            enabled: false,
            source,
        };
        if !self.environment {
            return off(SwitchSource::Environment);
        }
        let Some((params, name)) = &self.parameter else {
            return SwitchState {
                enabled: true,
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
                tracing::warn!(parameter = %name, "kill switch parameter does not exist; treating as off");
                if let Ok(mut c) = self.cache.lock() {
                    *c = None;
                }
                off(SwitchSource::Missing)
            }
            Err(e) => match cached {
                Some((at, enabled)) if at.elapsed() <= self.max_staleness => {
                    tracing::warn!(parameter = %name, error = %e, "kill switch parameter unreadable; using the value read {}s ago", at.elapsed().as_secs());
                    SwitchState {
                        enabled,
                        source: SwitchSource::LastKnown,
                    }
                }
                _ => {
                    tracing::warn!(parameter = %name, error = %e, "kill switch parameter unreadable and no recent value; treating as off");
                    off(SwitchSource::Unreadable)
                }
            },
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

    /// A configured switch that cannot be read, or does not exist, means off: the automation
    /// must not keep acting because the one value meant to stop it is gone or unreachable.
    /// A value read before is trusted only for a bounded time.
    #[tokio::test]
    async fn configured_switch_fails_closed() {
        let boom = || AwsError::new("ssm:GetParameter", "x", "throttled");
        let missing = KillSwitch::new(Some((fake(Ok(None)), "x".into())), true);
        assert!(!missing.state().await.enabled, "missing parameter");
        let cold = KillSwitch::new(Some((fake(Err(boom())), "x".into())), true);
        assert!(!cold.state().await.enabled, "unreadable on a cold start");

        let p = fake(Ok(Some("on".into())));
        let trusted = KillSwitch::new(Some((p.clone(), "x".into())), true)
            .with_refresh(Duration::ZERO)
            .with_max_staleness(Duration::from_secs(300));
        assert!(trusted.state().await.enabled);
        *p.value.lock().unwrap() = Err(boom());
        assert_eq!(
            trusted.state().await,
            SwitchState {
                enabled: true,
                source: SwitchSource::LastKnown
            },
            "a recent value is trusted"
        );
        let p = fake(Ok(Some("on".into())));
        let stale = KillSwitch::new(Some((p.clone(), "x".into())), true)
            .with_refresh(Duration::ZERO)
            .with_max_staleness(Duration::ZERO);
        assert!(stale.state().await.enabled);
        *p.value.lock().unwrap() = Err(boom());
        assert!(!stale.state().await.enabled, "a stale value is not");
    }

    /// SELFHEAL_ENABLED=false stops the function whatever the parameter says.
    #[tokio::test]
    async fn environment_off_wins() {
        let on = KillSwitch::new(Some((fake(Ok(Some("on".into()))), "x".into())), false);
        assert!(!on.state().await.enabled);
    }
}
