//! The function-URL side of one-click approval (issue 17), the same for every function: a
//! request ([`crate::http::parse`]) → GET: the confirmation page (never acts) → POST: verify
//! the token → consume it (single use, conditional write) → reject: stop; approve: the kept
//! event is decided again *now* by the function (`rerun`, with the [`Approved`] permit for
//! `Common::autonomy_gate`) through the same guardrails → the page. Every outcome is a page
//! and an audit record; nothing here ends in an error (a browser would get a bare 502).

use std::future::Future;

use serde_json::{json, Value};

use selfheal_core::approval::gate::Approved;
use selfheal_core::approval::{verify, Choice, Claims, Use};
use selfheal_core::{
    AuditBuilder, AuditRecord, Common, HandlerError, Invocation, Outcome, Response,
};

use crate::http::{self, Outcome as Page};

/// The trigger named in the audit records of function-URL requests.
pub const TRIGGER: &str = "function-url";

/// Answers one function-URL request. `rerun(event, approved)` decides again from the event
/// kept with the approval, passing `Some(&approved)` as `Ask::approval` to the autonomy gate;
/// its records say what happened (an `acted` record on the approved target: approved and
/// carried out; anything else: the situation changed, nothing was done).
pub async fn handle<F, Fut>(common: &Common, event: &Value, inv: &Invocation, rerun: F) -> Response
where
    F: FnOnce(Value, Approved) -> Fut,
    Fut: Future<Output = Result<Vec<AuditRecord>, HandlerError>>,
{
    let (page, audits) = answer(common, event, inv, rerun).await;
    Response {
        body: http::respond(&page),
        audits,
    }
}

