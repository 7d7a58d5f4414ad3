use selfheal_core::approval::{Claims, VERSION};
use selfheal_core::samples;
use selfheal_core::testing::fuzz;

use super::*;

const TOKEN: &str =
    "eyJ2IjoxLCJmbiI6InJlYm9vdC1pbnN0YW5jZSJ9.bm90LWEtcmVhbC1zaWduYXR1cmUtanVzdC1hLXNhbXBsZQ";

fn sample(name: &str) -> Value {
    samples::for_function("approval")
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("events/{name} is missing"))
}

fn claims(target: &str) -> Claims {
    Claims {
        v: VERSION,
        function: "reboot-instance".into(),
        target: target.into(),
        action: "reboot".into(),
        episode: "ep-1".into(),
        id: "0123456789abcdef0123456789abcdef".into(),
        decision: Choice::Approve,
        iat: 1_796_072_400,
        exp: 1_796_086_800,
    }
}

#[test]
fn the_samples_parse_and_only_post_decides() {
    let get = sample("approval-get.json");
    assert!(is_function_url(&get));
    assert_eq!(
        parse(&get),
        Ok(Request::Confirm {
            token: TOKEN.into()
        })
    );
    for name in ["approval-post.json", "approval-post-plain.json"] {
        assert_eq!(
            parse(&sample(name)),
            Ok(Request::Decide {
                token: TOKEN.into()
            }),
            "{name}"
        );
    }
}

#[test]
fn alarms_and_messages_are_not_function_url_requests() {
    for f in [
        "reboot-instance",
        "replay-transactions",
        "restore-object",
        "scale-group",
    ] {
        for (name, v) in samples::for_function(f).unwrap() {
            assert!(!is_function_url(&v), "{name}");
            assert_eq!(parse(&v), Err(RequestError::NotFunctionUrl), "{name}");
        }
    }
}

#[test]
fn a_post_takes_its_token_from_the_body_only() {
    let mut post = sample("approval-post-plain.json");
    post["rawQueryString"] = json!(format!("t={TOKEN}"));
    post["body"] = json!("");
    assert_eq!(parse(&post), Err(RequestError::NoToken));
}

#[test]
fn malformed_requests_are_refused_with_their_status() {
    let get = sample("approval-get.json");
    let post = sample("approval-post-plain.json");
    let with = |base: &Value, path: &str, v: Value| {
        let mut e = base.clone();
        *e.pointer_mut(path).unwrap() = v;
        e
    };
    let table = [
        (with(&get, "/requestContext/http/method", json!("PUT")), 405),
        (
            with(&get, "/requestContext/http/method", json!("HEAD")),
            405,
        ),
        (with(&get, "/rawQueryString", json!("")), 400),
        (with(&get, "/rawQueryString", json!("t=")), 400),
        (with(&get, "/rawQueryString", json!("t=a&t=b")), 400),
        (with(&get, "/rawQueryString", json!("t=%ZZ")), 200),
        (with(&get, "/rawQueryString", json!("t=%FF%FE")), 400),
        (with(&get, "/rawQueryString", json!(7)), 400),
        (
            with(
                &get,
                "/rawQueryString",
                json!("t=".to_string() + &"a".repeat(9000)),
            ),
            413,
        ),
        (
            with(
                &get,
                "/rawQueryString",
                json!("t=".to_string() + &"a".repeat(5000)),
            ),
            413,
        ),
        (
            with(&post, "/headers/content-type", json!("application/json")),
            415,
        ),
        (
            with(&post, "/headers/content-type", json!("text/plain")),
            415,
        ),
        (with(&post, "/body", json!("x=1")), 400),
        (with(&post, "/body", json!(["t=1"])), 400),
        (
            with(&post, "/body", json!("a".repeat(MAX_BODY_BYTES + 1))),
            413,
        ),
        (with(&post, "/isBase64Encoded", json!(true)), 400),
        (with(&post, "/isBase64Encoded", json!("yes")), 400),
    ];
    for (event, status) in table {
        let r = parse(&event);
        let got = match &r {
            Ok(_) => 200,
            Err(e) => e.status(),
        };
        assert_eq!(got, status, "{r:?} for {}", event["rawQueryString"]);
        if let Err(e) = r {
            let page = respond(&Outcome::BadRequest(e.clone()));
            assert_eq!(page["statusCode"], status);
            assert!(!e.to_string().contains('\n'));
        }
    }
    // `%ZZ` is not an escape: kept as typed, and the token check refuses it later.
    assert_eq!(
        parse(&with(&get, "/rawQueryString", json!("t=%ZZ"))),
        Ok(Request::Confirm {
            token: "%ZZ".into()
        })
    );
}

