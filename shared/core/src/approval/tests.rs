use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const F: &str = "reboot-instance";

fn key(seed: u8) -> Key {
    let raw: Vec<u8> = (0..48u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed))
        .collect();
    Key::from_parameter(&format!("base64:{}", STANDARD.encode(raw))).unwrap()
}

fn claims(decision: Choice) -> Claims {
    Claims {
        v: VERSION,
        function: F.into(),
        target: "i-0123456789abcdef0".into(),
        action: "reboot".into(),
        episode: "ep-1".into(),
        id: approval_id(F, "i-0123456789abcdef0", "reboot", "ep-1", "req-1"),
        decision,
        iat: 1_000,
        exp: 1_000 + 3600,
    }
}

/// The ledger's conditional claim as `IdempotencyLedger::claim` documents it: claimed when the
/// key is absent or its lease ran out, a conflict otherwise.
#[derive(Default)]
struct Ledger(HashMap<String, i64>);

impl Ledger {
    fn consume(&mut self, c: &Claims, now: i64) -> Use {
        let claim = single_use_claim(c, "req");
        let result = match self.0.get(&claim.key) {
            Some(lease) if *lease > now => ClaimResult::Conflict,
            _ => {
                self.0.insert(claim.key.clone(), claim.lease_until);
                ClaimResult::Claimed
            }
        };
        consumption(result)
    }
}

#[test]
fn a_genuine_token_round_trips() {
    let c = claims(Choice::Approve);
    let t = sign(&c, &key(1));
    assert!(t.len() < 600, "{}", t.len());
    assert!(!t.contains('='));
    assert_eq!(verify(&t, &key(1), 1_500, F), Ok(c));
}

