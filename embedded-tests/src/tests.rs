//! The tests, in the order they run.

use core::time::Duration;

use rotauth::{
    ClientId, Config, Decision, DecodeError, KeyId, Keyring, Mode, RejectReason, ReplayPolicy,
    Request, Rotator, Session, Sessions, Timestamp, Token, TokenError,
};

use crate::harness::{Outcome, Test, check, check_eq, get};
use crate::rng::{FixedBytes, TestRng};
use crate::{stack, vectors};

pub const ALL: &[Test] = &[
    ("known_answer_vectors", known_answer_vectors),
    (
        "current_token_batches_then_rotates_at_the_window_edge",
        current_token,
    ),
    (
        "previous_and_last_batch_in_window_replay_after",
        previous_and_last,
    ),
    (
        "older_than_last_is_replayed_even_in_window",
        older_than_last,
    ),
    ("clock_behind_rotated_at_counts_as_age_zero", clock_behind),
    (
        "force_rotation_rotates_every_batch_member_inside_the_window",
        force_rotation,
    ),
    ("newer_token_fast_forwards_to_the_same_chain", fast_forward),
    ("expiry_and_absolute_lifetime_reject", lifetimes),
    (
        "recover_mode_reissues_once_until_acknowledged",
        recover_mode,
    ),
    ("revoke_policy_revokes_on_replay", revoke_policy),
    ("rotation_off_accepts_current_refuses_older", rotation_off),
    ("bad_tokens_get_distinct_reasons", bad_tokens),
    ("key_rotation_keeps_sessions_alive", key_rotation),
    ("sessions_of_four_sign_in_evict_sign_out", sessions_story),
    ("session_record_round_trips", record_round_trips),
    ("session_record_rejects_bad_bytes", record_rejects_bad_bytes),
    ("random_records_never_panic", random_records),
    ("stack_use_of_sign_in_and_decide", stack_use),
];

/// The tests to run. `ROTAUTH_EMBEDDED_INJECT=fail|panic|hardfault` at build time swaps in
/// one that fails that way, so CI can prove each failure makes the run exit non-zero.
pub fn selected() -> &'static [Test] {
    match option_env!("ROTAUTH_EMBEDDED_INJECT") {
        Some("fail") => &[("injected_failed_check", || {
            check!(1 + 1 == 3);
            Ok(())
        })],
        Some("panic") => &[("injected_panic", || {
            let empty: &[u8] = core::hint::black_box(&[]);
            let _ = empty[3];
            Ok(())
        })],
        Some("hardfault") => &[("injected_hardfault", || cortex_m::asm::udf())],
        _ => ALL,
    }
}

const KEY: [u8; 32] = [0x42; 32];
/// 2023-11-14T22:13:20Z, a plausible `now`.
const T0: u64 = 1_700_000_000_000;
const WINDOW: u64 = 5_000;
const LIFESPAN: u64 = 14 * 24 * 3_600 * 1_000;
/// The stack budget for one sign-in or decision: a quarter of the micro:bit's 16 KiB.
const STACK_BUDGET: usize = 4 * 1024;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn rotator_with(config: Config) -> Result<Rotator, crate::harness::Failure> {
    Ok(Rotator::new(get!(Keyring::new(KeyId(1), &KEY)), config))
}

fn rotator() -> Result<Rotator, crate::harness::Failure> {
    rotator_with(Config::default())
}

/// The 75-byte record of `Session::encode`, written field by field from its documented
/// layout, so decoding it tests the layout and not just a round trip.
#[allow(clippy::too_many_arguments)]
fn record(
    client_id: [u8; 16],
    seed: [u8; 16],
    key_id: u8,
    generation: u64,
    times: [u64; 3],
    flags: u8,
    version: u64,
) -> [u8; Session::ENCODED_LEN] {
    let mut out = [0u8; Session::ENCODED_LEN];
    let [created, rotated, expires] = times;
    let fields: [&[u8]; 10] = [
        &[1],
        &client_id,
        &seed,
        &[key_id],
        &generation.to_be_bytes(),
        &created.to_be_bytes(),
        &rotated.to_be_bytes(),
        &expires.to_be_bytes(),
        &[flags],
        &version.to_be_bytes(),
    ];
    out.iter_mut()
        .zip(fields.into_iter().flatten())
        .for_each(|(d, s)| *d = *s);
    out
}