#[test]
fn a_get_page_shows_the_action_and_posts_the_same_token() {
    let c = claims("i-0123456789abcdef0");
    let page = respond(&Outcome::Confirm {
        claims: c,
        token: TOKEN.into(),
    });
    assert_eq!(page["statusCode"], 200);
    let body = page["body"].as_str().unwrap();
    assert!(body.contains("<form method=\"post\">"), "{body}");
    assert!(body.contains(&format!("name=\"t\" value=\"{TOKEN}\"")));
    assert!(body.contains("i-0123456789abcdef0"));
    assert!(body.contains("2026-11-30 21:00:00 UTC") || body.contains("2026-12-01 01:00:00 UTC"));
    assert!(!body.contains("<script"));
}

#[test]
fn every_outcome_has_its_status_and_the_security_headers() {
    let c = claims("i-1");
    let table = [
        (
            Outcome::Confirm {
                claims: c.clone(),
                token: TOKEN.into(),
            },
            200,
        ),
        (
            Outcome::Approved {
                claims: c.clone(),
                detail: "rebooted".into(),
            },
            200,
        ),
        (Outcome::Rejected { claims: c.clone() }, 200),
        (
            Outcome::Refused(TokenError::Expired { exp: 1, now: 2 }),
            410,
        ),
        (Outcome::Refused(TokenError::BadSignature), 403),
        (
            Outcome::Refused(TokenError::ForeignFunction {
                expected: "a".into(),
                found: "b".into(),
            }),
            403,
        ),
        (Outcome::Refused(TokenError::Malformed("x")), 400),
        (Outcome::AlreadyUsed { claims: c.clone() }, 409),
        (
            Outcome::StateChanged {
                claims: c.clone(),
                detail: "the alarm is OK now".into(),
            },
            409,
        ),
        (Outcome::BadRequest(RequestError::NoToken), 400),
        (Outcome::Unavailable, 503),
    ];
    for (outcome, status) in table {
        let r = respond(&outcome);
        assert_eq!(r["statusCode"], status, "{outcome:?}");
        let h = &r["headers"];
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["content-security-policy"], CSP);
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let body = r["body"].as_str().unwrap();
        assert!(body.starts_with("<!doctype html>") && body.ends_with("</html>"));
        // Only the confirmation page has a button.
        assert_eq!(
            body.contains("<form"),
            matches!(outcome, Outcome::Confirm { .. }),
            "{outcome:?}"
        );
    }
    let r = respond(&Outcome::BadRequest(RequestError::Method {
        method: "PUT".into(),
    }));
    assert_eq!(r["headers"]["allow"], "GET, POST");
}

#[test]
fn everything_echoed_is_escaped() {
    let evil = "<script>alert('x')</script>\"&";
    let mut c = claims(evil);
    c.action = evil.into();
    c.episode = evil.into();
    for outcome in [
        Outcome::Confirm {
            claims: c.clone(),
            token: evil.into(),
        },
        Outcome::StateChanged {
            claims: c.clone(),
            detail: evil.into(),
        },
        Outcome::BadRequest(RequestError::NotAForm {
            content_type: evil.into(),
        }),
        Outcome::Refused(TokenError::ForeignFunction {
            expected: "a".into(),
            found: evil.into(),
        }),
    ] {
        let body = respond(&outcome)["body"].as_str().unwrap().to_string();
        assert!(!body.contains("<script"), "{body}");
        assert!(!body.contains("'x'"), "{body}");
    }
    assert_eq!(
        escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}

#[test]
fn dates_are_civil_utc() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_796_072_399), "2026-11-30 20:59:59 UTC");
    assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
}

/// The request parser under the mutation fuzzer: never a panic, every rejection one line,
/// and a mutated request never decides unless it is still a POST with a form body.
#[test]
fn fuzzed_function_url_requests_never_panic_and_get_never_decides() {
    let seeds: Vec<Value> = samples::for_function("approval")
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(seeds.len(), 3);
    let report = fuzz::run(&seeds, fuzz::cases(), 23, |v| {
        let r = parse(v);
        if let Ok(Request::Decide { .. }) = &r {
            let method = v["requestContext"]["http"]["method"].as_str().unwrap_or("");
            assert!(method.eq_ignore_ascii_case("POST"), "decided on {method}");
        }
        if let Err(e) = &r {
            let status = respond(&Outcome::BadRequest(e.clone()))["statusCode"]
                .as_u64()
                .unwrap_or(0);
            assert!((400..500).contains(&status), "{e}: {status}");
        }
        r
    });
    fuzz::assert_clean("function URL requests", &report);
    assert!(report.accepted > 0 && report.rejected > 0, "{report:?}");
}
