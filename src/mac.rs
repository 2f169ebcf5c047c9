//! HMAC-SHA256 of one-block messages, straight from precomputed pad states.
//!
//! HMAC(K, m) = H((K ⊕ opad) ‖ H((K ⊕ ipad) ‖ m)). The two 64-byte pad blocks depend on the
//! key alone, so their compressions are done once per key ([`MacKey::new`]). A message of at
//! most 55 bytes then fits one padded block, and the MAC is exactly two SHA-256
//! compressions: one for the inner hash, one for the outer. Going through `hmac`/`digest`
//! for the same result adds buffering, cloning and finalising (`cargo bench --bench
//! decision`: the `hmac` crate from a cloned schedule takes longer than a whole derived
//! token here), which matters when the decision is measured against two compressions.
//!
//! Tests check every result against the `hmac` crate.

use sha2::block_api::compress256;
use zeroize::Zeroize;

/// SHA-256 block size.
const BLOCK: usize = 64;
/// SHA-256 initial state (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
/// The longest message that still leaves room for the `0x80` byte and the 8-byte length.
pub(crate) const MAX_MESSAGE: usize = BLOCK - 9;

/// The bit length of key block plus inner digest, big-endian: the outer block's last 8 bytes.
const DIGEST_BLOCK_BITS: [u8; 8] = ((BLOCK as u64 + 32) * 8).to_be_bytes();

/// A 256-bit MAC as SHA-256 state words (big-endian order when written out).
pub(crate) type Tag = [u32; 8];

/// One key's HMAC-SHA256 schedule: the states after compressing `K ⊕ ipad` and `K ⊕ opad`.
///
/// These states are as secret as the key itself: they are wiped on drop and never printed.
pub(crate) struct MacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl MacKey {
    /// Precomputes the schedule of `key`. Keys longer than a block are hashed first, as
    /// RFC 2104 says.
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut block = [0u8; BLOCK];
        if let Some(dst) = block.get_mut(..key.len()) {
            dst.copy_from_slice(key);
        } else {
            let mut digest = sha256(key);
            block
                .chunks_exact_mut(4)
                .zip(digest)
                .for_each(|(chunk, word)| chunk.copy_from_slice(&word.to_be_bytes()));
            digest.zeroize();
        }
        let mut pad = block.map(|b| b ^ 0x36);
        let mut inner = IV;
        compress256(&mut inner, core::slice::from_ref(&pad));
        pad = block.map(|b| b ^ 0x5c);
        let mut outer = IV;
        compress256(&mut outer, core::slice::from_ref(&pad));
        pad.zeroize();
        block.zeroize();
        Self { inner, outer }
    }

    /// HMAC-SHA256 of `message`: two compressions. `L` is checked at compile time. The
    /// tests' general form of [`mac_block`](Self::mac_block), checked against `hmac`.
    #[cfg(test)]
    pub(crate) fn mac<const L: usize>(&self, message: &[u8; L]) -> Tag {
        let mut block = const { padding(L) };
        block.iter_mut().zip(message).for_each(|(b, m)| *b = *m);
        let tag = self.mac_block(&block);
        block.zeroize();
        tag
    }

    /// HMAC-SHA256 of a message already laid out in one padded block (message, `0x80`,
    /// zeros, bit length of key block plus message): the hot path. Callers build the block
    /// in place, so no byte of the message is copied twice; the outer block is written
    /// straight from the inner state words.
    ///
    /// Inlined into its callers on 64-bit CPUs, where the call costs more than its share of
    /// a decision; a 32-bit core keeps one copy, for flash.
    #[cfg_attr(target_pointer_width = "64", inline)]
    pub(crate) fn mac_block(&self, block: &[u8; BLOCK]) -> Tag {
        // The outer block's padding (the `0x80` marker and the length) is written before
        // the inner compression, the digest after it. The outer compression reads the block
        // 16 bytes at a time; a read that spans several recent narrower stores waits until
        // they have left the CPU's store buffer, which these have by then. Written into a
        // zeroed block: on Cortex-M these stores take less flash than copying a constant.
        let mut outer_block = [0u8; BLOCK];
        let (digest, padding) = outer_block.split_at_mut(32);
        let (marker, length) = padding.split_at_mut(BLOCK - 32 - 8);
        if let Some(marker) = marker.first_mut() {
            *marker = 0x80;
        }
        length.copy_from_slice(&DIGEST_BLOCK_BITS);
        let mut inner = self.inner;
        compress256(&mut inner, core::slice::from_ref(block));
        digest
            .chunks_exact_mut(4)
            .zip(inner)
            .for_each(|(chunk, word)| chunk.copy_from_slice(&word.to_be_bytes()));
        let mut outer = self.outer;
        compress256(&mut outer, core::slice::from_ref(&outer_block));
        // The inner digest, with the outer state, gives the MAC: it is wiped like the MAC.
        inner.as_mut_slice().zeroize();
        outer_block.as_mut_slice().zeroize();
        outer
    }
}

