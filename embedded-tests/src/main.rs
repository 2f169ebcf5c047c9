//! rotauth's decision logic on an emulated Cortex-M: the known-answer token vectors, the
//! decision table, a `Sessions<4>` story and the record encodings, with no `std`
//! and no `alloc`.
//!
//! Run with `cargo run --target thumbv7em-none-eabihf` (QEMU `mps2-an386`, Cortex-M4F) or
//! `cargo run --target thumbv6m-none-eabi` (QEMU `microbit`, Cortex-M0). It prints one line
//! per test and `N passed, N failed`, and exits through semihosting with a failure status
//! on any failed check, panic or HardFault, so the cargo runner's exit code is the verdict.

#![no_std]
#![no_main]

mod harness;
mod rng;
mod stack;
mod tests;
mod vectors;

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};

#[entry]
fn main() -> ! {
    hprintln!("rotauth embedded tests on {}", harness::BOARD);
    let (passed, failed) = harness::run(tests::selected());
    hprintln!("{} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Semihosting exit does not return under QEMU; spin if a debugger ignores it.
    loop {
        cortex_m::asm::bkpt();
    }
}

/// A panic is a failed test run: report where, and exit with failure.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("PANIC: {}", info);
    exit_failure()
}

/// A HardFault (bad memory access, undefined instruction, stack overflow into the
/// peripherals) must fail the run, not hang it.
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!(
        "HARDFAULT at pc={:#010x} lr={:#010x}",
        frame.pc(),
        frame.lr()
    );
    exit_failure()
}

/// Any other unhandled exception or interrupt is a failure too.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    hprintln!("UNEXPECTED EXCEPTION {}", irqn);
    exit_failure()
}

fn exit_failure() -> ! {
    let (passed, failed) = harness::counts_with_running_failed();
    hprintln!("{} passed, {} failed", passed, failed);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
