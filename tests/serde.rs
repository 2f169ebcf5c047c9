//! The `serde` feature: the configuration and the plain values read back what they write,
//! in the forms a host puts in its config file, and a configuration `ConfigBuilder::build`
//! refuses is refused on reading too.
#![cfg(feature = "serde")]

use core::time::Duration;

use rotauth::{ClientId, Config, ConfigError, KeyId, Mode, ReplayPolicy, Timestamp};
use serde_json::{from_str, json, to_string, to_value};

#[test]
fn default_config_is_written_field_by_field_in_milliseconds() {
    let written = to_value(Config::default()).unwrap();
    assert_eq!(
        written,
        json!({
            "rotate": true,
            "batch_window_ms": 5_000,
            "lifespan_ms": 1_209_600_000,
            "mode": "strict",
            "replay_policy": "reject",
        })
    );
    assert_eq!(
        from_str::<Config>(&written.to_string()).unwrap(),
        Config::default()
    );
}

#[test]
fn every_field_round_trips() {
    let config = Config::builder()
        .rotate(false)
        .batch_window(Duration::from_millis(1_500))
        .lifespan(Duration::from_secs(3_600))
        .absolute_lifetime(Some(Duration::from_secs(86_400)))
        .mode(Mode::Recover)
        .replay_policy(ReplayPolicy::RevokeSession)
        .build()
        .unwrap();
    let text = to_string(&config).unwrap();
    assert_eq!(
        text,
        r#"{"rotate":false,"batch_window_ms":1500,"lifespan_ms":3600000,"absolute_lifetime_ms":86400000,"mode":"recover","replay_policy":"revoke_session"}"#
    );
    assert_eq!(from_str::<Config>(&text).unwrap(), config);
}

#[test]
fn missing_fields_take_the_defaults() {
    assert_eq!(from_str::<Config>("{}").unwrap(), Config::default());
    let config: Config = from_str(r#"{"mode": "recover", "absolute_lifetime_ms": null}"#).unwrap();
    assert_eq!(
        config,
        Config::builder().mode(Mode::Recover).build().unwrap()
    );
}

/// What `build` refuses, reading refuses, with `build`'s message.
#[test]
fn invalid_configs_are_refused_with_the_builders_message() {
    for (text, error) in [
        (r#"{"lifespan_ms": 0}"#, ConfigError::ZeroLifespan),
        (
            r#"{"absolute_lifetime_ms": 0}"#,
            ConfigError::ZeroAbsoluteLifetime,
        ),
        (
            r#"{"batch_window_ms": 10000, "lifespan_ms": 9999}"#,
            ConfigError::WindowLongerThanLifespan,
        ),
        (
            r#"{"batch_window_ms": 5000, "absolute_lifetime_ms": 4999}"#,
            ConfigError::AbsoluteLifetimeShorterThanWindow,
        ),
    ] {
        let refused = from_str::<Config>(text).unwrap_err().to_string();
        assert!(refused.starts_with(&error.to_string()), "{text}: {refused}");
    }
}

#[test]
fn unknown_fields_and_names_are_refused() {
    // A misspelt field must not leave the policy at its default.
    let refused = from_str::<Config>(r#"{"batch_window": 100}"#).unwrap_err();
    assert!(
        refused.to_string().contains("unknown field `batch_window`"),
        "{refused}"
    );
    for text in [
        r#"{"mode": "Strict"}"#,
        r#"{"mode": "lenient"}"#,
        r#"{"replay_policy": "revoke"}"#,
        r#"{"lifespan_ms": -1}"#,
        r#"{"lifespan_ms": "14 days"}"#,
        r#"{"rotate": "yes"}"#,
    ] {
        assert!(from_str::<Config>(text).is_err(), "{text}");
    }
}

#[test]
fn mode_and_replay_policy_are_their_display_names() {
    for mode in [Mode::Strict, Mode::Recover] {
        let text = to_string(&mode).unwrap();
        assert_eq!(text, format!("\"{mode}\""));
        assert_eq!(from_str::<Mode>(&text).unwrap(), mode);
    }
    for policy in [ReplayPolicy::Reject, ReplayPolicy::RevokeSession] {
        let text = to_string(&policy).unwrap();
        assert_eq!(text, format!("\"{policy}\""));
        assert_eq!(from_str::<ReplayPolicy>(&text).unwrap(), policy);
    }
}

#[test]
fn client_id_is_its_header_text() {
    let id =
        ClientId::from_bytes(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xfa\xfb\xfc\xfd\xfe\xff");
    let text = to_string(&id).unwrap();
    assert_eq!(text, format!("\"{id}\""));
    assert_eq!(text.len(), 2 + ClientId::TEXT_LEN);
    assert_eq!(from_str::<ClientId>(&text).unwrap(), id);
    // One character short, one too many, a character outside base64url, not a string.
    let inner = id.to_string();
    for bad in [
        json!(inner[1..]),
        json!(format!("{inner}A")),
        json!(format!("+{}", &inner[1..])),
        json!(42),
    ] {
        assert!(
            serde_json::from_value::<ClientId>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn key_id_and_timestamp_are_numbers() {
    assert_eq!(to_string(&KeyId(7)).unwrap(), "7");
    assert_eq!(from_str::<KeyId>("255").unwrap(), KeyId(255));
    assert!(from_str::<KeyId>("256").is_err());
    assert!(from_str::<KeyId>("-1").is_err());
    assert!(from_str::<KeyId>("\"7\"").is_err());

    for millis in [0, 1_796_083_200_000, u64::MAX] {
        let at = Timestamp::from_unix_millis(millis);
        let text = to_string(&at).unwrap();
        assert_eq!(text, millis.to_string());
        assert_eq!(from_str::<Timestamp>(&text).unwrap(), at);
    }
    assert!(from_str::<Timestamp>("-1").is_err());
    assert!(from_str::<Timestamp>("1.5").is_err());
    assert!(from_str::<Timestamp>("18446744073709551616").is_err());
}