/// SHA-256 of a message of any length, for keys longer than a block. Written on
/// `compress256` rather than `sha2::Sha256`, whose buffered hasher would add about a
/// kilobyte of flash on Cortex-M for this one cold path. The message is a key: every
/// buffer that held part of it is wiped.
fn sha256(message: &[u8]) -> Tag {
    let mut state = IV;
    let mut block = [0u8; BLOCK];
    let mut blocks = message.chunks_exact(BLOCK);
    for chunk in &mut blocks {
        block.copy_from_slice(chunk);
        compress256(&mut state, core::slice::from_ref(&block));
    }
    // The tail, 0x80, zeros, and the bit length: one block if the tail leaves 9 bytes
    // free, else two.
    let tail = blocks.remainder();
    let mut last = [[0u8; BLOCK]; 2];
    let flat = last.as_flattened_mut();
    flat.iter_mut().zip(tail).for_each(|(d, s)| *d = *s);
    if let Some(marker) = flat.get_mut(tail.len()) {
        *marker = 0x80;
    }
    let bits = (message.len() as u64).wrapping_mul(8).to_be_bytes();
    let [first, second] = &mut last;
    let padded: &[[u8; BLOCK]] = if tail.len() < BLOCK - 8 {
        *first.last_chunk_mut::<8>().unwrap_or(&mut [0; 8]) = bits;
        core::slice::from_ref(first)
    } else {
        *second.last_chunk_mut::<8>().unwrap_or(&mut [0; 8]) = bits;
        &last
    };
    compress256(&mut state, padded);
    block.zeroize();
    last.as_flattened_mut().zeroize();
    state
}

/// The SHA-256 padding of a `len`-byte message that follows one key block: zeros where the
/// message goes, `0x80` after it, zeros, and the bit length of key block plus message in
/// the last 8 bytes. Only ever evaluated at compile time (`const { padding(L) }`), where an
/// out-of-range `len` or index is a compile error, never a panic.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
#[cfg(test)]
pub(crate) const fn padding(len: usize) -> [u8; BLOCK] {
    assert!(len <= MAX_MESSAGE, "message must fit one SHA-256 block");
    let mut block = [0u8; BLOCK];
    block[len] = 0x80;
    let bits = ((BLOCK + len) as u64 * 8).to_be_bytes();
    let mut i = 0;
    while i < bits.len() {
        block[BLOCK - bits.len() + i] = bits[i];
        i += 1;
    }
    block
}

/// Writes state words as big-endian bytes, as SHA-256 outputs them.
#[cfg(test)]
pub(crate) fn write_words(out: &mut [u8; 32], words: &Tag) {
    out.chunks_exact_mut(4)
        .zip(words)
        .for_each(|(chunk, word)| chunk.copy_from_slice(&word.to_be_bytes()));
}

impl Drop for MacKey {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    fn reference(key: &[u8], message: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    fn ours<const L: usize>(key: &[u8], message: &[u8; L]) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_words(&mut out, &MacKey::new(key).mac(message));
        out
    }

    #[test]
    fn matches_hmac_crate_for_every_message_length_and_key_shape() {
        let long_key = [0xa5u8; 131];
        for key_len in [1usize, 32, 63, 64, 65, 131] {
            let key = &long_key[..key_len];
            let message = [0x5au8; MAX_MESSAGE];
            assert_eq!(ours(key, &[0u8; 0]), reference(key, &[]));
            assert_eq!(ours(key, &[7u8; 1]), reference(key, &[7]));
            assert_eq!(ours(key, &message), reference(key, &message));
            let m50: [u8; 50] = core::array::from_fn(|i| i as u8);
            assert_eq!(ours(key, &m50), reference(key, &m50));
        }
    }

    #[test]
    fn long_key_hash_matches_sha2_at_every_padding_boundary() {
        let message: [u8; 200] = core::array::from_fn(|i| (i * 31) as u8);
        for len in 0..message.len() {
            let mut ours = [0u8; 32];
            write_words(&mut ours, &sha256(&message[..len]));
            assert_eq!(
                ours[..],
                Sha256::digest(&message[..len])[..],
                "length {len}"
            );
        }
    }

    #[test]
    fn rfc4231_case_2() {
        // Key "Jefe", data "what do ya want for nothing?".
        let tag = ours(b"Jefe", b"what do ya want for nothing?");
        let expected = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ];
        assert_eq!(tag, expected);
    }
}
