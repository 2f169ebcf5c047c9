//! Stack use measured by painting: fill the unused stack with a pattern, run the code,
//! and find the deepest word that no longer holds the pattern.

use core::ptr;

const PAINT: u32 = 0xdead_beef;
/// Paint at most this far below the caller's stack pointer (the AN386 has 4 MiB of RAM;
/// painting it all would only cost time).
const MAX_DEPTH: usize = 32 * 1024;
/// Leave the words just below the stack pointer alone: this function's own calls use them.
const MARGIN: usize = 64;

unsafe extern "C" {
    /// The end of `.bss`/`.uninit` (from `cortex-m-rt`'s `link.x`): the stack may grow down
    /// to here.
    static __sheap: u32;
}

/// Runs `f` and returns its result with the peak number of stack bytes it used, counted
/// from this function's stack pointer. No interrupts run in the test firmware, so only `f`
/// touches the painted region.
#[inline(never)]
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let sp = cortex_m::register::msp::read() as usize;
    let heap = (&raw const __sheap) as usize;
    let top = sp.saturating_sub(MARGIN) & !3;
    let bottom = heap.max(top.saturating_sub(MAX_DEPTH));
    let mut addr = bottom;
    while addr < top {
        // SAFETY: `[bottom, top)` lies between the end of the statics and below the live
        // stack, a region nothing else uses, and is word-aligned.
        unsafe { ptr::write_volatile(addr as *mut u32, PAINT) };
        addr = addr.saturating_add(4);
    }
    let result = core::hint::black_box(call(f));
    let mut deepest = top;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: as above; reading back what was painted or what `f` wrote.
        if unsafe { ptr::read_volatile(addr as *const u32) } != PAINT {
            deepest = addr;
            break;
        }
        addr = addr.saturating_add(4);
    }
    (result, sp.saturating_sub(deepest))
}

/// Calls `f` in a frame of its own below the painted line, so that `f`'s locals are
/// counted even when the compiler inlines `f` here.
#[inline(never)]
fn call<T>(f: impl FnOnce() -> T) -> T {
    f()
}
