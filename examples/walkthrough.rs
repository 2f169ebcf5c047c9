//! The devise_token_auth design-notes story, narrated: sign-in, a batch of parallel requests,
//! rotation, an invalidated token refused, and a lost response recovered in Recover mode.
//!
//! `cargo run --example walkthrough`. Tokens are shown as their generation and six characters
//! of their MAC, never whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rotauth::{
    Config, Decision, KeyId, Keyring, Mode, Request, Rotator, Session, Timestamp, Token,
};

/// A host with one stored session and a virtual clock, narrating each request.
struct Host {
    rotator: Rotator,
    stored: Session,
    start: Timestamp,
    now: Timestamp,
}

impl Host {
    fn sign_in(config: Config, rng_seed: u64) -> (Self, Token) {
        let keyring = Keyring::new(KeyId(1), b"walkthrough key, 32 bytes or more").expect("key");
        let rotator = Rotator::new(keyring, config);
        // A fixed seed keeps the narration the same on every run; a real host passes an OS
        // or thread RNG here.
        let start = Timestamp::from_unix_millis(1_796_083_200_000);
        let (stored, token) = rotator.sign_in(&mut StdRng::seed_from_u64(rng_seed), start);
        println!(
            "t=+ 0.000s  sign in                                            → client {} gets {}",
            stored.client_id(),
            prefix(&token)
        );
        let host = Self {
            rotator,
            stored,
            start,
            now: start,
        };
        (host, token)
    }

    fn wait(&mut self, millis: u64) {
        self.now = self.now.saturating_add(Duration::from_millis(millis));
    }

    /// One request: decide, store what the decision says, and show what the client gets.
    fn request(&mut self, label: &str, token: &Token) -> Option<Token> {
        let text = token.to_text();
        let mut request = Request::new(text.as_str(), self.now);
        if label.contains("unbatch=true") {
            request = request.force_rotation();
        }
        let decision = self.rotator.decide(&self.stored, request);
        if let Some(next) = decision.session_to_store() {
            self.stored = next.clone();
        }
        let elapsed = self.now.millis_since(self.start);
        let outcome = match &decision {
            Decision::Rotate { token, .. } => format!("200, new token {}", prefix(token)),
            Decision::Reissue { token, .. } => format!("200, token {} again", prefix(token)),
            Decision::BatchReuse { .. } => "200, access-token: \" \" (batch)".to_owned(),
            Decision::Accept { .. } => format!("200, same token {}", prefix(token)),
            Decision::Reject { reason } => format!("401 ({reason})"),
            Decision::Revoke { reason } => format!("401 ({reason}), session deleted"),
        };
        let seconds = format!("{}.{:03}", elapsed / 1000, elapsed % 1000);
        println!(
            "t=+{seconds:>6}s  {label:<28} {}  {:<11} → {outcome}",
            prefix(token),
            decision.kind().as_str(),
        );
        decision.token_to_send().cloned()
    }
}

/// `T(n)` and a few characters of its MAC: enough to tell tokens apart in the narration.
/// (The first 12 characters hold the public key id and generation.)
fn prefix(token: &Token) -> String {
    format!(
        "T({}) {}…",
        token.generation(),
        &token.to_text().as_str()[12..18]
    )
}

fn main() {
    println!("== Strict mode (the default): batch window 5 s, rotation on every request\n");
    let (mut host, t0) = Host::sign_in(Config::default(), 1);

    host.wait(1_200);
    host.request("GET /profile", &t0);

    host.wait(5_000);
    println!("\n   the page fires three requests at once with the same token:");
    let t1 = host.request("GET /a", &t0).expect("the first rotates");
    host.wait(30);
    host.request("GET /b", &t0);
    host.wait(25);
    host.request("GET /c", &t0);
    println!("   only the first response carried a token; the client keeps it.\n");

    host.wait(6_000);
    let t2 = host.request("GET /inbox", &t1).expect("rotates");
    host.wait(1_000);
    host.request("GET /inbox?unbatch=true", &t2);

    host.wait(10_000);
    println!("\n   an invalidated token, long after its batch:");
    host.request("GET /account (old token)", &t0);
    host.request("GET /account (T(1))", &t1);

    println!("\n== Recover mode: a response is lost\n");
    let config = Config::builder()
        .mode(Mode::Recover)
        .build()
        .expect("valid");
    let (mut host, t0) = Host::sign_in(config, 2);
    host.wait(6_000);
    let lost = host.request("GET /save (response lost)", &t0);
    println!(
        "   the client never received {}",
        prefix(lost.as_ref().expect("rotated"))
    );
    host.wait(30_000);
    let recovered = host
        .request("GET /reload (old token)", &t0)
        .expect("reissued");
    host.wait(10_000);
    host.request("GET /next", &recovered);
    host.wait(10_000);
    println!("\n   once the new token has been used, the old one is a replay:");
    host.request("GET /reload (old token)", &t0);
}
