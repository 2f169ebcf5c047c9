//! Zero heap allocations in every decision path, in sign-in, in token and record encoding
//! and in every `Sessions` operation.
//!
//! The crate is `no_std` without `alloc`, so it cannot allocate by construction; this test
//! keeps it so for whatever a dependency might start doing. A counting global allocator
//! (`stats_alloc`: `unsafe_code` is forbidden for every target, so this file cannot
//! implement `GlobalAlloc` itself) counts every allocation, reallocation and deallocation
//! made while each operation runs, including dropping what it returns.
//!
//! The binary has its own `main` (`harness = false`): libtest's threads and output capture
//! would allocate concurrently and be counted. Everything printed is printed outside the
//! counted regions, because the first write to stdout allocates its buffer.
// Not test code for clippy (its own `main`, no `#[test]`): setup failures panic, as in tests.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(not(target_family = "wasm"))]
mod counted {
    use std::alloc::System;
    use std::hint::black_box;
    use std::time::Duration;

    use rand::SeedableRng;
    use rand::rngs::{StdRng, SysRng};
    use rotauth::{
        ClientId, Config, Decision, DecisionKind, KeyId, Keyring, Mode, Presented, RejectReason,
        ReplayPolicy, Request, Rotator, Session, Sessions, Timestamp, Token, TokenError,
    };
    use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

    #[global_allocator]
    static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

    const KEY: [u8; 32] = *b"an example key of thirty-two b!!";
    const KEY2: [u8; 40] = [0x77; 40];
    const T0: u64 = 1_796_083_200_000;
    const W: u64 = 5_000;

