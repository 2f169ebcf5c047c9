//! Two hosts race to rotate one session through a compare-and-swap store.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not cover.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Host, W, rotated};
use rotauth::{Decision, Session};

/// A one-row store with `UPDATE … WHERE version = ?` semantics.
struct CasStore {
    bytes: [u8; Session::ENCODED_LEN],
}

impl CasStore {
    fn read(&self) -> Session {
        Session::decode(&self.bytes).unwrap()
    }

    /// Stores `next` if the stored version is still `expected`.
    fn compare_and_swap(&mut self, expected: u64, next: &Session) -> bool {
        if self.read().version() != expected {
            return false;
        }
        self.bytes = *next.encode().as_bytes();
        true
    }
}

#[test]
fn the_loser_of_a_rotation_race_retries_into_the_batch() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    let mut store = CasStore {
        bytes: *session.encode().as_bytes(),
    };
    host.advance(W);

    // Both hosts read the same record and both decide Rotate.
    let read_a = store.read();
    let read_b = store.read();
    let (next_a, token_a) = rotated(host.present(&read_a, &token));
    host.advance(3);
    let (next_b, token_b) = rotated(host.present(&read_b, &token));
    // Rotation is a function of the session: both would send the same T(n+1).
    assert_eq!(token_a, token_b);
    assert_eq!(next_a.generation(), next_b.generation());

    assert!(store.compare_and_swap(read_a.version(), &next_a));
    assert!(
        !store.compare_and_swap(read_b.version(), &next_b),
        "the loser must lose"
    );

    // The loser re-reads and decides again: now it is a batch member and sends no token.
    let reread = store.read();
    assert_eq!(reread, next_a);
    assert_eq!(
        host.present(&reread, &token),
        Decision::BatchReuse { updated: None }
    );
    // The winner's token is the one that works next.
    host.advance(W);
    assert!(matches!(
        host.present(&store.read(), &token_a),
        Decision::Rotate { .. }
    ));
}

#[test]
fn without_cas_last_write_wins_and_the_chain_never_forks() {
    let mut host = Host::default_config();
    let (session, token) = host.sign_in();
    host.advance(W);
    // Both racers rotate; the later write (B, one millisecond on) overwrites the earlier.
    let (_, token_a) = rotated(host.present(&session, &token));
    host.advance(1);
    let (stored, token_b) = rotated(host.present(&session, &token));
    assert_eq!(token_a, token_b);
    // Whichever response the client received, its token is the stored current one.
    assert_eq!(
        host.present(&stored, &token_a),
        Decision::BatchReuse { updated: None }
    );

    // Had both writes been lost (a replica behind, a restored backup), the record regresses
    // to generation 0: the client's T(1) fast-forwards it rather than logging it out.
    let regressed = session;
    let decision = host.present(&regressed, &token_b);
    assert_eq!(decision.kind(), rotauth::DecisionKind::BatchReuse);
    assert_eq!(decision.session_to_store().unwrap().generation(), 1);
}
