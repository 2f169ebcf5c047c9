//! A test harness small enough for a microcontroller: a table of functions returning
//! `Result`, run in order, with a line per test.

use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m_semihosting::hprintln;

/// Tests passed and failed so far, for the panic and fault handlers' summary line. Plain
/// loads and stores only: the Cortex-M0 has no compare-and-swap.
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// The counts so far, with the test that is running counted as failed: what a panic or
/// fault handler reports before exiting.
pub fn counts_with_running_failed() -> (usize, usize) {
    (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed).saturating_add(1),
    )
}

/// The board the firmware was linked for (see `build.rs`).
#[cfg(board = "microbit")]
pub const BOARD: &str = "microbit (Cortex-M0, thumbv6m-none-eabi)";
/// The board the firmware was linked for (see `build.rs`).
#[cfg(not(board = "microbit"))]
pub const BOARD: &str = "mps2-an386 (Cortex-M4F, thumbv7em-none-eabihf)";

/// Where and why a check failed.
pub struct Failure {
    pub line: u32,
    pub what: &'static str,
}

/// What a test returns.
pub type Outcome = Result<(), Failure>;

/// A named test.
pub type Test = (&'static str, fn() -> Outcome);

/// Fails the test unless `cond` holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err($crate::harness::Failure {
                line: line!(),
                what: stringify!($cond),
            });
        }
    };
}

/// Fails the test unless both sides are equal, printing both (their `Debug` output never
/// holds a secret: tokens and sessions print their public parts only).
macro_rules! check_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    cortex_m_semihosting::hprintln!("    left:  {:?}", left);
                    cortex_m_semihosting::hprintln!("    right: {:?}", right);
                    return Err($crate::harness::Failure {
                        line: line!(),
                        what: concat!(stringify!($left), " == ", stringify!($right)),
                    });
                }
            }
        }
    };
}

/// Unwraps a `Result` or `Option`, failing the test (not panicking) if there is no value.
macro_rules! get {
    ($value:expr) => {
        match $crate::harness::Value::value($value) {
            Some(v) => v,
            None => {
                return Err($crate::harness::Failure {
                    line: line!(),
                    what: concat!("no value: ", stringify!($value)),
                });
            }
        }
    };
}

pub(crate) use {check, check_eq, get};

/// `Option` and `Result` alike, for [`get!`].
pub trait Value<T> {
    fn value(self) -> Option<T>;
}

impl<T> Value<T> for Option<T> {
    fn value(self) -> Option<T> {
        self
    }
}

impl<T, E> Value<T> for Result<T, E> {
    fn value(self) -> Option<T> {
        self.ok()
    }
}

/// Runs every test and returns how many passed and failed.
pub fn run(tests: &[Test]) -> (usize, usize) {
    let (mut passed, mut failed) = (0usize, 0usize);
    for (name, test) in tests {
        match test() {
            Ok(()) => {
                passed = passed.saturating_add(1);
                hprintln!("test {} ... ok", name);
            }
            Err(Failure { line, what }) => {
                failed = failed.saturating_add(1);
                hprintln!("test {} ... FAILED at line {}: {}", name, line, what);
            }
        }
        PASSED.store(passed, Ordering::Relaxed);
        FAILED.store(failed, Ordering::Relaxed);
    }
    (passed, failed)
}
