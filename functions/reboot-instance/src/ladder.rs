//! The escalation ladder (closed loop): what comes after a reboot that did not heal, and
//! whether a verification found the instance healed. Pure.
//!
//! `SELFHEAL_REBOOT_LADDER` lists the rungs in order, starting with the reboot the alarm
//! triggers (default `reboot,notify`): each rung that does not heal leads to the next, each
//! through the same guardrails; the last is always `notify` (a person is told, nothing more is
//! done), added when the setting leaves it out. `stop-start` is taken only with
//! `SELFHEAL_REBOOT_ALLOW_STOP_START=true`, only for an EBS-backed instance outside an Auto
//! Scaling group (its group would replace a stopped instance), and only when a follow-up can
//! start it again; otherwise it is skipped, with its reason.

use serde::Serialize;

use selfheal_core::alarm::AlarmState;
use selfheal_core::ports::instances::{InstanceFacts, StatusChecks};
use selfheal_core::settings::ConfigError;

/// The setting that lists the rungs.
pub const LADDER: &str = "SELFHEAL_REBOOT_LADDER";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rung {
    Reboot,
    StopStart,
    Notify,
}

impl Rung {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reboot => "reboot",
            Self::StopStart => "stop-start",
            Self::Notify => "notify",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reboot" => Some(Self::Reboot),
            "stop-start" | "stopstart" | "stop_start" => Some(Self::StopStart),
            "notify" => Some(Self::Notify),
            _ => None,
        }
    }
}

/// The rungs, in order: the first is the reboot, the last `notify`.
pub fn parse_ladder(v: Option<&str>) -> Result<Vec<Rung>, ConfigError> {
    let invalid = |value: &str| ConfigError::Invalid {
        name: LADDER,
        value: value.to_string(),
        expected: "rungs reboot, stop-start, notify separated by commas, starting with reboot",
    };
    let Some(v) = v else {
        return Ok(vec![Rung::Reboot, Rung::Notify]);
    };
    let mut rungs = Vec::new();
    for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        rungs.push(Rung::parse(word).ok_or_else(|| invalid(v))?);
    }
    if rungs.first() != Some(&Rung::Reboot) {
        return Err(invalid(v));
    }
    // Nothing after a person is told; and a person is always told at the end.
    if let Some(i) = rungs.iter().position(|r| *r == Rung::Notify) {
        rungs.truncate(i + 1);
    } else {
        rungs.push(Rung::Notify);
    }
    Ok(rungs)
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The alarm is OK and both status checks pass.
    Healed,
    /// Not decided yet: the alarm is OK but the checks are still initializing, or the alarm
    /// has no data. Checked again later.
    NotYet(String),
    /// Still sick: the next rung.
    NotHealed(String),
    /// Nothing more can be done automatically (the alarm or the instance is gone, the
    /// instance is not running): a person is told.
    Escalate(String),
}

/// Judges the alarm as it is now (`None`: deleted) and the instance's status checks.
pub fn judge(
    alarm: Option<&AlarmState>,
    instance: Option<&InstanceFacts>,
    checks: Option<&StatusChecks>,
) -> Finding {
    let Some(alarm) = alarm else {
        return Finding::Escalate(
            "the alarm no longer exists: whether the reboot healed the \
                                  instance cannot be told"
                .into(),
        );
    };
    match instance.map(|i| i.state.as_str()) {
        None => return Finding::Escalate("the instance no longer exists".into()),
        Some("running") => {}
        Some(other) => {
            return Finding::Escalate(format!(
                "the instance is {other}, not running: someone else is acting on it"
            ))
        }
    }
    let checks_text = checks
        .map(|c| {
            format!(
                "instance check {}, system check {}",
                c.instance.as_deref().unwrap_or("unknown"),
                c.system.as_deref().unwrap_or("unknown")
            )
        })
        .unwrap_or_else(|| "no status checks reported".into());
    match alarm {
        AlarmState::Alarm => {
            Finding::NotHealed(format!("the alarm is still in ALARM ({checks_text})"))
        }
        _ if checks.is_some_and(StatusChecks::impaired) => {
            Finding::NotHealed(format!("the alarm is {alarm} but {checks_text}"))
        }
        AlarmState::Ok if checks.is_some_and(StatusChecks::ok) => Finding::Healed,
        _ => Finding::NotYet(format!("the alarm is {alarm}, {checks_text}")),
    }
}

/// A rung passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub rung: Rung,
    pub reason: String,
}

/// The next rung to take after rung `after` (an index into `ladder`), with the rungs passed
/// over on the way. Stops at `notify` (a ladder always ends with it).
pub fn next_rung(
    ladder: &[Rung],
    after: usize,
    instance: &InstanceFacts,
    stop_start: StopStartTerms,
) -> (usize, Rung, Vec<Skipped>) {
    let mut skipped = Vec::new();
    for (i, rung) in ladder.iter().enumerate().skip(after + 1) {
        match rung {
            Rung::StopStart => match stop_start_refusal(instance, stop_start) {
                Some(reason) => skipped.push(Skipped {
                    rung: *rung,
                    reason,
                }),
                None => return (i, *rung, skipped),
            },
            _ => return (i, *rung, skipped),
        }
    }
    (ladder.len(), Rung::Notify, skipped)
}

/// What a stop-start needs besides the instance: the setting, and a follow-up to start the
/// instance again (no stop without a start scheduled first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopStartTerms {
    /// `SELFHEAL_REBOOT_ALLOW_STOP_START`.
    pub allowed: bool,
    /// A scheduler is configured.
    pub can_follow_up: bool,
}