    /// Heap operations of any kind made by `f`.
    fn heap_operations<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let region = Region::new(GLOBAL);
        let out = f();
        let stats = region.change();
        (
            out,
            stats.allocations + stats.reallocations + stats.deallocations,
        )
    }

    /// What a test needs to know of a decision, taken before it is dropped (in the region).
    #[derive(Debug, PartialEq, Eq)]
    struct Summary {
        kind: DecisionKind,
        reason: Option<RejectReason>,
        revoke: bool,
        stores: bool,
        sends: bool,
    }

    fn summary(decision: Decision) -> Summary {
        let s = Summary {
            kind: decision.kind(),
            reason: decision.reject_reason(),
            revoke: decision.must_revoke(),
            stores: decision.session_to_store().is_some(),
            sends: decision.token_to_send().is_some(),
        };
        drop(black_box(decision));
        s
    }

    #[derive(Default)]
    struct Report {
        passed: usize,
        failed: Vec<String>,
    }

    impl Report {
        /// Runs `f` counted; passes if it made no heap operation and `ok` holds.
        fn check<R>(&mut self, name: &str, f: impl FnOnce() -> R, ok: impl FnOnce(&R) -> bool) {
            let (out, heap) = heap_operations(f);
            let right = ok(&out);
            if heap == 0 && right {
                self.passed += 1;
            } else {
                self.failed.push(format!(
                    "{name}: {heap} heap operations{}",
                    if right { "" } else { ", and the wrong result" }
                ));
            }
        }

        /// A decision in all three forms of the presented token, each counted.
        fn decision(
            &mut self,
            name: &str,
            rotator: &Rotator,
            session: Option<&Session>,
            token: &Token,
            (now, force): (Timestamp, bool),
            expected: &Summary,
        ) {
            let text = token.to_text();
            let forms: [(&str, Presented<'_>); 3] = [
                ("text", Presented::Text(text.as_str())),
                ("bytes", Presented::Bytes(token.as_bytes().as_slice())),
                ("token", Presented::Token(token)),
            ];
            for (form, presented) in forms {
                self.check(
                    &format!("{name} ({form})"),
                    || {
                        let mut request = Request::new(presented, now);
                        if force {
                            request = request.force_rotation();
                        }
                        summary(rotator.decide(session, request))
                    },
                    |got| got == expected,
                );
            }
        }
    }

    fn rotator(config: Config) -> Rotator {
        Rotator::new(Keyring::new(KeyId(1), &KEY).unwrap(), config)
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    /// Sessions at generations 0..=3 (each rotated `2W` after the last) and `T(0)`..`T(3)`.
    fn chain(rotator: &Rotator) -> (Vec<Session>, Vec<Token>, u64) {
        let mut rng = StdRng::seed_from_u64(3);
        let mut now = T0;
        let (session, token) = rotator.sign_in(&mut rng, at(now));
        let (mut sessions, mut tokens) = (vec![session], vec![token]);
        for _ in 0..3 {
            now += 2 * W;
            let d = rotator.decide(
                sessions.last().unwrap(),
                Request::new(tokens.last().unwrap(), at(now)),
            );
            let Decision::Rotate { session, token } = d else {
                panic!("setup: expected a rotation, got {d:?}");
            };
            sessions.push(session);
            tokens.push(token);
        }
        (sessions, tokens, now)
    }

    fn expect(kind: DecisionKind, stores: bool, sends: bool) -> Summary {
        Summary {
            kind,
            reason: None,
            revoke: false,
            stores,
            sends,
        }
    }

    fn rejected(reason: RejectReason, revoke: bool) -> Summary {
        Summary {
            kind: if revoke {
                DecisionKind::Revoke
            } else {
                DecisionKind::Reject
            },
            reason: Some(reason),
            revoke,
            stores: false,
            sends: false,
        }
    }

    fn decision_paths(report: &mut Report) {
        use DecisionKind::{Accept, BatchReuse, Reissue, Rotate};

        let strict = rotator(Config::default());
        let (s, t, t_r) = chain(&strict);
        let inside = at(t_r + 1_000);
        let after = at(t_r + 2 * W);
        let n = &s[3];

        report.decision(
            "rotate",
            &strict,
            Some(n),
            &t[3],
            (after, false),
            &expect(Rotate, true, true),
        );
        report.decision(
            "rotate (forced)",
            &strict,
            Some(n),
            &t[3],
            (inside, true),
            &expect(Rotate, true, true),
        );
        report.decision(
            "batch_reuse current",
            &strict,
            Some(n),
            &t[3],
            (inside, false),
            &expect(BatchReuse, false, false),
        );
        report.decision(
            "batch_reuse previous",
            &strict,
            Some(n),
            &t[2],
            (inside, false),
            &expect(BatchReuse, false, false),
        );
        report.decision(
            "batch_reuse last",
            &strict,
            Some(n),
            &t[1],
            (inside, false),
            &expect(BatchReuse, false, false),
        );
        // Fast-forward: the host lost the write of generation 3.
        let lost = &s[2];
        let lost_inside = at(lost.rotated_at().unix_millis() + 1_000);
        report.decision(
            "fast-forward batch_reuse",
            &strict,
            Some(lost),
            &t[3],
            (lost_inside, false),
            &expect(BatchReuse, true, false),
        );
        // A fast-forward opens the adopted generation's window at `now`: only a forced
        // request rotates on from it.
        report.decision(
            "fast-forward rotate (forced)",
            &strict,
            Some(lost),
            &t[3],
            (after, true),
            &expect(Rotate, true, true),
        );

        let off = rotator(Config::builder().rotate(false).build().unwrap());
        report.decision(
            "accept",
            &off,
            Some(n),
            &t[3],
            (inside, false),
            &expect(Accept, false, false),
        );
        report.decision(
            "accept (fast-forward)",
            &off,
            Some(lost),
            &t[3],
            (inside, false),
            &expect(Accept, true, false),
        );

        let recover = rotator(Config::builder().mode(Mode::Recover).build().unwrap());
        let (rs, rt, rt_r) = chain(&recover);
        report.decision(
            "reissue",
            &recover,
            Some(&rs[3]),
            &rt[2],
            (at(rt_r + 2 * W), false),
            // The first reissue of a generation records itself.
            &expect(Reissue, true, true),
        );
        report.decision(
            "batch_reuse acknowledging (Recover)",
            &recover,
            Some(&rs[3]),
            &rt[3],
            (at(rt_r + 1), false),
            &expect(BatchReuse, true, false),
        );

        // Every reject reason.
        report.decision(
            "reject unknown session",
            &strict,
            None,
            &t[3],
            (inside, false),
            &rejected(RejectReason::UnknownSession, false),
        );
        let mut forged = *t[3].as_bytes();
        forged[40] ^= 1;
        let forged = Token::from_bytes(&forged).unwrap();
        report.decision(
            "reject forged",
            &strict,
            Some(n),
            &forged,
            (inside, false),
            &rejected(RejectReason::Forged, false),
        );
        let mut unknown_key = *t[3].as_bytes();
        unknown_key[0] = 9;
        let unknown_key = Token::from_bytes(&unknown_key).unwrap();
        report.decision(
            "reject unknown key",
            &strict,
            Some(n),
            &unknown_key,
            (inside, false),
            &rejected(RejectReason::UnknownKey, false),
        );
        report.decision(
            "reject expired",
            &strict,
            Some(n),
            &t[3],
            (n.expires_at(), false),
            &rejected(RejectReason::Expired, false),
        );
        report.decision(
            "reject replayed (1 behind)",
            &strict,
            Some(n),
            &t[2],
            (after, false),
            &rejected(RejectReason::Replayed { behind: 1 }, false),
        );
        report.decision(
            "reject replayed (3 behind)",
            &strict,
            Some(n),
            &t[0],
            (inside, false),
            &rejected(RejectReason::Replayed { behind: 3 }, false),
        );
        report.decision(
            "reject replayed (rotation off)",
            &off,
            Some(n),
            &t[2],
            (inside, false),
            &rejected(RejectReason::Replayed { behind: 1 }, false),
        );
        let revoking = rotator(
            Config::builder()
                .replay_policy(ReplayPolicy::RevokeSession)
                .build()
                .unwrap(),
        );
        report.decision(
            "reject replayed, revoke",
            &revoking,
            Some(n),
            &t[0],
            (inside, false),
            &rejected(RejectReason::Replayed { behind: 3 }, true),
        );

        let day = Duration::from_secs(86_400);
        let capped = rotator(
            Config::builder()
                .lifespan(day)
                .absolute_lifetime(Some(day))
                .build()
                .unwrap(),
        );
        let (cs, ct, _) = chain(&capped);
        report.decision(
            "reject too old (absolute lifetime)",
            &capped,
            Some(&cs[3]),
            &ct[3],
            (at(T0 + 86_400_000), false),
            &rejected(RejectReason::TooOld, false),
        );
        // A session at the last generation cannot rotate again.
        let mut record = *n.encode().as_bytes();
        record[34..42].copy_from_slice(&u64::MAX.to_be_bytes());
        let last = Session::decode(&record).unwrap();
        let last_token = strict.current_token(&last).unwrap();
        report.decision(
            "reject too old (generations used up)",
            &strict,
            Some(&last),
            &last_token,
            (after, false),
            &rejected(RejectReason::TooOld, false),
        );

        // Malformed, as text and as bytes.
        let good = t[3].to_text().as_str().to_owned();
        let short = good[..54].to_owned();
        let long = "A".repeat(4096);
        let bad_char: String = good.chars().take(54).chain(['.']).collect();
        let multibyte: String = good.chars().take(53).chain(['é']).collect();
        let texts: [(&str, &str, TokenError); 4] = [
            ("short", &short, TokenError::WrongLength { len: 54 }),
            ("long", &long, TokenError::WrongLength { len: 4096 }),
            ("bad character", &bad_char, TokenError::BadEncoding),
            ("multi-byte character", &multibyte, TokenError::BadEncoding),
        ];
        for (what, text, error) in texts {
            report.check(
                &format!("reject malformed text ({what})"),
                || summary(strict.decide(n, Request::new(text, inside))),
                |got| *got == rejected(RejectReason::Malformed(error), false),
            );
        }
        let bytes = [0u8; 40];
        report.check(
            "reject malformed bytes",
            || summary(strict.decide(n, Request::new(bytes.as_slice(), inside))),
            |got| {
                *got == rejected(
                    RejectReason::Malformed(TokenError::WrongLength { len: 40 }),
                    false,
                )
            },
        );
    }

    fn operations(report: &mut Report) {
        let strict = rotator(Config::default());
        let mut rng = StdRng::seed_from_u64(5);
        report.check(
            "sign_in (seeded ChaCha12)",
            || strict.sign_in(&mut rng, at(T0)).0.generation(),
            |g| *g == 0,
        );
        let mut os = SysRng;
        report.check(
            "try_sign_in (OS RNG)",
            || strict.try_sign_in(&mut os, at(T0)).is_ok(),
            |ok| *ok,
        );
        let (session, token) = strict.sign_in(&mut rng, at(T0));
        report.check(
            "current_token",
            || strict.current_token(&session),
            |t| t.as_ref() == Some(&token),
        );

        let text = token.to_text().as_str().to_owned();
        report.check(
            "token to_text",
            || token.to_text().as_str() == text,
            |same| *same,
        );
        report.check(
            "token from_text",
            || Token::from_text(&text),
            |t| t.as_ref() == Ok(&token),
        );
        report.check(
            "token from_bytes",
            || Token::from_bytes(token.as_bytes()),
            |t| t.as_ref() == Ok(&token),
        );
        let record = session.encode();
        report.check(
            "record encode",
            || session.encode().as_bytes() == record.as_bytes(),
            |same| *same,
        );
        report.check(
            "record decode",
            || Session::decode(&record),
            |s| s.as_ref() == Ok(&session),
        );
        report.check(
            "record decode (bad)",
            || Session::decode(&record[1..]).is_err(),
            |e| *e,
        );
        let id = session.client_id();
        let id_text = id.to_string();
        report.check(
            "client id parse",
            || id_text.parse::<ClientId>(),
            |p| *p == Ok(id),
        );

        report.check(
            "keyring new, insert, set_primary, remove",
            || {
                let mut keys = Keyring::new(KeyId(1), &KEY).ok()?;
                keys.insert(KeyId(2), &KEY2).ok()?;
                keys.set_primary(KeyId(2)).ok()?;
                keys.remove(KeyId(1)).ok()?;
                Some(keys.ids().count())
            },
            |count| *count == Some(1),
        );
        report.check(
            "config builder",
            || {
                Config::builder()
                    .mode(Mode::Recover)
                    .batch_window(Duration::from_secs(2))
                    .build()
                    .is_ok()
            },
            |ok| *ok,
        );
    }

    fn sessions(report: &mut Report) {
        let rotator = rotator(
            Config::builder()
                .replay_policy(ReplayPolicy::RevokeSession)
                .build()
                .unwrap(),
        );
        let mut rng = StdRng::seed_from_u64(6);
        let mut all = Sessions::<10>::new();
        let mut tokens = Vec::new();
        let mut heap = 0;
        for i in 0..10 {
            let (signed_in, h) = heap_operations(|| all.sign_in(&rotator, &mut rng, at(T0 + i)));
            heap += h;
            tokens.push((signed_in.client_id, signed_in.token));
        }
        report.check(
            "Sessions::sign_in (10, filling)",
            || heap,
            |h| *h == 0 && all.len() == 10,
        );
        report.check(
            "Sessions::sign_in evicting",
            || {
                all.sign_in(&rotator, &mut rng, at(T0 + 100))
                    .evicted
                    .is_some()
            },
            |evicted| *evicted,
        );
        // The first session expired first, so it was evicted.
        let (evicted_id, _) = &tokens[0];
        let (id, token) = &tokens[1];
        report.check(
            "Sessions::find",
            || all.find(id).is_some() && all.find(evicted_id).is_none(),
            |f| *f,
        );
        let after = at(T0 + 2 * W);
        let text = token.to_text();
        report.check(
            "Sessions::decide (rotate, stored in place)",
            || summary(all.decide(&rotator, id, Request::new(text.as_str(), after))),
            |got| *got == expect(DecisionKind::Rotate, true, true),
        );
        report.check(
            "Sessions::decide (replay revokes)",
            || summary(all.decide(&rotator, id, Request::new(text.as_str(), at(T0 + 10 * W)))),
            |got| got.revoke,
        );
        report.check(
            "Sessions::decide (unknown)",
            || summary(all.decide(&rotator, id, Request::new(text.as_str(), after))),
            |got| got.reason == Some(RejectReason::UnknownSession),
        );
        let mut buffer = [0u8; Sessions::<10>::MAX_ENCODED_LEN];
        report.check(
            "Sessions::encode",
            || all.encode(&mut buffer).is_ok(),
            |ok| *ok,
        );
        let len = all.encode(&mut buffer).unwrap();
        report.check(
            "Sessions::encode (too small)",
            || all.encode(&mut buffer[..10]).is_err(),
            |e| *e,
        );
        report.check(
            "Sessions::decode",
            || Sessions::<10>::decode(&buffer[..len]),
            |d| d.as_ref() == Ok(&all),
        );
        let (keep, _) = &tokens[2];
        let (gone, _) = &tokens[3];
        report.check(
            "Sessions::sign_out",
            || all.sign_out(gone).is_some(),
            |s| *s,
        );
        report.check(
            "Sessions::purge_expired",
            || all.purge_expired(at(T0 + 10)),
            |n| *n == 0,
        );
        report.check(
            "Sessions::sign_out_others",
            || all.sign_out_others(keep),
            |n| *n == 7,
        );
        report.check(
            "Sessions::iter and len",
            || all.iter().count() == all.len(),
            |same| *same,
        );
    }

    pub(crate) fn run() -> bool {
        let mut report = Report::default();
        // The counter must see allocations, or every other check would pass vacuously.
        let ((), heap) = heap_operations(|| drop(black_box(vec![1u8; 8])));
        if heap == 0 {
            report
                .failed
                .push("the counting allocator counted nothing".into());
        }
        decision_paths(&mut report);
        operations(&mut report);
        sessions(&mut report);
        for failure in &report.failed {
            println!("FAILED {failure}");
        }
        println!(
            "no_alloc: {} passed, {} failed",
            report.passed,
            report.failed.len()
        );
        report.failed.is_empty()
    }
}

#[cfg(not(target_family = "wasm"))]
fn main() {
    if !counted::run() {
        std::process::exit(1);
    }
}

/// Not built for WASM: `stats_alloc` is a host-only dev-dependency here.
#[cfg(target_family = "wasm")]
fn main() {
    println!("no_alloc: skipped on WASM (the counting allocator is a host-only dev-dependency)");
}