/// A session signed in at `T0` and rotated at `T0 + 10 s`, `+ 20 s`, `+ 30 s`: generation 3,
/// with `T(0)..T(3)`.
fn generation_three(r: &Rotator) -> Result<(Session, [Token; 4]), crate::harness::Failure> {
    let (mut session, t0) = r.sign_in(&mut TestRng::new(7), at(T0));
    let mut tokens = [t0.clone(), t0.clone(), t0.clone(), t0];
    for n in 1..4u64 {
        let previous = get!(tokens.get(n as usize - 1)).clone();
        match r.decide(&session, Request::new(&previous, at(T0 + n * 10_000))) {
            Decision::Rotate {
                session: next,
                token,
            } => {
                check_eq!(token.generation(), n);
                session = next;
                *get!(tokens.get_mut(n as usize)) = token;
            }
            _ => check!(false),
        }
    }
    Ok((session, tokens))
}

fn known_answer_vectors() -> Outcome {
    let mut count = 0;
    for vector in vectors::all() {
        let Ok(v) = vector else {
            return Err(crate::harness::Failure {
                line: line!(),
                what: "a line of tests/vectors/tokens.txt does not parse",
            });
        };
        count += 1;
        let r = Rotator::new(
            get!(Keyring::new(KeyId(v.key_id), v.key())),
            Config::default(),
        );
        let bytes = record(
            v.client_id,
            v.seed,
            v.key_id,
            v.generation,
            [T0, T0, u64::MAX],
            0,
            0,
        );
        let session = get!(Session::decode(&bytes));
        check_eq!(session.encode().as_bytes(), &bytes);
        let token = get!(r.current_token(&session));
        check_eq!(token.to_text().as_str(), v.token);
        check_eq!(token.generation(), v.generation);
        check_eq!(token.key_id(), KeyId(v.key_id));
        // The vector's token, as text and as bytes, is the session's current token.
        let decided = r.decide(&session, Request::new(v.token, at(T0 + 1)));
        check_eq!(decided, Decision::BatchReuse { updated: None });
        let decided = r.decide(&session, Request::new(&token.as_bytes()[..], at(T0 + 1)));
        check_eq!(decided, Decision::BatchReuse { updated: None });
        if v.generation == 0 {
            // Signing in with this client id and seed yields the same T(0).
            let mut entropy = [0u8; 32];
            entropy[..16].copy_from_slice(&v.client_id);
            entropy[16..].copy_from_slice(&v.seed);
            let (signed_in, t0) = get!(r.try_sign_in(&mut FixedBytes::new(&entropy), at(T0)));
            check_eq!(t0.to_text().as_str(), v.token);
            check_eq!(signed_in.client_id(), ClientId::from_bytes(v.client_id));
        }
    }
    let expected = vectors::FILE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    check_eq!(count, expected);
    check!(count >= 7);
    Ok(())
}

fn current_token() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let rotated = session.rotated_at().unix_millis();
    let t3 = get!(tokens.get(3));
    for now in [rotated, rotated + 1, rotated + WINDOW - 1] {
        check_eq!(
            r.decide(&session, Request::new(t3, at(now))),
            Decision::BatchReuse { updated: None }
        );
    }
    let now = rotated + WINDOW;
    let Decision::Rotate {
        session: next,
        token,
    } = r.decide(&session, Request::new(t3, at(now)))
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected Rotate",
        });
    };
    check_eq!(next.generation(), 4);
    check_eq!(next.rotated_at(), at(now));
    check_eq!(next.expires_at(), at(now + LIFESPAN));
    check_eq!(next.created_at(), session.created_at());
    check_eq!(next.version(), session.version() + 1);
    check_eq!(next.client_id(), session.client_id());
    check_eq!(Some(token.clone()), r.current_token(&next));
    // Rotation is a function of the session: deciding again gives the same T(4).
    let again = r.decide(&session, Request::new(t3, at(now + 1)));
    check_eq!(again.token_to_send(), Some(&token));
    Ok(())
}

