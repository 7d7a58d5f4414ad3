//! The HTTPS entry point of one-click approval (issue 17): a Lambda function URL on each
//! function, so the function that acts is the one that verifies the token and acts (no
//! cross-function invoke). This module recognises a function-URL request, extracts the token,
//! and builds the HTML answer; verifying, consuming and acting are the handler's.
//!
//! **GET never acts.** Mail scanners, link previews and chat unfurlers fetch GET links on their
//! own; a GET that approved would approve by itself. A GET answers a page that shows what will
//! be done, with one button that POSTs the same token. Only a POST (a form body,
//! `application/x-www-form-urlencoded`, field `t`) approves or rejects.
//!
//! Malformed requests (no token, another method, a body that is not a form, oversized parts)
//! get a 4xx page and nothing is done. Everything echoed in a page is HTML-escaped; pages carry
//! a strict content security policy (no script, no style, no frame, forms to this origin only),
//! `cache-control: no-store` and `referrer-policy: no-referrer` (the token is in the URL).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use selfheal_core::approval::{Choice, Claims, TokenError, MAX_TOKEN_LEN};
use serde_json::{json, Value};

/// Longest query string and body accepted (a token is a few hundred bytes).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// The content security policy of every page: nothing loads, nothing runs, the one form posts
/// back to this origin, no page frames it.
pub const CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `event` is a function-URL (payload 2.0) request rather than an alarm or a message.
pub fn is_function_url(event: &Value) -> bool {
    event
        .pointer("/requestContext/http/method")
        .is_some_and(Value::is_string)
}

/// A well-formed approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// GET: show what will be done, with one button. Never acts.
    Confirm { token: String },
    /// POST: approve or reject, as the token says.
    Decide { token: String },
}

impl Request {
    pub fn token(&self) -> &str {
        match self {
            Request::Confirm { token } | Request::Decide { token } => token,
        }
    }
}

/// Why a request was refused before any token was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NotFunctionUrl,
    Method {
        method: String,
    },
    NoToken,
    SeveralTokens,
    NotAForm {
        content_type: String,
    },
    TooLarge {
        part: &'static str,
        bytes: usize,
        limit: usize,
    },
    BadEncoding {
        part: &'static str,
    },
}

impl RequestError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Method { .. } => 405,
            RequestError::NotAForm { .. } => 415,
            RequestError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotFunctionUrl => f.write_str("not a function URL request"),
            RequestError::Method { method } => write!(
                f,
                "method {:?} is not accepted: open the link (GET), then press the button (POST)",
                cut(method, 16)
            ),
            RequestError::NoToken => f.write_str("the request carries no token (parameter t)"),
            RequestError::SeveralTokens => f.write_str("the request carries several tokens"),
            RequestError::NotAForm { content_type } => write!(
                f,
                "the body is {:?}, not a form (application/x-www-form-urlencoded)",
                cut(content_type, 64)
            ),
            RequestError::TooLarge { part, bytes, limit } => {
                write!(
                    f,
                    "the {part} is {bytes} bytes, more than the {limit} accepted"
                )
            }
            RequestError::BadEncoding { part } => write!(f, "the {part} is not well encoded"),
        }
    }
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The approval request in a function-URL event: the token from the query of a GET, or from
/// the form body of a POST (never from the query of a POST).
pub fn parse(event: &Value) -> Result<Request, RequestError> {
    let method = event
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .ok_or(RequestError::NotFunctionUrl)?;
    match method.to_ascii_uppercase().as_str() {
        "GET" => {
            let query = match event.get("rawQueryString") {
                None | Some(Value::Null) => "",
                Some(Value::String(q)) => q,
                Some(_) => return Err(RequestError::BadEncoding { part: "query" }),
            };
            limit("query", query.len(), MAX_QUERY_BYTES)?;
            let token = form_token(query, "query")?;
            Ok(Request::Confirm { token })
        }
        "POST" => {
            let content_type = header(event, "content-type").unwrap_or_default();
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(RequestError::NotAForm { content_type });
            }
            let body = match event.get("body") {
                None | Some(Value::Null) => return Err(RequestError::NoToken),
                Some(Value::String(b)) => b,
                Some(_) => return Err(RequestError::BadEncoding { part: "body" }),
            };
            let encoded = match event.get("isBase64Encoded") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(RequestError::BadEncoding { part: "body" }),
            };
            let body = if encoded {
                limit("body", body.len(), MAX_BODY_BYTES * 4 / 3 + 4)?;
                let bytes = STANDARD
                    .decode(body.trim())
                    .map_err(|_| RequestError::BadEncoding { part: "body" })?;
                String::from_utf8(bytes).map_err(|_| RequestError::BadEncoding { part: "body" })?
            } else {
                body.clone()
            };
            limit("body", body.len(), MAX_BODY_BYTES)?;
            let token = form_token(&body, "body")?;
            Ok(Request::Decide { token })
        }
        _ => Err(RequestError::Method {
            method: method.to_string(),
        }),
    }
}

fn limit(part: &'static str, bytes: usize, limit: usize) -> Result<(), RequestError> {
    if bytes > limit {
        Err(RequestError::TooLarge { part, bytes, limit })
    } else {
        Ok(())
    }
}

