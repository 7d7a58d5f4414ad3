//! Function-wide limits, over a sliding window rather than a clock hour: how many actions the
//! function took in the last hour (blast radius), how many in one group of targets (an Auto
//! Scaling group, or a `selfheal:group` tag), and a correlated-failure breaker that stops all
//! action when many distinct targets alarm at once — the sign of a shared dependency failing,
//! which no number of reboots fixes.
//!
//! All of it is one record per function in the ledger ([`FleetRecord`]), read with the
//! target's record and written with it in one conditional transaction.

use std::time::Duration;

use serde::Serialize;

use crate::decision::{SkipCode, SkipReason};
use crate::guard::limits::human;
use crate::ports::ledger::{FleetAction, FleetAlarm, FleetRecord};

/// The function-wide limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FleetLimits {
    /// Actions allowed in any rolling hour, by the whole function.
    pub per_hour: u32,
    /// Actions allowed in any rolling hour within one group.
    pub per_group_per_hour: u32,
    /// Distinct targets alarming within `breaker_window` that open the breaker (0: never).
    pub breaker_targets: u32,
    pub breaker_window: Duration,
}

const HOUR: i64 = 3600;

impl FleetLimits {
    /// How far back the record must remember.
    pub fn horizon(&self) -> i64 {
        HOUR.max(self.breaker_window.as_secs() as i64)
    }
}

/// What the record says about acting on `target` (in `group`) at `now`, after it registered
/// the target's alarm: `Ok` to act, or why not. The breaker is checked first (it overrides
/// everything), then the group cap, then the function's budget.
pub fn check_fleet(
    record: &FleetRecord,
    limits: &FleetLimits,
    group: Option<&str>,
    now: i64,
) -> Result<(), SkipReason> {
    if let Some(reason) = breaker(record, limits, now) {
        return Err(reason);
    }
    let hour_ago = now - HOUR;
    let recent = || record.actions.iter().filter(|a| a.at > hour_ago);
    if let Some(g) = group {
        let in_group = recent().filter(|a| a.group.as_deref() == Some(g)).count() as u32;
        if in_group >= limits.per_group_per_hour {
            return Err(SkipReason::new(
                SkipCode::GroupCap,
                format!(
                    "{in_group} actions in group {g} in the last hour; the cap per group is {} — escalating to a person",
                    limits.per_group_per_hour
                ),
            ));
        }
    }
    let total = recent().count() as u32;
    if total >= limits.per_hour {
        return Err(SkipReason::new(
            SkipCode::BlastRadius,
            format!(
                "{total} actions in the last hour; the function's cap is {} — escalating to a person",
                limits.per_hour
            ),
        ));
    }
    Ok(())
}

/// The breaker's verdict: `None` when closed. It trips when `breaker_targets` distinct
/// targets alarmed within the window, and stays open until the window has passed since it
/// tripped (or an operator deletes the record).
fn breaker(record: &FleetRecord, limits: &FleetLimits, now: i64) -> Option<SkipReason> {
    if limits.breaker_targets == 0 {
        return None;
    }
    let window = limits.breaker_window.as_secs() as i64;
    if let Some(at) = record.tripped_at {
        if now - at < window {
            return Some(SkipReason::new(
                SkipCode::BreakerOpen,
                format!(
                    "the correlated-failure breaker is open since {}s ago ({} distinct targets alarmed within {}): not acting until it closes",
                    now - at,
                    limits.breaker_targets,
                    human(limits.breaker_window)
                ),
            ));
        }
    }
    None
}

/// Should this registration trip the breaker? True when the breaker is closed and the
/// distinct targets alarmed within the window reached the threshold.
pub fn should_trip(record: &FleetRecord, limits: &FleetLimits, now: i64) -> bool {
    if limits.breaker_targets == 0 || breaker(record, limits, now).is_some() {
        return false;
    }
    distinct_alarmed(record, limits, now) >= limits.breaker_targets as usize
}

/// Distinct targets that alarmed within the breaker's window.
pub fn distinct_alarmed(record: &FleetRecord, limits: &FleetLimits, now: i64) -> usize {
    let since = now - limits.breaker_window.as_secs() as i64;
    let mut targets: Vec<&str> = record
        .alarmed
        .iter()
        .filter(|a| a.at > since)
        .map(|a| a.target.as_str())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets.len()
}

/// The skip that trips the breaker: a person must hear about it, once.
pub fn tripped(record: &FleetRecord, limits: &FleetLimits, now: i64) -> SkipReason {
    SkipReason::new(
        SkipCode::BreakerTripped,
        format!(
            "{} distinct targets alarmed within {} (threshold {}): a shared dependency may be failing; \
             not acting on any target for {} unless an operator resets the breaker",
            distinct_alarmed(record, limits, now),
            human(limits.breaker_window),
            limits.breaker_targets,
            human(limits.breaker_window)
        ),
    )
}