fn previous_and_last() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let rotated = session.rotated_at().unix_millis();
    for (index, behind) in [(2usize, 1u64), (1, 2)] {
        let token = get!(tokens.get(index));
        let inside = r.decide(&session, Request::new(token, at(rotated + WINDOW - 1)));
        check_eq!(inside, Decision::BatchReuse { updated: None });
        let outside = r.decide(&session, Request::new(token, at(rotated + WINDOW)));
        check_eq!(
            outside,
            Decision::Reject {
                reason: RejectReason::Replayed { behind },
            }
        );
        check!(outside.session_to_store().is_none());
    }
    Ok(())
}

fn older_than_last() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let rotated = session.rotated_at().unix_millis();
    let decided = r.decide(&session, Request::new(get!(tokens.first()), at(rotated)));
    check_eq!(
        decided.reject_reason(),
        Some(RejectReason::Replayed { behind: 3 })
    );
    Ok(())
}

fn clock_behind() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let t3 = get!(tokens.get(3));
    for now in [0, T0, session.rotated_at().unix_millis() - 1] {
        check_eq!(
            r.decide(&session, Request::new(t3, at(now))),
            Decision::BatchReuse { updated: None }
        );
    }
    let t2 = get!(tokens.get(2));
    check_eq!(
        r.decide(&session, Request::new(t2, at(0))),
        Decision::BatchReuse { updated: None }
    );
    Ok(())
}

fn force_rotation() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let now = session.rotated_at().unix_millis() + 1;
    let decided = r.decide(
        &session,
        Request::new(get!(tokens.get(3)), at(now)).force_rotation(),
    );
    check_eq!(decided.session_to_store().map(Session::generation), Some(4));
    // devise's unbatch: every batch member in the window (T(n-1), T(n-2)) rotates n to n+1.
    for index in [1, 2] {
        let decided = r.decide(
            &session,
            Request::new(get!(tokens.get(index)), at(now)).force_rotation(),
        );
        check_eq!(decided.session_to_store().map(Session::generation), Some(4));
        check_eq!(decided.token_to_send().map(Token::generation), Some(4));
    }
    // Outside the window forcing changes nothing: a previous token stays a replay.
    let late = at(session.rotated_at().unix_millis() + WINDOW);
    let decided = r.decide(
        &session,
        Request::new(get!(tokens.get(2)), late).force_rotation(),
    );
    check_eq!(
        decided.reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    Ok(())
}

fn fast_forward() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    // A replica that lost the writes after sign-in still holds generation 0.
    let (stale, _) = r.sign_in(&mut TestRng::new(7), at(T0));
    check_eq!(stale.client_id(), session.client_id());
    let t3 = get!(tokens.get(3));
    // T(3) is adopted as current, and the lost rotation's window replays from `now`,
    // inside the stale window or long after it.
    for now in [T0 + 1, T0 + 40_000] {
        let decided = r.decide(&stale, Request::new(t3, at(now)));
        let Decision::BatchReuse {
            updated: Some(ahead),
        } = decided
        else {
            return Err(crate::harness::Failure {
                line: line!(),
                what: "expected fast-forward",
            });
        };
        check_eq!(ahead.generation(), 3);
        check_eq!(ahead.rotated_at(), at(now));
        check_eq!(ahead.version(), stale.version() + 1);
    }
    // Once stored, the fast-forwarded record rotates to the T(4) the real chain makes.
    let later = T0 + 40_000;
    let Decision::BatchReuse {
        updated: Some(ahead),
    } = r.decide(&stale, Request::new(t3, at(later)))
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected fast-forward",
        });
    };
    let from_stale = r.decide(&ahead, Request::new(t3, at(later + WINDOW)));
    let from_real = r.decide(&session, Request::new(t3, at(later + WINDOW)));
    check_eq!(from_stale.token_to_send().map(Token::generation), Some(4));
    check_eq!(from_stale.token_to_send(), from_real.token_to_send());
    Ok(())
}