/// A header's value, whatever the case of its name (function URLs send lower case).
fn header(event: &Value, name: &str) -> Option<String> {
    event
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// The one `t` field of a form-encoded string (a query or a body).
fn form_token(form: &str, part: &'static str) -> Result<String, RequestError> {
    let mut found: Option<String> = None;
    for pair in form.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_form(k, part)? != "t" {
            continue;
        }
        let v = decode_form(v, part)?;
        match &found {
            Some(prev) if *prev != v => return Err(RequestError::SeveralTokens),
            _ => found = Some(v),
        }
    }
    let token = found
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or(RequestError::NoToken)?;
    limit("token", token.len(), MAX_TOKEN_LEN)?;
    Ok(token)
}

fn decode_form(s: &str, part: &'static str) -> Result<String, RequestError> {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| RequestError::BadEncoding { part })
}

/// How an approval request ended, for the page that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// GET with a valid token: what will be done, and the button.
    Confirm { claims: Claims, token: String },
    /// POST approve: consumed, re-checked through the guardrails and acted on.
    Approved { claims: Claims, detail: String },
    /// POST reject: consumed, nothing done.
    Rejected { claims: Claims },
    /// The token was refused (expired, altered, another key, another function...).
    Refused(TokenError),
    /// The approval (or its twin link) was used before.
    AlreadyUsed { claims: Claims },
    /// Approved, but the state changed (the alarm cleared, a guardrail refused): nothing done.
    StateChanged { claims: Claims, detail: String },
    /// The request was malformed.
    BadRequest(RequestError),
    /// The key or the ledger could not be read: nothing can be verified now, nothing was done.
    Unavailable,
}

/// The function-URL response for an outcome: status, security headers and an HTML page.
pub fn respond(outcome: &Outcome) -> Value {
    let (status, title, message, claims) = match outcome {
        Outcome::Confirm { claims, .. } => match claims.decision {
            Choice::Approve => (
                200,
                "Approve this action?",
                "Nothing has been done yet. Press the button to approve: the state is checked \
                 again at that moment, and the action is refused if it no longer applies."
                    .to_string(),
                Some(claims),
            ),
            Choice::Reject => (
                200,
                "Reject this action?",
                "Nothing has been done yet. Press the button to reject: nothing will be done, \
                 and the approve link will stop working."
                    .to_string(),
                Some(claims),
            ),
        },
        Outcome::Approved { claims, detail } => (
            200,
            "Approved",
            format!("The action was approved and carried out: {detail}"),
            Some(claims),
        ),
        Outcome::Rejected { claims } => (
            200,
            "Rejected",
            "The action was rejected. Nothing was done, and this approval cannot be used again."
                .to_string(),
            Some(claims),
        ),
        Outcome::Refused(e) => (
            refusal_status(e),
            match e {
                TokenError::Expired { .. } => "This link has expired",
                TokenError::ForeignFunction { .. } => "This link is for another function",
                _ => "This link is not valid",
            },
            format!("Nothing was done: {e}."),
            None,
        ),
        Outcome::AlreadyUsed { claims } => (
            409,
            "Already used",
            "This approval was already used (this link or its approve/reject twin). Nothing \
             more was done."
                .to_string(),
            Some(claims),
        ),
        Outcome::StateChanged { claims, detail } => (
            409,
            "Not carried out: the situation changed",
            format!("The approval was recorded, but the action no longer applies: {detail}. Nothing was done."),
            Some(claims),
        ),
        Outcome::BadRequest(e) => (
            e.status(),
            "Bad request",
            format!("Nothing was done: {e}."),
            None,
        ),
        Outcome::Unavailable => (
            503,
            "Not available",
            "The approval could not be checked now (its key or its record could not be read). \
             Nothing was done; try the link again later."
                .to_string(),
            None,
        ),
    };
    let mut body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\">\
         <title>selfheal: {t}</title></head><body><h1>{t}</h1><p>{m}</p>",
        t = escape(title),
        m = escape(&message)
    );
    if let Some(c) = claims {
        body.push_str(&details(c));
    }
    if let Outcome::Confirm { claims, token } = outcome {
        let verb = match claims.decision {
            Choice::Approve => "Approve",
            Choice::Reject => "Reject",
        };
        body.push_str(&format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"t\" value=\"{}\">\
             <button type=\"submit\">{verb}: {} on {}</button></form>",
            escape(token),
            escape(&claims.action),
            escape(&claims.target)
        ));
    }
    body.push_str("</body></html>");
    let mut headers = json!({
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": CSP,
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "x-robots-tag": "noindex",
    });
    if matches!(outcome, Outcome::BadRequest(RequestError::Method { .. })) {
        headers["allow"] = json!("GET, POST");
    }
    json!({
        "statusCode": status,
        "headers": headers,
        "body": body,
        "isBase64Encoded": false,
    })
}

fn refusal_status(e: &TokenError) -> u16 {
    match e {
        TokenError::Malformed(_) | TokenError::UnsupportedVersion { .. } => 400,
        TokenError::TooLong { .. } => 413,
        TokenError::Expired { .. } => 410,
        TokenError::BadSignature
        | TokenError::ForeignFunction { .. }
        | TokenError::NotYetValid { .. } => 403,
    }
}

fn details(c: &Claims) -> String {
    let rows = [
        ("Function", c.function.clone()),
        ("Action", c.action.clone()),
        ("Target", c.target.clone()),
        ("Episode", c.episode.clone()),
        ("Link", c.decision.as_str().to_string()),
        ("Valid until", utc(c.exp)),
    ];
    let mut out = String::from("<table>");
    for (k, v) in rows {
        out.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(&v)));
    }
    out.push_str("</table>");
    out
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no date crate needed here).
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
