//! The text forms a host parses from its command line, environment or headers: `FromStr`
//! and `Display` agree, and a name that is not one is refused without echoing it.

mod common;

use common::Host;
use rotauth::{DecisionKind, Mode, ReplayPolicy, Token, TokenError};

#[test]
fn mode_names() {
    for (mode, name) in [(Mode::Strict, "strict"), (Mode::Recover, "recover")] {
        assert_eq!(mode.to_string(), name);
        assert_eq!(name.parse::<Mode>(), Ok(mode));
    }
    for bad in ["", "Strict", " strict", "strict ", "lenient", "reject"] {
        let error = bad.parse::<Mode>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"unknown mode: expected "strict" or "recover""#
        );
    }
}

#[test]
fn decision_kind_names() {
    let names = [
        "accept",
        "rotate",
        "batch_reuse",
        "reissue",
        "reject",
        "revoke",
    ];
    assert_eq!(DecisionKind::ALL.len(), names.len());
    for (kind, name) in DecisionKind::ALL.into_iter().zip(names) {
        assert_eq!(kind.to_string(), name);
        assert_eq!(kind.as_str(), name);
        assert_eq!(name.parse::<DecisionKind>(), Ok(kind));
    }
    for bad in ["", "Rotate", "batch-reuse", "rotate ", "refuse"] {
        let error = bad.parse::<DecisionKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown decision kind: expected accept, rotate, batch_reuse, reissue, reject or revoke"
        );
    }
}

#[test]
fn replay_policy_names() {
    for (policy, name) in [
        (ReplayPolicy::Reject, "reject"),
        (ReplayPolicy::RevokeSession, "revoke_session"),
    ] {
        assert_eq!(policy.to_string(), name);
        assert_eq!(name.parse::<ReplayPolicy>(), Ok(policy));
    }
    for bad in ["", "Reject", "revoke", "revoke-session", "strict"] {
        let error = bad.parse::<ReplayPolicy>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"unknown replay policy: expected "reject" or "revoke_session""#
        );
    }
}

#[test]
fn token_parses_as_from_text_does() {
    let mut host = Host::default_config();
    let (_, token) = host.sign_in();
    let text = token.to_text();
    assert_eq!(text.as_str().parse::<Token>(), Ok(token.clone()));
    assert_eq!(
        text.as_str().parse::<Token>(),
        Token::from_text(text.as_str())
    );
    let short = text.as_str().get(1..).unwrap();
    assert_eq!(
        short.parse::<Token>(),
        Err(TokenError::WrongLength { len: short.len() })
    );
    let mangled = format!("*{short}");
    assert_eq!(mangled.parse::<Token>(), Err(TokenError::BadEncoding));
}