fn lifetimes() -> Outcome {
    let r = rotator()?;
    let (session, t0) = r.sign_in(&mut TestRng::new(1), at(T0));
    check_eq!(session.expires_at(), at(T0 + LIFESPAN));
    let just_before = r.decide(&session, Request::new(&t0, at(T0 + LIFESPAN - 1)));
    check_eq!(just_before.kind().as_str(), "rotate");
    let at_expiry = r.decide(&session, Request::new(&t0, at(T0 + LIFESPAN)));
    check_eq!(at_expiry.reject_reason(), Some(RejectReason::Expired));
    let at_end = r.decide(&session, Request::new(&t0, Timestamp::MAX));
    check_eq!(at_end.reject_reason(), Some(RejectReason::Expired));

    let hour = 3_600_000;
    let config = get!(
        Config::builder()
            .absolute_lifetime(Some(Duration::from_millis(hour)))
            .build()
    );
    let r = rotator_with(config)?;
    let (mut session, mut token) = r.sign_in(&mut TestRng::new(2), at(T0));
    check_eq!(session.expires_at(), at(T0 + hour));
    // Rotating never moves expiry past the absolute deadline.
    for step in 1..4u64 {
        let Decision::Rotate {
            session: s,
            token: t,
        } = r.decide(&session, Request::new(&token, at(T0 + step * 1_000_000)))
        else {
            return Err(crate::harness::Failure {
                line: line!(),
                what: "expected Rotate",
            });
        };
        check!(s.expires_at() <= at(T0 + hour));
        (session, token) = (s, t);
    }
    let too_old = r.decide(&session, Request::new(&token, at(T0 + hour)));
    check_eq!(too_old.reject_reason(), Some(RejectReason::TooOld));
    Ok(())
}

