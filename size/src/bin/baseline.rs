//! The baseline: the same runtime, output, stack painter and RNG as `sign_in_decide`, with
//! no rotauth code. `sign_in_decide` minus this is what rotauth costs.

#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use rotauth::rand_core::TryRng;
use rotauth_size::rng::TestRng;
use rotauth_size::{report, stack};

#[entry]
fn main() -> ! {
    let mut rng = TestRng::new(black_box(1));
    // Drawn as sign-in draws them (a 16-byte client id, then a 16-byte seed, through
    // `TryRng`), so the RNG's code counts in the baseline: it is the host's, not rotauth's.
    let (bytes, used) = stack::measure(|| {
        let mut bytes = [0u8; 32];
        let (client_id, seed) = bytes.split_at_mut(16);
        let drawn = rng.try_fill_bytes(client_id).and_then(|()| rng.try_fill_bytes(seed));
        if drawn.is_err() {
            rotauth_size::fail("rng");
        }
        bytes
    });
    // Three measurements, as `sign_in_decide` makes, so the painter costs the same in both.
    let (a, rotate) = stack::measure(|| black_box(bytes[1]));
    let (b, reissue) = stack::measure(|| black_box(bytes[2]) as u16);
    report(&[
        ("kind", usize::from(black_box(bytes[0]))),
        ("stack_sign_in", used),
        ("stack_decide", black_box(usize::from(a) + usize::from(b))),
        ("stack_decide_rotate", rotate),
        ("stack_decide_reissue", reissue),
    ])
}
