//! Puts the memory map of the board that the target is emulated as where `cortex-m-rt`'s
//! `link.x` looks for `memory.x`.
//!
//! Also `size/`'s build script (`build = "../embedded-tests/build.rs"` there): a build script
//! runs in its package's directory, so every path here starts with `../embedded-tests/`,
//! which names this directory from either package.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    // thumbv6m is the Cortex-M0 of the micro:bit; every other (thumbv7em) is the
    // Cortex-M4F of the MPS2 AN386 board.
    let board = if target.starts_with("thumbv6m") {
        "microbit"
    } else {
        "mps2-an386"
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let memory =
        fs::read(format!("../embedded-tests/boards/{board}/memory.x")).unwrap_or_else(|e| {
            println!("cargo::error=cannot read ../embedded-tests/boards/{board}/memory.x: {e}");
            Vec::new()
        });
    if let Err(e) = fs::write(out.join("memory.x"), memory) {
        println!("cargo::error=cannot write memory.x: {e}");
    }
    println!("cargo::rustc-link-search={}", out.display());
    // Here rather than in `.cargo/config.toml` rustflags, so that a `RUSTFLAGS` set for an
    // experiment (a sha2 backend, say) does not drop it.
    println!("cargo::rustc-link-arg-bins=-Tlink.x");
    println!("cargo::rustc-cfg=board=\"{board}\"");
    println!("cargo::rustc-check-cfg=cfg(board, values(\"microbit\", \"mps2-an386\"))");
    println!("cargo::rerun-if-changed=../embedded-tests/boards");
    println!("cargo::rerun-if-changed=../embedded-tests/build.rs");
}