fn recover_mode() -> Outcome {
    let r = rotator_with(get!(Config::builder().mode(Mode::Recover).build()))?;
    let (session, t0) = r.sign_in(&mut TestRng::new(3), at(T0));
    let Decision::Rotate { session, token: t1 } =
        r.decide(&session, Request::new(&t0, at(T0 + WINDOW)))
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected Rotate",
        });
    };
    // The response carrying T(1) was lost: T(0) after the window gets T(1) again.
    let late = session.rotated_at().unix_millis() + WINDOW;
    let reissued = r.decide(&session, Request::new(&t0, at(late)));
    let Decision::Reissue {
        updated: Some(marked),
        token,
    } = reissued
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected a Reissue that records itself",
        });
    };
    check_eq!(token, t1);
    check!(marked.reissued());
    // A recovery is granted once: the rotation out of the reissued generation starts the
    // next one acknowledged, so T(1), which two parties may now hold, is not exchanged.
    let after = marked.rotated_at().unix_millis() + 2 * WINDOW;
    let Decision::Rotate { session: next, .. } = r.decide(&marked, Request::new(&t1, at(after)))
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected Rotate",
        });
    };
    check!(next.acknowledged());
    check_eq!(
        r.decide(&next, Request::new(&t1, at(after + WINDOW)))
            .reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    // Once T(1) is used, T(0) is a replay.
    let used = r.decide(&session, Request::new(&t1, at(late - 1)));
    let Decision::BatchReuse {
        updated: Some(acknowledged),
    } = used
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected acknowledgement",
        });
    };
    check!(acknowledged.acknowledged());
    check!(!session.acknowledged());
    let replayed = r.decide(&acknowledged, Request::new(&t0, at(late)));
    check_eq!(
        replayed.reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    // Strict mode (the default) never reissues.
    let strict = rotator()?;
    let replayed = strict.decide(&session, Request::new(&t0, at(late)));
    check_eq!(
        replayed.reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    Ok(())
}

fn revoke_policy() -> Outcome {
    let config = get!(
        Config::builder()
            .replay_policy(ReplayPolicy::RevokeSession)
            .build()
    );
    let r = rotator_with(config)?;
    let (session, tokens) = generation_three(&r)?;
    let late = session.rotated_at().unix_millis() + WINDOW;
    let replayed = r.decide(&session, Request::new(get!(tokens.get(2)), at(late)));
    check!(replayed.must_revoke());
    // Forgeries and expiry never revoke: only a genuine old token does.
    let forged = r.decide(
        &session,
        Request::new(&tokens[0].as_bytes()[..40], at(late)),
    );
    check!(!forged.must_revoke());
    Ok(())
}

fn rotation_off() -> Outcome {
    let r = rotator_with(get!(Config::builder().rotate(false).build()))?;
    let (session, t0) = r.sign_in(&mut TestRng::new(4), at(T0));
    for now in [T0, T0 + WINDOW, T0 + LIFESPAN - 1] {
        check_eq!(
            r.decide(&session, Request::new(&t0, at(now))),
            Decision::Accept { updated: None }
        );
    }
    check_eq!(
        r.decide(&session, Request::new(&t0, at(T0 + LIFESPAN)))
            .reject_reason(),
        Some(RejectReason::Expired)
    );
    // A generation-1 record of the same session (as if rotation had been on) refuses T(0).
    let mut moved = *session.encode().as_bytes();
    moved[34..42].copy_from_slice(&1u64.to_be_bytes());
    let moved = get!(Session::decode(&moved));
    let decided = r.decide(&moved, Request::new(&t0, at(T0)));
    check_eq!(
        decided.reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    Ok(())
}

fn bad_tokens() -> Outcome {
    let r = rotator()?;
    let (session, t0) = r.sign_in(&mut TestRng::new(5), at(T0));
    let (other, other_t0) = r.sign_in(&mut TestRng::new(6), at(T0));
    check!(other.client_id() != session.client_id());
    let now = at(T0 + 1);
    let reason = |request: Request<'_>| r.decide(&session, request).reject_reason();

    check_eq!(
        r.decide(None, Request::new(&t0, now)).reject_reason(),
        Some(RejectReason::UnknownSession)
    );
    check_eq!(
        reason(Request::new("abc", now)),
        Some(RejectReason::Malformed(TokenError::WrongLength { len: 3 }))
    );
    check_eq!(
        reason(Request::new(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            now
        )),
        Some(RejectReason::Malformed(TokenError::BadEncoding))
    );
    check_eq!(
        reason(Request::new(&[0u8; 40][..], now)),
        Some(RejectReason::Malformed(TokenError::WrongLength { len: 40 }))
    );
    check_eq!(
        reason(Request::new(&other_t0, now)),
        Some(RejectReason::Forged)
    );
    // Every single-bit change of the token is refused.
    for bit in 0..(8 * rotauth::TOKEN_LEN) {
        let mut bytes = *t0.as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let got = reason(Request::new(&bytes[..], now));
        // The key id byte names a key the ring lacks; any other bit breaks the MAC.
        let expected = if bit < 8 {
            RejectReason::UnknownKey
        } else {
            RejectReason::Forged
        };
        check_eq!(got, Some(expected));
    }
    Ok(())
}

fn key_rotation() -> Outcome {
    let mut r = rotator()?;
    let (session, t0) = r.sign_in(&mut TestRng::new(8), at(T0));
    get!(r.keyring_mut().insert(KeyId(2), &[0x24; 48]));
    get!(r.keyring_mut().set_primary(KeyId(2)));
    let Decision::Rotate { session, token } =
        r.decide(&session, Request::new(&t0, at(T0 + WINDOW)))
    else {
        return Err(crate::harness::Failure {
            line: line!(),
            what: "expected Rotate",
        });
    };
    check_eq!(token.key_id(), KeyId(2));
    check_eq!(session.key_id(), KeyId(2));
    get!(r.keyring_mut().remove(KeyId(1)));
    let late = at(T0 + 2 * WINDOW);
    check_eq!(
        r.decide(&session, Request::new(&t0, late)).reject_reason(),
        Some(RejectReason::UnknownKey)
    );
    check_eq!(
        r.decide(&session, Request::new(&token, late))
            .kind()
            .as_str(),
        "rotate"
    );
    Ok(())
}

fn sessions_story() -> Outcome {
    let r = rotator()?;
    let mut rng = TestRng::new(9);
    let mut sessions = Sessions::<4>::new();
    let mut ids = [ClientId::from_bytes([0; 16]); 4];
    let mut tokens = [None, None, None, None];
    for (i, (id, token)) in ids.iter_mut().zip(tokens.iter_mut()).enumerate() {
        let signed_in = sessions.sign_in(&r, &mut rng, at(T0 + i as u64 * 1_000));
        check!(signed_in.evicted.is_none());
        *id = signed_in.client_id;
        *token = Some(signed_in.token);
    }
    check_eq!(sessions.len(), 4);
    // Full: the fifth evicts the session that expires first, the oldest.
    let fifth = sessions.sign_in(&r, &mut rng, at(T0 + 4_000));
    check_eq!(fifth.evicted.as_ref().map(Session::client_id), Some(ids[0]));
    check_eq!(sessions.len(), 4);
    check!(sessions.find(&ids[0]).is_none());
    check!(sessions.find(&fifth.client_id).is_some());

    // Decide through the container: the rotation is applied in place.
    let t_second = get!(tokens[1].as_ref());
    let rotated = sessions.decide(&r, &ids[1], Request::new(t_second, at(T0 + 60_000)));
    check_eq!(rotated.kind().as_str(), "rotate");
    check_eq!(sessions.find(&ids[1]).map(Session::generation), Some(1));
    let replayed = sessions.decide(&r, &ids[1], Request::new(t_second, at(T0 + 70_000)));
    check_eq!(
        replayed.reject_reason(),
        Some(RejectReason::Replayed { behind: 1 })
    );
    check!(sessions.find(&ids[1]).is_some());
    check_eq!(
        sessions
            .decide(&r, &ids[0], Request::new(get!(tokens[0].as_ref()), at(T0)))
            .reject_reason(),
        Some(RejectReason::UnknownSession)
    );

    // The container's encoding round-trips, and a short buffer is reported.
    let mut buffer = [0u8; Sessions::<4>::MAX_ENCODED_LEN];
    let len = get!(sessions.encode(&mut buffer));
    check_eq!(len, 2 + 4 * Session::ENCODED_LEN);
    let decoded = get!(Sessions::<4>::decode(&buffer[..len]));
    check!(decoded == sessions);
    check_eq!(
        sessions
            .encode(&mut buffer[..len - 1])
            .map_err(|e| e.needed),
        Err(len)
    );
    check!(Sessions::<3>::decode(&buffer[..len]).is_err());

    // Password change: everyone but the current session is signed out.
    let mut others = sessions.clone();
    check_eq!(others.sign_out_others(&ids[2]), 3);
    check_eq!(others.len(), 1);
    check!(others.sign_out(&ids[2]).is_some());
    check!(others.is_empty());
    check!(others.sign_out(&ids[2]).is_none());

    // Expiry: the two signed in at +2 s and +3 s go first; the fifth and the one rotated at
    // +60 s last until fourteen days after that.
    check_eq!(sessions.purge_expired(at(T0 + 4_000 + LIFESPAN - 1)), 2);
    check_eq!(sessions.purge_expired(at(T0 + 60_000 + LIFESPAN - 1)), 1);
    check_eq!(sessions.purge_expired(at(T0 + 60_000 + LIFESPAN)), 1);
    check!(sessions.is_empty());
    Ok(())
}

fn record_round_trips() -> Outcome {
    let r = rotator()?;
    let (session, tokens) = generation_three(&r)?;
    let bytes = session.encode();
    check_eq!(bytes[0], Session::FORMAT);
    check_eq!(&bytes[1..17], session.client_id().as_bytes());
    check_eq!(bytes[33], 1);
    check_eq!(&bytes[34..42], &3u64.to_be_bytes());
    check_eq!(get!(Session::decode(&bytes)), session);
    // Every field lands where the documented layout says, in big-endian order.
    let bytes = record(
        [0x11; 16],
        [0x22; 16],
        7,
        0x0102_0304_0506_0708,
        [0x1111, 0x2222, 0x3333],
        1,
        0x0a0b_0c0d_0e0f_1011,
    );
    let decoded = get!(Session::decode(&bytes));
    check_eq!(decoded.generation(), 0x0102_0304_0506_0708);
    check_eq!(decoded.key_id(), KeyId(7));
    check_eq!(decoded.created_at(), at(0x1111));
    check_eq!(decoded.rotated_at(), at(0x2222));
    check_eq!(decoded.expires_at(), at(0x3333));
    check!(decoded.acknowledged());
    check_eq!(decoded.version(), 0x0a0b_0c0d_0e0f_1011);
    check_eq!(decoded.encode().as_bytes(), &bytes);
    // A stored-and-reloaded session decides exactly as the original.
    let reloaded = get!(Session::decode(&session.encode()));
    let now = at(session.rotated_at().unix_millis() + WINDOW);
    let t3 = get!(tokens.get(3));
    check_eq!(
        r.decide(&reloaded, Request::new(t3, now)),
        r.decide(&session, Request::new(t3, now))
    );
    Ok(())
}

fn record_rejects_bad_bytes() -> Outcome {
    let bytes = record([1; 16], [2; 16], 1, 5, [10, 20, 30], 0, 9);
    check!(Session::decode(&bytes).is_ok());
    for len in 0..Session::ENCODED_LEN {
        check_eq!(
            Session::decode(&bytes[..len]),
            Err(DecodeError::WrongLength {
                expected: Session::ENCODED_LEN,
                found: len
            })
        );
    }
    let mut long = [0u8; Session::ENCODED_LEN + 1];
    long[..Session::ENCODED_LEN].copy_from_slice(&bytes);
    check!(matches!(
        Session::decode(&long),
        Err(DecodeError::WrongLength { .. })
    ));
    let mut format = bytes;
    format[0] = 2;
    check_eq!(Session::decode(&format), Err(DecodeError::UnknownFormat(2)));
    for bad in [
        record([1; 16], [2; 16], 1, 5, [21, 20, 30], 0, 9),
        record([1; 16], [2; 16], 1, 5, [10, 31, 30], 0, 9),
        record([1; 16], [2; 16], 1, 5, [10, 20, 30], 4, 9),
        record([1; 16], [2; 16], 1, 5, [10, 20, 30], 0x80, 9),
        // Generation 0 is the sign-in's: never rotated, never reissued.
        record([1; 16], [2; 16], 1, 0, [10, 20, 30], 0, 9),
        record([1; 16], [2; 16], 1, 0, [10, 10, 30], 2, 9),
    ] {
        check!(matches!(
            Session::decode(&bad),
            Err(DecodeError::InvalidField(_))
        ));
    }
    // A container that claims more sessions than it holds, or holds one id twice.
    let mut two = [0u8; 2 + 2 * Session::ENCODED_LEN];
    two[..2].copy_from_slice(&[1, 2]);
    two[2..77].copy_from_slice(&bytes);
    two[77..].copy_from_slice(&bytes);
    check!(matches!(
        Sessions::<4>::decode(&two),
        Err(DecodeError::InvalidField(_))
    ));
    check!(matches!(
        Sessions::<4>::decode(&two[..76]),
        Err(DecodeError::WrongLength { .. })
    ));
    check!(matches!(
        Sessions::<1>::decode(&two),
        Err(DecodeError::InvalidField(_))
    ));
    check!(matches!(
        Sessions::<4>::decode(&[]),
        Err(DecodeError::WrongLength { .. })
    ));
    Ok(())
}

fn random_records() -> Outcome {
    let r = rotator()?;
    let mut rng = TestRng::new(10);
    let mut decoded = 0u32;
    for round in 0..400u32 {
        let mut bytes = [0u8; Session::ENCODED_LEN];
        rotauth::rand_core::Rng::fill_bytes(&mut rng, &mut bytes);
        bytes[0] = 1;
        if round % 2 == 0 {
            // Order the timestamps and clear the flags so that half get past validation.
            bytes[42..66].fill(0);
            bytes[58] = 0x80;
            bytes[66] = 0;
        }
        if let Ok(session) = Session::decode(&bytes) {
            decoded += 1;
            check_eq!(session.encode().as_bytes(), &bytes);
            // Deciding on an arbitrary record, at arbitrary times, never panics.
            let token = get!(
                r.current_token(&session)
                    .or_else(|| Some(r.sign_in(&mut rng, at(0)).1))
            );
            for now in [0, T0, u64::MAX] {
                let _ = r.decide(&session, Request::new(&token, at(now)));
            }
        }
    }
    check!(decoded >= 150);
    Ok(())
}

fn stack_use() -> Outcome {
    let r = rotator()?;
    let mut rng = TestRng::new(11);
    let ((session, t0), sign_in) = stack::measure(|| r.sign_in(&mut rng, at(T0)));
    let text = t0.to_text();
    let (decision, decide) =
        stack::measure(|| r.decide(&session, Request::new(text.as_str(), at(T0 + WINDOW))));
    check_eq!(decision.kind().as_str(), "rotate");
    cortex_m_semihosting::hprintln!(
        "    stack: sign_in {} bytes, decide (text token, rotate) {} bytes (debug build)",
        sign_in,
        decide
    );
    check!(sign_in > 0 && sign_in <= STACK_BUDGET);
    check!(decide > 0 && decide <= STACK_BUDGET);
    Ok(())
}