async fn answer<F, Fut>(
    common: &Common,
    event: &Value,
    inv: &Invocation,
    rerun: F,
) -> (Page, Vec<AuditRecord>)
where
    F: FnOnce(Value, Approved) -> Fut,
    Fut: Future<Output = Result<Vec<AuditRecord>, HandlerError>>,
{
    let request = match http::parse(event) {
        Ok(r) => r,
        Err(e) => {
            let audit = common
                .audit_for(inv, TRIGGER, "-")
                .detail("status", e.status());
            let rec = common
                .record(audit.checked("approval-bad-request", e.to_string()))
                .await;
            return (Page::BadRequest(e), vec![rec]);
        }
    };
    let key = match common.autonomy.key().await {
        Ok(k) => k,
        Err(e) => {
            let audit = common.audit_for(inv, TRIGGER, "-");
            let rec = common
                .record(audit.failed("approval-unavailable", e.to_string()))
                .await;
            return (Page::Unavailable, vec![rec]);
        }
    };
    let now = now();
    let claims = match verify(request.token(), &key, now, common.function) {
        Ok(c) => c,
        Err(e) => {
            let audit = common
                .audit_for(inv, TRIGGER, "-")
                .detail("token_error", e.code());
            let rec = common
                .record(audit.checked("approval-refused", format!("{e}; nothing done")))
                .await;
            return (Page::Refused(e), vec![rec]);
        }
    };
    let audit = audit_of(common, inv, &claims);
    if let http::Request::Confirm { token } = request {
        // A link used before (or its twin) says so at once, rather than offering a button that
        // can only be refused. A failed read shows the page: the POST decides anyway.
        if let Ok(true) = common.autonomy.used(&claims).await {
            let rec = common
                .record(audit.checked(
                    "approval-already-used",
                    format!(
                        "approval {} was already used: page shown, nothing done",
                        claims.id
                    ),
                ))
                .await;
            return (Page::AlreadyUsed { claims }, vec![rec]);
        }
        let rec = common
            .record(audit.clone().checked(
                "approval-viewed",
                format!(
                    "the {} page of approval {} was shown; nothing done",
                    claims.decision.as_str(),
                    claims.id
                ),
            ))
            .await;
        return (Page::Confirm { claims, token }, vec![rec]);
    }
    // An approve decides again from the event kept with its approval: read (and matched to
    // the token's target) before the approval is consumed, so a token that names no pending
    // approval uses nothing up.
    let original = match claims.decision {
        Choice::Reject => Value::Null,
        Choice::Approve => match common.autonomy.pending_event(&claims).await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                let why = format!(
                    "approval {} has no pending request in the ledger (gone, or never kept): \
                 nothing done",
                    claims.id
                );
                let rec = common
                    .record(audit.checked("approval-unknown", why.clone()))
                    .await;
                return (
                    Page::StateChanged {
                        claims,
                        detail: why,
                    },
                    vec![rec],
                );
            }
            Err(e) => {
                let rec = common
                    .record(audit.failed("approval-unavailable", e.to_string()))
                    .await;
                return (Page::Unavailable, vec![rec]);
            }
        },
    };
    match common.autonomy.consume(&claims, &inv.request_id, now).await {
        Ok(Use::Consumed) => {}
        Ok(Use::AlreadyUsed) => {
            let rec = common
                .record(audit.checked(
                    "approval-already-used",
                    format!(
                        "approval {} was already used (this link or its twin): nothing done",
                        claims.id
                    ),
                ))
                .await;
            return (Page::AlreadyUsed { claims }, vec![rec]);
        }
        Err(e) => {
            let rec = common
                .record(audit.failed("approval-unavailable", e.to_string()))
                .await;
            return (Page::Unavailable, vec![rec]);
        }
    }
    if claims.decision == Choice::Reject {
        let rec = common
            .record(audit.checked(
                "approval-rejected",
                format!(
                    "a person rejected {} on {} (approval {}): nothing done",
                    claims.action, claims.target, claims.id
                ),
            ))
            .await;
        return (Page::Rejected { claims }, vec![rec]);
    }
    let approved = Approved {
        claims: claims.clone(),
    };
    match rerun(original, approved).await {
        Ok(records) => {
            let acted = records
                .iter()
                .find(|r| r.decision == Outcome::Acted && r.target == claims.target);
            let page = match acted {
                Some(r) => Page::Approved {
                    detail: r.reason.clone(),
                    claims,
                },
                None => Page::StateChanged {
                    detail: records
                        .iter()
                        .find(|r| r.target == claims.target)
                        .or(records.first())
                        .map(|r| r.reason.clone())
                        .unwrap_or_else(|| "nothing applies any more".into()),
                    claims,
                },
            };
            (page, records)
        }
        // The approval is consumed and not re-armed: the next occurrence asks again.
        Err(e) => {
            let why = format!("deciding again on approval {} failed: {e}", claims.id);
            let rec = common
                .record(
                    audit
                        .detail("escalate", true)
                        .failed("approval-rerun-failed", why.clone()),
                )
                .await;
            (
                Page::StateChanged {
                    claims,
                    detail: why,
                },
                vec![rec],
            )
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A function-URL GET of a link, as Lambda delivers it (for tests, the demo, local runs).
pub fn get_event(token: &str) -> Value {
    request_event("GET", &format!("t={token}"), None)
}

/// The POST the confirmation page's button sends (form body `t=<token>`).
pub fn post_event(token: &str) -> Value {
    request_event("POST", "", Some(format!("t={token}")))
}

fn request_event(method: &str, query: &str, body: Option<String>) -> Value {
    let mut headers = json!({"host": "local.lambda-url.on.aws", "x-forwarded-proto": "https"});
    if body.is_some() {
        headers["content-type"] = json!("application/x-www-form-urlencoded");
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1"}, "requestId": "local"},
        "body": body,
        "isBase64Encoded": false,
    })
}

/// The token of an approval link (`...?t=<token>`).
pub fn token_of(link: &str) -> Option<&str> {
    link.rsplit_once("t=").map(|(_, t)| t)
}

fn audit_of(common: &Common, inv: &Invocation, claims: &Claims) -> AuditBuilder {
    common.audit_for(inv, TRIGGER, &claims.target).detail(
        "approval",
        json!({"id": claims.id, "action": claims.action, "episode": claims.episode,
                "decision": claims.decision, "expires_at": claims.exp}),
    )
}

#[cfg(test)]
mod tests;
