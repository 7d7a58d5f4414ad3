//! The per-target limits (cooldown and cap) and the pure check of a target's record against
//! them.

use std::time::Duration;

use crate::decision::{SkipCode, SkipReason};
use crate::ports::ledger::TargetRecord;

/// The limits the ledger enforces per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    pub cooldown: Duration,
    pub cap: u32,
    pub cap_window: Duration,
}

/// Pure check of a target's record against its limits at `now` (epoch seconds). The cap is
/// checked first: a target that keeps failing must reach a person, even inside a cooldown.
pub fn check_target(
    record: &TargetRecord,
    limits: &TargetLimits,
    now: i64,
) -> Result<(), SkipReason> {
    let window_start = now - limits.cap_window.as_secs() as i64;
    let in_window = |times: &[i64]| times.iter().filter(|t| **t > window_start).count() as u32;
    let (acted, failed) = (in_window(&record.actions), in_window(&record.failures));
    if acted + failed >= limits.cap {
        let note = if failed > 0 {
            format!(" ({failed} of them failed)")
        } else {
            String::new()
        };
        return Err(SkipReason::new(
            SkipCode::TargetCapReached,
            format!(
                "{} actions in the last {}{note}; cap is {} — escalating to a person instead of acting again",
                acted + failed,
                human(limits.cap_window),
                limits.cap
            ),
        ));
    }
    if let Some(last) = record.last_action() {
        let since = now - last;
        if since < limits.cooldown.as_secs() as i64 {
            return Err(SkipReason::new(
                SkipCode::Cooldown,
                format!(
                    "last action {}s ago; cooldown is {}",
                    since.max(0),
                    human(limits.cooldown)
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}min", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TargetLimits = TargetLimits {
        cooldown: Duration::from_secs(900),
        cap: 3,
        cap_window: Duration::from_secs(6 * 3600),
    };

    #[test]
    fn check_target_table() {
        let now = 100_000;
        let rec = |actions: &[i64]| TargetRecord {
            version: 1,
            actions: actions.to_vec(),
            failures: vec![],
        };
        let cases: &[(&[i64], Option<SkipCode>)] = &[
            (&[], None),
            (&[now - 901], None),
            (&[now - 899], Some(SkipCode::Cooldown)),
            (
                &[now - 5000, now - 4000, now - 3000],
                Some(SkipCode::TargetCapReached),
            ),
            (&[now - 30000, now - 4000, now - 3000], None),
            (
                &[now - 3000, now - 2000, now - 10],
                Some(SkipCode::TargetCapReached),
            ),
        ];
        for (actions, want) in cases {
            let got = check_target(&rec(actions), &LIMITS, now)
                .err()
                .map(|r| r.code);
            assert_eq!(got, *want, "{actions:?}");
        }
    }

    #[test]
    fn with_action_prunes_old_entries() {
        let r = TargetRecord {
            version: 4,
            actions: vec![1, 50_000, 90_000],
            failures: vec![],
        };
        let next = r.with_action(100_000, Duration::from_secs(6 * 3600));
        assert_eq!(next.version, 5);
        assert_eq!(next.actions, vec![90_000, 100_000]);
    }
}
