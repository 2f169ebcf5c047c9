//! What the baseline and the rotauth firmware share, so that the difference in their
//! sizes is rotauth's: the runtime, the panic handler, semihosting output, the stack
//! painter and the host-supplied RNG.

#![no_std]

use cortex_m_semihosting::{debug, hprintln};

/// `TestRng` stands in for the host's hardware RNG: rotauth's cost is what is measured, not
/// the RNG's, and both firmwares carry this one. Predictable; not for real secrets.
#[path = "../../embedded-tests/src/rng.rs"]
pub mod rng;
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
