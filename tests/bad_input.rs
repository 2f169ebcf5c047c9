//! Bad input of every kind gets a typed error or a Reject, never a panic, and changes nothing.

mod common;

use common::Host;
use rotauth::{
    Decision, DecodeError, RejectReason, Request, Session, Sessions, TOKEN_LEN, TOKEN_TEXT_LEN,
    TokenError,
};

fn malformed(host: &Host, session: &Session, text: &str) -> Option<TokenError> {
    match host.rotator.decide(session, Request::new(text, host.now)) {
        Decision::Reject {
            reason: RejectReason::Malformed(e),
        } => Some(e),
        _ => None,
    }
}

#[test]
fn every_malformed_token_text_is_rejected_as_malformed() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    let good = token.to_text().as_str().to_owned();
    let wrong_length = |len| Some(TokenError::WrongLength { len });

    assert_eq!(malformed(&host, &session, ""), wrong_length(0));
    assert_eq!(malformed(&host, &session, " "), wrong_length(1));
    assert_eq!(
        malformed(&host, &session, &good[..TOKEN_TEXT_LEN - 1]),
        wrong_length(54)
    );
    assert_eq!(
        malformed(&host, &session, &format!("{good}=")),
        wrong_length(56)
    );
    assert_eq!(
        malformed(&host, &session, &format!("{good}A")),
        wrong_length(56)
    );
    assert_eq!(
        malformed(&host, &session, &"A".repeat(10 * 1024)),
        wrong_length(10 * 1024)
    );
    assert_eq!(
        malformed(&host, &session, &format!("Bearer {good}")),
        wrong_length(62)
    );
    // Standard base64 instead of base64url, padding, whitespace, non-ASCII.
    for (index, bad) in [
        (0, '+'),
        (10, '/'),
        (54, '='),
        (30, ' '),
        (20, '\n'),
        (5, '\u{0}'),
    ] {
        let mut text = good.clone().into_bytes();
        text[index] = bad as u8;
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            malformed(&host, &session, &text),
            Some(TokenError::BadEncoding),
            "{bad:?} at {index}"
        );
    }
    let text = format!("{}ü", &good[..TOKEN_TEXT_LEN - 2]);
    assert_eq!(text.len(), TOKEN_TEXT_LEN);
    assert_eq!(
        malformed(&host, &session, &text),
        Some(TokenError::BadEncoding)
    );
}

#[test]
fn every_wrong_token_byte_length_is_malformed() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    let mut long = token.as_bytes().to_vec();
    long.push(0);
    for bytes in [
        &[][..],
        &token.as_bytes()[..TOKEN_LEN - 1],
        &long[..],
        &[0u8; 4096][..],
    ] {
        let decision = host.rotator.decide(&session, Request::new(bytes, host.now));
        assert_eq!(
            decision.reject_reason(),
            Some(RejectReason::Malformed(TokenError::WrongLength {
                len: bytes.len()
            }))
        );
    }
    // Right length, all zeros: key 0 is unknown.
    let decision = host
        .rotator
        .decide(&session, Request::new(&[0u8; TOKEN_LEN][..], host.now));
    assert_eq!(decision.reject_reason(), Some(RejectReason::UnknownKey));
}

#[test]
fn every_truncation_of_a_record_is_a_length_error() {
    let mut host = Host::default_config();
    let (session, _) = host.sign_in();
    let bytes = *session.encode().as_bytes();
    for len in 0..Session::ENCODED_LEN {
        assert_eq!(
            Session::decode(&bytes[..len]),
            Err(DecodeError::WrongLength {
                expected: Session::ENCODED_LEN,
                found: len
            })
        );
    }
}

#[test]
fn every_single_byte_corruption_of_a_record_decodes_or_errs_without_panic() {
    let mut host = Host::default_config();
    let (session, _) = host.sign_in();
    let bytes = *session.encode().as_bytes();
    let mut errors = 0;
    for index in 0..Session::ENCODED_LEN {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut corrupt = bytes;
            corrupt[index] = value;
            match Session::decode(&corrupt) {
                // A corruption that still decodes is a different but valid record, which
                // re-encodes to exactly the bytes it came from.
                Ok(decoded) => assert_eq!(decoded.encode().as_bytes(), &corrupt),
                Err(_) => errors += 1,
            }
        }
    }
    // Format byte, flags and the timestamps' order catch some of them.
    assert!(errors > 0);
}

#[test]
fn corrupted_container_bytes_are_typed_errors() {
    let mut host = Host::default_config();
    let mut sessions: Sessions<3> = Sessions::new();
    for _ in 0..2 {
        let _ = sessions.sign_in(&host.rotator, &mut host.rng, host.now);
    }
    let mut buffer = [0u8; Sessions::<3>::MAX_ENCODED_LEN];
    let len = sessions.encode(&mut buffer).unwrap();
    let bytes = &buffer[..len];
    assert_eq!(Sessions::<3>::decode(bytes).unwrap(), sessions);

    for cut in 0..len {
        assert!(
            Sessions::<3>::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(matches!(
        Sessions::<3>::decode(&trailing),
        Err(DecodeError::WrongLength { .. })
    ));

    let mut unknown_format = bytes.to_vec();
    unknown_format[0] = 9;
    assert_eq!(
        Sessions::<3>::decode(&unknown_format),
        Err(DecodeError::UnknownFormat(9))
    );

    // Two sessions in a container of capacity one.
    assert!(matches!(
        Sessions::<1>::decode(bytes),
        Err(DecodeError::InvalidField(_))
    ));

    // One session twice.
    let mut twice = bytes.to_vec();
    twice.truncate(2 + Session::ENCODED_LEN);
    twice.extend_from_slice(&bytes[2..2 + Session::ENCODED_LEN]);
    assert!(matches!(
        Sessions::<3>::decode(&twice),
        Err(DecodeError::InvalidField(_))
    ));

    // Count claims more than is there.
    let mut overclaim = bytes.to_vec();
    overclaim[1] = 3;
    assert!(matches!(
        Sessions::<3>::decode(&overclaim),
        Err(DecodeError::WrongLength { .. })
    ));

    // A too-small output buffer is an error and writes nothing.
    let mut small = [0xeeu8; 10];
    assert!(sessions.encode(&mut small).is_err());
    assert_eq!(small, [0xee; 10]);
}