impl FleetRecord {
    /// The record with entries older than `horizon` seconds dropped (and a breaker that
    /// closed forgotten).
    pub fn pruned(&self, now: i64, limits: &FleetLimits) -> FleetRecord {
        let since = now - limits.horizon();
        let window = limits.breaker_window.as_secs() as i64;
        FleetRecord {
            version: self.version,
            actions: self
                .actions
                .iter()
                .filter(|a| a.at > since)
                .cloned()
                .collect(),
            alarmed: self
                .alarmed
                .iter()
                .filter(|a| a.at > now - window)
                .cloned()
                .collect(),
            tripped_at: self.tripped_at.filter(|at| now - at < window),
        }
    }

    /// Whether `target` already alarmed within the breaker's window (then registering it
    /// again changes nothing the breaker counts).
    pub fn knows_alarm(&self, target: &str, now: i64, limits: &FleetLimits) -> bool {
        let since = now - limits.breaker_window.as_secs() as i64;
        self.alarmed
            .iter()
            .any(|a| a.target == target && a.at > since)
    }

    pub fn with_alarm(mut self, target: &str, now: i64) -> FleetRecord {
        self.alarmed.retain(|a| a.target != target);
        self.alarmed.push(FleetAlarm {
            at: now,
            target: target.to_string(),
        });
        self
    }

    pub fn with_action(mut self, target: &str, group: Option<&str>, now: i64) -> FleetRecord {
        self.actions.push(FleetAction {
            at: now,
            target: target.to_string(),
            group: group.map(str::to_string),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FleetLimits = FleetLimits {
        per_hour: 3,
        per_group_per_hour: 2,
        breaker_targets: 4,
        breaker_window: Duration::from_secs(600),
    };

    fn record(actions: &[(i64, &str, Option<&str>)]) -> FleetRecord {
        FleetRecord {
            version: 1,
            actions: actions
                .iter()
                .map(|(at, t, g)| FleetAction {
                    at: *at,
                    target: t.to_string(),
                    group: g.map(str::to_string),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn code(r: Result<(), SkipReason>) -> Option<SkipCode> {
        r.err().map(|r| r.code)
    }

    /// 3 actions at 10:59 and 3 more at 11:00 both passed a clock-hour budget; a sliding
    /// window counts the last 60 minutes whatever the clock says.
    #[test]
    fn the_budget_slides_across_the_hour() {
        let now = 11 * HOUR;
        let r = record(&[
            (now - 60, "a", None),
            (now - 50, "b", None),
            (now - 40, "c", None),
        ]);
        assert_eq!(
            code(check_fleet(&r, &LIMITS, None, now)),
            Some(SkipCode::BlastRadius)
        );
        assert_eq!(code(check_fleet(&r, &LIMITS, None, now + HOUR - 59)), None);
    }

    #[test]
    fn a_group_has_its_own_cap() {
        let now = 10 * HOUR;
        let r = record(&[(now - 10, "a", Some("web")), (now - 5, "b", Some("web"))]);
        assert_eq!(
            code(check_fleet(&r, &LIMITS, Some("web"), now)),
            Some(SkipCode::GroupCap)
        );
        assert_eq!(code(check_fleet(&r, &LIMITS, Some("db"), now)), None);
        assert_eq!(code(check_fleet(&r, &LIMITS, None, now)), None);
    }

    #[test]
    fn the_breaker_trips_once_on_distinct_targets_and_closes_after_the_window() {
        let now = 10 * HOUR;
        let mut r = FleetRecord::default();
        for (i, t) in ["a", "b", "a", "c"].iter().enumerate() {
            r = r.with_alarm(t, now + i as i64);
            assert!(!should_trip(&r, &LIMITS, now + i as i64), "{t}");
        }
        r = r.with_alarm("d", now + 4);
        assert!(should_trip(&r, &LIMITS, now + 4));
        assert_eq!(tripped(&r, &LIMITS, now + 4).code, SkipCode::BreakerTripped);
        r.tripped_at = Some(now + 4);
        assert!(!should_trip(&r, &LIMITS, now + 5), "trips once");
        assert_eq!(
            code(check_fleet(&r, &LIMITS, None, now + 5)),
            Some(SkipCode::BreakerOpen)
        );
        let later = now + 4 + 600;
        let closed = r.pruned(later, &LIMITS);
        assert_eq!(code(check_fleet(&closed, &LIMITS, None, later)), None);
        assert!(closed.alarmed.is_empty());
    }

    #[test]
    fn a_breaker_of_zero_never_trips() {
        let off = FleetLimits {
            breaker_targets: 0,
            ..LIMITS
        };
        let mut r = FleetRecord::default();
        for i in 0..100 {
            r = r.with_alarm(&format!("t{i}"), 10);
        }
        assert!(!should_trip(&r, &off, 10));
    }
}
