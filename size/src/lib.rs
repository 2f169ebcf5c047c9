//! What the baseline and the rotauth firmware share, so that the difference in their
//! sizes is rotauth's: the runtime, the panic handler, semihosting output, the stack
//! painter and the host-supplied RNG.

#![no_std]

use core::convert::Infallible;

use cortex_m_semihosting::{debug, hprintln};
use rotauth::rand_core::{TryCryptoRng, TryRng};

#[path = "../../embedded-tests/src/stack.rs"]
pub mod stack;

/// Prints `name value` lines (the size script reads them), then exits with success.
pub fn report(lines: &[(&str, usize)]) -> ! {
    for (name, value) in lines {
        hprintln!("{} {}", name, value);
    }
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// Exits with failure: something the firmware checks went wrong.
pub fn fail(why: &str) -> ! {
    hprintln!("FAILED: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

fn halt() -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No message: formatting it would pull code into both firmwares that measures nothing.
    fail("panic")
}

/// Stands in for the host's hardware RNG: rotauth's cost is what is measured, not the
/// RNG's, and both firmwares carry this one. Predictable; not for real secrets.
pub struct HostRng(pub u64);

impl TryRng for HostRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.iter_mut().zip(word).for_each(|(d, s)| *d = s);
        }
        Ok(())
    }
}

impl TryCryptoRng for HostRng {}
