//! A small stack for the module: the deepest call uses a few KiB, and the default 1 MiB
//! would make every instance (one per rotator) reserve 17 pages of linear memory.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-zstack-size=65536");
}
