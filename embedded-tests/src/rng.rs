//! RNGs without an OS: a microcontroller has none, and tests want repeatable client ids and
//! seeds. [`TestRng`] is predictable and never fit for real secrets; [`FixedBytes`] is as
//! secret as the bytes it is given.
//!
//! One file for three crates in their own workspaces: `embedded-tests` (both), `size` (the
//! stand-in for a hardware RNG that both firmwares carry) and `wasm` (the host's entropy)
//! include it with `#[path]`.

use core::convert::Infallible;

use rotauth::rand_core::{TryCryptoRng, TryRng};

/// SplitMix64: a counter through a mixing function. Marked `CryptoRng` only because
/// `sign_in` asks for one; it is predictable and for tests only.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
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

impl TryCryptoRng for TestRng {}

/// Hands out fixed bytes in order, then fails: signs in with a chosen client id and seed
/// (`sign_in` draws the client id first, then the seed), or with the host's CSPRNG output
/// in the wasm module.
pub struct FixedBytes<'a>(&'a [u8]);

impl<'a> FixedBytes<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
}

/// [`FixedBytes`] ran out.
#[derive(Debug)]
pub struct Exhausted;

impl core::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("fixed bytes exhausted")
    }
}

impl core::error::Error for Exhausted {}

impl TryRng for FixedBytes<'_> {
    type Error = Exhausted;

    fn try_next_u32(&mut self) -> Result<u32, Exhausted> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Exhausted> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Exhausted> {
        if dst.len() > self.0.len() {
            return Err(Exhausted);
        }
        let (head, tail) = self.0.split_at(dst.len());
        dst.copy_from_slice(head);
        self.0 = tail;
        Ok(())
    }
}

impl TryCryptoRng for FixedBytes<'_> {}