/// Why a stop-start may not be taken on this instance (`None`: it may). A stop moves the
/// instance to other hardware (what a reboot cannot do), but loses instance-store data and a
/// public IPv4 address that is not an Elastic IP: opt-in only.
pub fn stop_start_refusal(instance: &InstanceFacts, s: StopStartTerms) -> Option<String> {
    if !s.allowed {
        return Some(
            "stop-start is not allowed (SELFHEAL_REBOOT_ALLOW_STOP_START is not true)".into(),
        );
    }
    if let Some(g) = instance.tags.get("aws:autoscaling:groupName") {
        return Some(format!(
            "{} is in Auto Scaling group {g}, which would replace it when stopped",
            instance.id
        ));
    }
    if instance.root_device_type.as_deref() != Some("ebs") {
        return Some(format!(
            "{} is not EBS-backed (root device {}): a stop would lose its root volume",
            instance.id,
            instance.root_device_type.as_deref().unwrap_or("unknown")
        ));
    }
    if !s.can_follow_up {
        return Some(
            "no scheduler configured: nothing would start the instance again after the stop".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn instance(state: &str, asg: Option<&str>) -> InstanceFacts {
        let mut tags = BTreeMap::new();
        if let Some(g) = asg {
            tags.insert("aws:autoscaling:groupName".to_string(), g.to_string());
        }
        InstanceFacts {
            id: "i-1".into(),
            state: state.into(),
            tags,
            root_device_type: Some("ebs".into()),
        }
    }

    const ALLOWED: StopStartTerms = StopStartTerms {
        allowed: true,
        can_follow_up: true,
    };
    const NOT_ALLOWED: StopStartTerms = StopStartTerms {
        allowed: false,
        can_follow_up: true,
    };

    fn checks(i: &str, s: &str) -> StatusChecks {
        StatusChecks {
            instance: Some(i.into()),
            system: Some(s.into()),
        }
    }

    #[test]
    fn ladders_start_with_the_reboot_and_end_with_a_person() {
        use Rung::*;
        assert_eq!(parse_ladder(None).unwrap(), [Reboot, Notify]);
        assert_eq!(parse_ladder(Some("reboot")).unwrap(), [Reboot, Notify]);
        assert_eq!(
            parse_ladder(Some(" reboot , stop-start, notify ")).unwrap(),
            [Reboot, StopStart, Notify]
        );
        assert_eq!(
            parse_ladder(Some("reboot,reboot,notify,reboot")).unwrap(),
            [Reboot, Reboot, Notify]
        );
        for bad in ["notify", "stop-start,reboot", "reboot,replace", ""] {
            assert!(parse_ladder(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn judge_table() {
        let running = instance("running", None);
        let ok = checks("ok", "ok");
        let f = |a: Option<AlarmState>, i: Option<&InstanceFacts>, c: Option<&StatusChecks>| {
            judge(a.as_ref(), i, c)
        };
        assert_eq!(
            f(Some(AlarmState::Ok), Some(&running), Some(&ok)),
            Finding::Healed
        );
        assert!(matches!(
            f(Some(AlarmState::Alarm), Some(&running), Some(&ok)),
            Finding::NotHealed(_)
        ));
        assert!(matches!(
            f(
                Some(AlarmState::Ok),
                Some(&running),
                Some(&checks("impaired", "ok"))
            ),
            Finding::NotHealed(_)
        ));
        assert!(matches!(
            f(
                Some(AlarmState::Ok),
                Some(&running),
                Some(&checks("initializing", "ok"))
            ),
            Finding::NotYet(_)
        ));
        assert!(matches!(
            f(
                Some(AlarmState::InsufficientData),
                Some(&running),
                Some(&ok)
            ),
            Finding::NotYet(_)
        ));
        assert!(matches!(
            f(None, Some(&running), Some(&ok)),
            Finding::Escalate(_)
        ));
        assert!(matches!(
            f(Some(AlarmState::Alarm), None, None),
            Finding::Escalate(_)
        ));
        assert!(matches!(
            f(
                Some(AlarmState::Alarm),
                Some(&instance("stopped", None)),
                None
            ),
            Finding::Escalate(_)
        ));
    }

    #[test]
    fn stop_start_is_taken_only_when_allowed_and_safe_else_skipped_with_its_reason() {
        use Rung::*;
        let ladder = [Reboot, StopStart, Notify];
        let running = instance("running", None);
        let (i, rung, skipped) = next_rung(&ladder, 0, &running, NOT_ALLOWED);
        assert_eq!((i, rung), (2, Notify));
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0]
            .reason
            .contains("SELFHEAL_REBOOT_ALLOW_STOP_START"));
        let (_, _, skipped) = next_rung(&ladder, 0, &instance("running", Some("web")), ALLOWED);
        assert!(
            skipped[0].reason.contains("Auto Scaling group web"),
            "{skipped:?}"
        );
        let mut store = running.clone();
        store.root_device_type = Some("instance-store".into());
        let (_, _, skipped) = next_rung(&ladder, 0, &store, ALLOWED);
        assert!(skipped[0].reason.contains("not EBS-backed"), "{skipped:?}");
        let no_scheduler = StopStartTerms {
            allowed: true,
            can_follow_up: false,
        };
        let (_, _, skipped) = next_rung(&ladder, 0, &running, no_scheduler);
        assert!(skipped[0].reason.contains("no scheduler"), "{skipped:?}");
        assert_eq!(
            next_rung(&ladder, 0, &running, ALLOWED),
            (1, StopStart, vec![])
        );
        let (i, rung, skipped) = next_rung(&[Reboot, Reboot, Notify], 0, &running, NOT_ALLOWED);
        assert_eq!((i, rung, skipped.len()), (1, Reboot, 0));
        assert_eq!(
            next_rung(&[Reboot, Notify], 1, &running, NOT_ALLOWED).1,
            Notify
        );
    }
}
