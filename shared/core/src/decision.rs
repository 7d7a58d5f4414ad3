//! What a function intends to do, and why: plain data, easy to log, test and audit.

use serde::Serialize;

/// Why nothing was done. The code is stable (metrics and queries group by it); the detail is
/// for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipCode {
    /// The alarm did not move into ALARM (OK, INSUFFICIENT_DATA, ALARM → ALARM).
    NotAlarmTransition,
    /// The alarm watches a namespace this function does not handle.
    WrongNamespace,
    /// The event does not name the resource this function needs.
    NoTarget,
    /// The resource named by the event does not exist.
    TargetNotFound,
    /// The resource is in a state in which acting makes no sense (stopped, terminated, …).
    TargetNotEligible,
    /// The resource does not carry the opt-in tag.
    NotOptedIn,
    /// The kill switch is off: functions only audit.
    KillSwitch,
    /// Outside the configured execution window.
    OutsideWindow,
    /// The same target was acted on too recently.
    Cooldown,
    /// The target hit its cap of actions in the window: a person must look.
    TargetCapReached,
    /// The function hit its cap of actions this hour.
    BlastRadius,
    /// Nothing needs doing: the resource is already as it should be.
    NothingToDo,
    /// The resource is already at a bound (for example a group at its maximum size).
    AtBound,
    /// Another change is already in progress on the resource.
    ChangeInProgress,
    /// There is no trustworthy value to check against.
    Unverifiable,
    /// The metric history shows this is a normal pattern, not an incident.
    ExpectedPattern,
    /// This exact piece of work was already done (idempotency).
    AlreadyDone,
    /// An earlier item of the same ordered group (an SQS FIFO message group) could not be
    /// handled; this one waits for it, to keep the order.
    HeldBack,
    /// The event names more than one target (a metric-math alarm over several instances or
    /// groups): which one is sick is unknown, so none is touched.
    SeveralTargets,
    /// The alarm does not ask for this remedy (not on the metric allowlist, no opt-in tag).
    NotRequested,
    /// The event is older than the maximum age: the world it describes may be gone.
    StaleEvent,
    /// The alarm is no longer in ALARM (or no longer exists) now that we are about to act.
    AlarmCleared,
    /// The alarm belongs to someone else's automation (an Auto Scaling policy), which acts on it.
    OwnedElsewhere,
    /// The configured remedy contradicts what the alarm says (scale out on a low-side alarm).
    Contradiction,
    /// The group the target belongs to hit its cap of actions in the last hour.
    GroupCap,
    /// Many distinct targets alarmed at once: this event tripped the correlated-failure
    /// breaker (a person must look: a shared dependency?).
    BreakerTripped,
    /// The correlated-failure breaker is open: no action until it closes.
    BreakerOpen,
    /// The recorded digest disagrees with the bytes, but the store's own checksum of the same
    /// bytes agrees with them: a writer changed the content and kept old metadata, most
    /// likely. Not corruption; restoring would roll the new content back. A person must look.
    StaleDigest,
}

impl SkipCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAlarmTransition => "not-alarm-transition",
            Self::WrongNamespace => "wrong-namespace",
            Self::NoTarget => "no-target",
            Self::TargetNotFound => "target-not-found",
            Self::TargetNotEligible => "target-not-eligible",
            Self::NotOptedIn => "not-opted-in",
            Self::KillSwitch => "kill-switch",
            Self::OutsideWindow => "outside-window",
            Self::Cooldown => "cooldown",
            Self::TargetCapReached => "target-cap-reached",
            Self::BlastRadius => "blast-radius",
            Self::NothingToDo => "nothing-to-do",
            Self::AtBound => "at-bound",
            Self::ChangeInProgress => "change-in-progress",
            Self::Unverifiable => "unverifiable",
            Self::ExpectedPattern => "expected-pattern",
            Self::AlreadyDone => "already-done",
            Self::HeldBack => "held-back",
            Self::SeveralTargets => "several-targets",
            Self::NotRequested => "not-requested",
            Self::StaleEvent => "stale-event",
            Self::AlarmCleared => "alarm-cleared",
            Self::OwnedElsewhere => "owned-elsewhere",
            Self::Contradiction => "contradiction",
            Self::GroupCap => "group-cap",
            Self::BreakerTripped => "breaker-tripped",
            Self::BreakerOpen => "breaker-open",
            Self::StaleDigest => "stale-digest",
        }
    }

    /// Refusals an operator must hear about: a cap or the breaker stopped the automation.
    pub const ESCALATING: [SkipCode; 4] = [
        Self::TargetCapReached,
        Self::BlastRadius,
        Self::GroupCap,
        Self::BreakerTripped,
    ];

    pub fn needs_escalation(self) -> bool {
        matches!(
            self,
            Self::TargetCapReached | Self::BlastRadius | Self::GroupCap | Self::BreakerTripped
        )
    }
}

impl std::fmt::Display for SkipCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkipReason {
    pub code: SkipCode,
    pub detail: String,
}

impl SkipReason {
    pub fn new(code: SkipCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// What a function's `decide()` returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<A> {
    Act { action: A, reason: String },
    Skip { reason: SkipReason },
}

impl<A> Decision<A> {
    pub fn skip(code: SkipCode, detail: impl Into<String>) -> Self {
        Self::Skip {
            reason: SkipReason::new(code, detail),
        }
    }

    pub fn act(action: A, reason: impl Into<String>) -> Self {
        Self::Act {
            action,
            reason: reason.into(),
        }
    }
}
