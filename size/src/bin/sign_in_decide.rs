//! A host's whole use of rotauth on a device: build the keyring, sign a client in, and
//! decide its requests (token presented as text). Inputs go through `black_box` so that
//! nothing is computed at compile time. It also measures, by painting, the stack that
//! sign-in and the deepest decisions use.

#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use rotauth::{Config, Decision, KeyId, Keyring, Mode, Request, Rotator, Session, Timestamp};
use rotauth_size::rng::TestRng;
use rotauth_size::{fail, report, stack};

/// A key provisioned into flash.
static KEY: [u8; 32] = *b"rotauth size firmware key 32 B!!";

#[entry]
fn main() -> ! {
    let Ok(keyring) = Keyring::new(KeyId(black_box(1)), black_box(&KEY)) else {
        fail("keyring")
    };
    // Recover mode: every branch of the decision, Reissue included, stays in the binary.
    let Ok(config) = Config::builder().mode(black_box(Mode::Recover)).build() else {
        fail("config")
    };
    let rotator = Rotator::new(keyring, config);
    let mut rng = TestRng::new(black_box(1));
    let now = black_box(1_700_000_000_000u64);

    let ((session, token), stack_sign_in) =
        stack::measure(|| rotator.sign_in(&mut rng, Timestamp::from_unix_millis(now)));
    let t0 = token.to_text();
    let presented = black_box(t0.as_str());

    // The deepest paths: a rotation (parse, verify, derive T(n+1)), and a reissue (parse,
    // verify, derive T(n)) from a session one generation on.
    let (rotated, stack_rotate) = stack::measure(|| {
        rotator.decide(
            &session,
            Request::new(presented, Timestamp::from_unix_millis(now + 5_000)),
        )
    });
    let kind = rotated.kind() as u8;
    let Decision::Rotate { session: next, .. } = rotated else {
        fail("expected a rotation")
    };
    let (reissued, stack_reissue) = stack::measure(|| {
        rotator.decide(
            &next,
            Request::new(presented, Timestamp::from_unix_millis(now + 10_000)),
        )
    });
    if !matches!(reissued, Decision::Reissue { .. }) {
        fail("expected a reissue")
    }
    let sizes = [
        core::mem::size_of::<Rotator>(),
        core::mem::size_of::<Session>(),
        core::mem::size_of::<Decision>(),
    ];
    report(&[
        ("kind", usize::from(black_box(kind))),
        ("stack_sign_in", stack_sign_in),
        ("stack_decide", stack_rotate.max(stack_reissue)),
        ("stack_decide_rotate", stack_rotate),
        ("stack_decide_reissue", stack_reissue),
        ("size_of_rotator", sizes[0]),
        ("size_of_session", sizes[1]),
        ("size_of_decision", sizes[2]),
    ])
}