#[test]
fn each_refusal_has_its_own_error() {
    let c = claims(Choice::Approve);
    let k = key(1);
    let t = sign(&c, &k);
    assert_eq!(verify(&t, &key(2), 1_500, F), Err(TokenError::BadSignature));
    assert!(matches!(
        verify(&t, &k, c.exp, F),
        Err(TokenError::Expired { .. })
    ));
    assert!(matches!(
        verify(&t, &k, c.iat - CLOCK_SKEW_SECONDS - 1, F),
        Err(TokenError::NotYetValid { .. })
    ));
    assert!(verify(&t, &k, c.iat - CLOCK_SKEW_SECONDS, F).is_ok());
    assert!(matches!(
        verify(&t, &k, 1_500, "scale-group"),
        Err(TokenError::ForeignFunction { .. })
    ));
    let v2 = sign(&Claims { v: 2, ..c.clone() }, &k);
    assert_eq!(
        verify(&v2, &k, 1_500, F),
        Err(TokenError::UnsupportedVersion { found: 2 })
    );
    for bad in [
        "",
        ".",
        "abc",
        "a.b.c",
        ".sig",
        &"a".repeat(MAX_TOKEN_LEN + 1),
    ] {
        let e = verify(bad, &k, 1_500, F).unwrap_err();
        assert!(
            matches!(e, TokenError::Malformed(_) | TokenError::TooLong { .. }),
            "{bad:?}: {e:?}"
        );
        assert_eq!(e.code(), "malformed");
    }
    // Signed with the right key but not our claims shape: still refused, as malformed.
    let mut mac = k.mac();
    let junk = URL_SAFE_NO_PAD.encode(br#"{"v":1,"fn":"reboot-instance"}"#);
    mac.update(junk.as_bytes());
    let forged = format!(
        "{junk}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(matches!(
        verify(&forged, &k, 1_500, F),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn a_reject_link_cannot_be_turned_into_an_approve() {
    let k = key(1);
    let approve = sign(&claims(Choice::Approve), &k);
    let reject = sign(&claims(Choice::Reject), &k);
    let (ap, _) = approve.split_once('.').unwrap();
    let (_, rs) = reject.split_once('.').unwrap();
    assert_eq!(
        verify(&format!("{ap}.{rs}"), &k, 1_500, F),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        verify(&reject, &k, 1_500, F).unwrap().decision,
        Choice::Reject
    );
}

#[test]
fn both_links_share_one_single_use_record() {
    let k = key(1);
    let req = Request {
        function: F.into(),
        target: "i-1".into(),
        action: "reboot".into(),
        episode: "ep".into(),
        id: approval_id(F, "i-1", "reboot", "ep", "req-9"),
    };
    let tokens = issue(&req, &k, 1_000, 600);
    let a = verify(&tokens.approve, &k, 1_100, F).unwrap();
    let r = verify(&tokens.reject, &k, 1_100, F).unwrap();
    assert_eq!(a.ledger_key(), r.ledger_key());
    let mut ledger = Ledger::default();
    assert_eq!(ledger.consume(&r, 1_100), Use::Consumed);
    assert_eq!(ledger.consume(&a, 1_101), Use::AlreadyUsed);
    assert_eq!(ledger.consume(&r, a.exp - 1), Use::AlreadyUsed);
    assert_eq!(consumption(ClaimResult::BudgetRefused), Use::AlreadyUsed);
}

#[test]
fn approval_ids_differ_per_request_and_keys_are_namespaced() {
    let a = approval_id(F, "i-1", "reboot", "ep", "req-1");
    assert_eq!(a.len(), 32);
    assert_ne!(a, approval_id(F, "i-1", "reboot", "ep", "req-2"));
    assert_ne!(
        approval_id(F, "i-1", "reboot", "e", "preq"),
        approval_id(F, "i-1", "reboot", "ep", "req")
    );
    assert_eq!(approval_key(F, "x"), "reboot-instance#approval#x");
}

#[test]
fn keys_are_checked_and_never_shown() {
    let raw = "k7Hq2Zp9Lm4Xv8Rt1Wc6Yb3Nd5Gf0Js2Ae";
    let k = Key::from_parameter(&format!("  {raw}\n")).unwrap();
    assert!(!format!("{k:?}").contains(raw));
    assert!(matches!(
        Key::from_parameter("short"),
        Err(KeyError::TooShort { bytes: 5 })
    ));
    assert!(matches!(
        Key::from_parameter(&"ab".repeat(40)),
        Err(KeyError::Weak { distinct: 2 })
    ));
    assert!(matches!(
        Key::from_parameter("base64:not base64!"),
        Err(KeyError::NotBase64)
    ));
    assert!(matches!(
        Key::from_parameter(&format!("base64:{}", STANDARD.encode([7u8; 16]))),
        Err(KeyError::TooShort { bytes: 16 })
    ));
    for e in [
        KeyError::TooShort { bytes: 5 },
        KeyError::NotBase64,
        KeyError::Weak { distinct: 2 },
    ] {
        assert!(!e.to_string().contains(raw));
    }
}

#[tokio::test]
async fn the_key_is_read_through_the_parameters_port() {
    struct Params(Option<String>);
    #[async_trait::async_trait]
    impl Parameters for Params {
        async fn get(&self, _: &str) -> Result<Option<String>, AwsError> {
            Ok(self.0.clone())
        }
    }
    let raw = "k7Hq2Zp9Lm4Xv8Rt1Wc6Yb3Nd5Gf0Js2Ae";
    assert!(Key::load(&Params(Some(raw.into())), "/selfheal/key")
        .await
        .is_ok());
    let missing = Key::load(&Params(None), "/selfheal/key").await.unwrap_err();
    assert!(missing.to_string().contains("/selfheal/key does not exist"));
}

#[test]
fn link_bases_are_https_and_need_no_escaping() {
    let ok = "https://abc123.lambda-url.eu-west-1.on.aws/";
    assert_eq!(base_url(&format!(" {ok}\n")), Ok(ok.to_string()));
    for bad in [
        "",
        "http://abc.lambda-url.eu-west-1.on.aws/",
        "https://",
        "https:///path",
        "javascript:alert(1)",
        "https://a.example/x y",
        "https://a.example/\"onmouseover=x",
        "https://a.example/<b>",
        "https://a.example/#frag",
    ] {
        let e = base_url(bad).unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

#[test]
fn links_and_ttl_settings() {
    assert_eq!(
        link("https://x.lambda-url/", "a.b"),
        "https://x.lambda-url/?t=a.b"
    );
    assert_eq!(link("https://x/?k=1", "a.b"), "https://x/?k=1&t=a.b");
    let get = |v: Option<&'static str>| move |_: &str| v.map(String::from);
    assert_eq!(ttl_setting(&get(None)), Ok(DEFAULT_TTL_SECONDS));
    assert_eq!(ttl_setting(&get(Some("600"))), Ok(600));
    for bad in ["0", "59", "604801", "1h"] {
        assert!(ttl_setting(&get(Some(bad))).is_err(), "{bad}");
    }
}

/// Cases for the token property tests: `SELFHEAL_TOKEN_CASES` (default 256; `make soak` runs
/// many more).
fn cases() -> u32 {
    std::env::var("SELFHEAL_TOKEN_CASES")
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(256)
}

fn any_claims() -> impl Strategy<Value = Claims> {
    (
        "[a-z-]{1,20}",
        "\\PC{0,60}",
        "[a-z-]{1,12}",
        "\\PC{0,30}",
        "[0-9a-f]{32}",
        any::<bool>(),
        0i64..4_000_000_000,
        1i64..MAX_TTL_SECONDS,
    )
        .prop_map(
            |(function, target, action, episode, id, approve, iat, ttl)| Claims {
                v: VERSION,
                function,
                target,
                action,
                episode,
                id,
                decision: if approve {
                    Choice::Approve
                } else {
                    Choice::Reject
                },
                iat,
                exp: iat + ttl,
            },
        )
}

/// A change to a token's text: a character replaced, inserted or removed, a cut, the two parts
/// swapped, or a suffix added.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, char),
    Insert(usize, char),
    Remove(usize),
    Truncate(usize),
    Swap,
    Append(String),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        proptest::char::range('A', 'Z'),
        proptest::char::range('a', 'z'),
        proptest::char::range('0', '9'),
        Just('-'),
        Just('_'),
        Just('.'),
        Just('='),
        Just('+'),
        Just('/'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        Just(Mutation::Swap),
        "[A-Za-z0-9_=.-]{1,8}".prop_map(Mutation::Append),
    ]
}

fn apply(token: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let n = chars.len();
    match m {
        Mutation::Replace(i, c) => chars[i % n] = *c,
        Mutation::Insert(i, c) => chars.insert(i % (n + 1), *c),
        Mutation::Remove(i) => {
            chars.remove(i % n);
        }
        Mutation::Truncate(i) => chars.truncate(i % n),
        Mutation::Swap => {
            let (a, b) = token.split_once('.').unwrap_or((token, ""));
            return format!("{b}.{a}");
        }
        Mutation::Append(s) => return format!("{token}{s}"),
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every genuine token is accepted, with its claims, exactly once.
    #[test]
    fn every_genuine_token_is_accepted_once(c in any_claims(), at in 0i64..MAX_TTL_SECONDS) {
        let k = key(1);
        let t = sign(&c, &k);
        let now = c.iat + at % (c.exp - c.iat);
        prop_assert_eq!(verify(&t, &k, now, &c.function), Ok(c.clone()));
        let mut ledger = Ledger::default();
        prop_assert_eq!(ledger.consume(&c, now), Use::Consumed);
        // Replayed, at any later moment the token is still accepted: already used.
        let later = now + (at % (c.exp - now).max(1));
        prop_assert!(verify(&t, &k, later, &c.function).is_ok());
        prop_assert_eq!(ledger.consume(&c, later), Use::AlreadyUsed);
        let twin = Claims { decision: match c.decision { Choice::Approve => Choice::Reject, Choice::Reject => Choice::Approve }, ..c.clone() };
        prop_assert_eq!(ledger.consume(&twin, later), Use::AlreadyUsed);
    }

    /// Mutated and truncated tokens: refused, unless the mutation left the text unchanged.
    #[test]
    fn no_altered_token_is_accepted(c in any_claims(), ms in proptest::collection::vec(any_mutation(), 1..4)) {
        let k = key(1);
        let t = sign(&c, &k);
        let mut m = t.clone();
        for mutation in &ms {
            if m.is_empty() { break; }
            m = apply(&m, mutation);
        }
        let r = verify(&m, &k, c.iat, &c.function);
        if m == t {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(r.is_err(), "accepted an altered token: {:?}", ms);
            let e = r.unwrap_err();
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    /// Re-signed with another key, expired, or for another function: refused.
    #[test]
    fn foreign_keys_expiry_and_functions_are_refused(c in any_claims(), seed in 2u8..255, late in 0i64..1_000_000, other in "[a-z-]{1,20}") {
        let k = key(1);
        let resigned = sign(&c, &key(seed));
        prop_assert_eq!(verify(&resigned, &k, c.iat, &c.function), Err(TokenError::BadSignature));
        let t = sign(&c, &k);
        let expired = verify(&t, &k, c.exp + late, &c.function);
        prop_assert!(matches!(expired, Err(TokenError::Expired { .. })), "{:?}", expired);
        if other != c.function {
            let foreign = verify(&t, &k, c.iat, &other);
            prop_assert!(matches!(foreign, Err(TokenError::ForeignFunction { .. })), "{:?}", foreign);
        }
    }
}
