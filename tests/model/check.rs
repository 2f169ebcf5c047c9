//! Drives `rotauth` and the model side by side, one operation at a time, and asserts after
//! every request that both decided the same: kind, reject reason, revocation, and the record
//! the host stores afterwards. Shared by `tests/properties.rs` and the fuzz target `ops`, so
//! an assertion here is checked by proptest and by libFuzzer alike.
// Helpers outside `#[test]` fns, which clippy.toml's `*-in-tests` settings do not reach,
// and test arithmetic on known small values, which no clippy.toml setting covers.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use core::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rotauth::{
    ClientId, Config, Decision, DecisionKind, KeyId, Keyring, Mode, RejectReason, ReplayPolicy,
    Request, Rotator, Session, Sessions, Timestamp, Token,
};

use super::{Outcome, Policy, Reason, Record, Shown, decide};

/// The host's only key; tokens under any other id are `UnknownKey`.
pub const KEY: [u8; 32] = *b"model check key, thirty-two byte";
pub const PRIMARY: KeyId = KeyId(1);
/// 2026-11-29T00:00:00Z: a realistic start, far from both ends of `u64`.
pub const START: u64 = 1_796_083_200_000;
/// Where the fields sit in `Session::encode` (after format, client id, seed, key id).
const GENERATION_BYTES: core::ops::Range<usize> = 34..42;
const CREATED_BYTES: core::ops::Range<usize> = 42..50;
const ROTATED_BYTES: core::ops::Range<usize> = 50..58;
const FLAGS_BYTE: usize = 66;

/// A policy made valid the way `ConfigBuilder::build` demands (for arbitrary fuzz input).
pub fn valid(mut policy: Policy) -> Policy {
    policy.lifespan = policy.lifespan.max(1);
    policy.window = policy.window.min(policy.lifespan);
    policy.absolute = policy.absolute.map(|a| a.max(1).max(policy.window));
    policy
}

pub fn config(policy: &Policy) -> Config {
    Config::builder()
        .rotate(policy.rotate)
        .batch_window(Duration::from_millis(policy.window))
        .lifespan(Duration::from_millis(policy.lifespan))
        .absolute_lifetime(policy.absolute.map(Duration::from_millis))
        .mode(if policy.recover {
            Mode::Recover
        } else {
            Mode::Strict
        })
        .replay_policy(if policy.revoke {
            ReplayPolicy::RevokeSession
        } else {
            ReplayPolicy::Reject
        })
        .build()
        .expect("policy is valid")
}

pub fn rotator(policy: &Policy) -> Rotator {
    Rotator::new(
        Keyring::new(PRIMARY, &KEY).expect("key is long enough"),
        config(policy),
    )
}

pub fn record_of(session: &Session) -> Record {
    Record {
        generation: session.generation(),
        created_at: session.created_at().unix_millis(),
        rotated_at: session.rotated_at().unix_millis(),
        expires_at: session.expires_at().unix_millis(),
        acknowledged: session.acknowledged(),
        reissued: session.reissued(),
    }
}

/// `T(generation)` of `session`, as the host derives it: the same record at another
/// generation, through the public API only. Generation 0 is the sign-in's, so its window
/// is moved back to `created_at` and the flags cleared, as `Session::decode` requires.
pub fn token_at(rotator: &Rotator, session: &Session, generation: u64) -> Token {
    let mut bytes = *session.encode().as_bytes();
    bytes[GENERATION_BYTES].copy_from_slice(&generation.to_be_bytes());
    if generation == 0 {
        let created: [u8; 8] = bytes[CREATED_BYTES].try_into().expect("8 bytes");
        bytes[ROTATED_BYTES].copy_from_slice(&created);
        bytes[FLAGS_BYTE] = 0;
    }
    let moved = Session::decode(&bytes).expect("a record the decisions can reach");
    rotator
        .current_token(&moved)
        .expect("the session's key is in the keyring")
}

/// A clock change between requests.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    Forward(u64),
    Back(u64),
    To(u64),
}

/// Which token a request presents.
#[derive(Clone, Copy, Debug)]
pub enum Pick {
    Current,
    Previous,
    Last,
    /// `T(n-3-k)`, or `T(0)` if there is none.
    Older(u64),
    /// `T(n+1+k)` (at most `T(u64::MAX)`): derived by the host, whose write was lost.
    Newer(u64),
    /// The newest token the client received.
    Received,
    /// `T(g)`, whatever `n` is.
    Generation(u64),
    /// `T(n)` with one bit of its generation or MAC flipped.
    Flipped(u16),
    /// A token of another session under the same key.
    Foreign,
    Malformed(Junk),
    /// `T(n)` naming a key id the keyring does not hold.
    UnknownKey,
}

/// Ways to make token text or bytes malformed.
#[derive(Clone, Copy, Debug)]
pub enum Junk {
    Truncated(u8),
    Extended(u8),
    BadChar {
        at: u8,
        with: u8,
    },
    /// Non-zero trailing bits in the last character.
    NonCanonical,
    /// A multi-byte character that keeps the byte length right.
    MultiByte,
    /// Byte form of a wrong length.
    Bytes(u8),
}

/// How the token travels.
#[derive(Clone, Copy, Debug)]
pub enum Form {
    Text,
    Bytes,
    Parsed,
}

/// What happens around a request besides the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The host stores the result and the client gets the response.
    Delivered,
    /// The host's write is lost, but the response goes out.
    WriteLost,
    /// The host stores the result, but the client never gets the response.
    ResponseLost,
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    SignIn,
    SignOut,
    Clock(Clock),
    Present {
        pick: Pick,
        form: Form,
        force: bool,
        fate: Fate,
    },
    Reconfigure(Policy),
}

/// One request, as both sides saw it.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub now: u64,
    pub force: bool,
    pub fate: Fate,
    pub shown: Shown,
    pub before: Option<Record>,
    pub outcome: Outcome,
    pub after: Option<Record>,
}

enum Wire {
    Text(String),
    Bytes(Vec<u8>),
    Parsed(Token),
}

impl Wire {
    fn of(token: &Token, form: Form) -> Self {
        match form {
            Form::Text => Self::Text(token.to_text().as_str().to_owned()),
            Form::Bytes => Self::Bytes(token.as_bytes().to_vec()),
            Form::Parsed => Self::Parsed(token.clone()),
        }
    }

    fn request(&self, now: u64, force: bool) -> Request<'_> {
        let now = Timestamp::from_unix_millis(now);
        let request = match self {
            Self::Text(text) => Request::new(text.as_str(), now),
            Self::Bytes(bytes) => Request::new(bytes.as_slice(), now),
            Self::Parsed(token) => Request::new(token, now),
        };
        if force {
            request.force_rotation()
        } else {
            request
        }
    }
}

fn junk(token: &Token, junk: Junk) -> Wire {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const NOT_BASE64URL: &[u8] = b"+/=. \0!~\n";
    let text = token.to_text().as_str().to_owned();
    match junk {
        Junk::Truncated(k) => Wire::Text(text[..usize::from(k) % text.len()].to_owned()),
        Junk::Extended(k) => Wire::Text(text + &"A".repeat(1 + usize::from(k) % 8)),
        Junk::BadChar { at, with } => {
            let mut bytes = text.into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] = NOT_BASE64URL[usize::from(with) % NOT_BASE64URL.len()];
            Wire::Text(String::from_utf8(bytes).expect("ASCII"))
        }
        Junk::NonCanonical => {
            let last = text.chars().last().expect("not empty");
            let index = ALPHABET.find(last).expect("base64url");
            let bad = ALPHABET.as_bytes()[index ^ 1] as char;
            Wire::Text(text[..text.len() - 1].to_owned() + &bad.to_string())
        }
        Junk::MultiByte => Wire::Text(text[..text.len() - 2].to_owned() + "é"),
        Junk::Bytes(len) => {
            let len = if usize::from(len) == rotauth::TOKEN_LEN {
                0
            } else {
                usize::from(len)
            };
            Wire::Bytes(token.as_bytes().iter().copied().cycle().take(len).collect())
        }
    }
}

fn outcome_of(decision: &Decision) -> Outcome {
    match decision {
        Decision::Accept { .. } => Outcome::Accept,
        Decision::Rotate { .. } => Outcome::Rotate,
        Decision::BatchReuse { .. } => Outcome::BatchReuse,
        Decision::Reissue { .. } => Outcome::Reissue,
        Decision::Reject { reason } => Outcome::Reject(reason_of(*reason)),
        Decision::Revoke { reason } => Outcome::Revoke(reason_of(*reason)),
    }
}

fn reason_of(reason: RejectReason) -> Reason {
    match reason {
        RejectReason::UnknownSession => Reason::UnknownSession,
        RejectReason::Malformed(_) => Reason::Malformed,
        RejectReason::UnknownKey => Reason::UnknownKey,
        RejectReason::Forged => Reason::Forged,
        RejectReason::Expired => Reason::Expired,
        RejectReason::TooOld => Reason::TooOld,
        RejectReason::Replayed { behind } => Reason::Replayed(behind),
        other => panic!("a reject reason the model does not know: {other:?}"),
    }
}

/// Counts of what the checks saw, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub requests: u64,
    /// Accept, Rotate, BatchReuse, Reissue, Reject, Revoke.
    pub kinds: [u64; 6],
    /// UnknownSession, Malformed, UnknownKey, Forged, Expired, TooOld, Replayed.
    pub reasons: [u64; 7],
}

impl Counts {
    fn add(&mut self, kind: DecisionKind, outcome: Outcome) {
        if let Outcome::Reject(reason) | Outcome::Revoke(reason) = outcome {
            let index = match reason {
                Reason::UnknownSession => 0,
                Reason::Malformed => 1,
                Reason::UnknownKey => 2,
                Reason::Forged => 3,
                Reason::Expired => 4,
                Reason::TooOld => 5,
                Reason::Replayed(_) => 6,
            };
            self.reasons[index] += 1;
        }
        self.requests += 1;
        let index = DecisionKind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.kinds[index] += 1;
    }
}

/// A host with one user: the session under test, another session of the same user (for
/// foreign tokens) in a `Sessions` container that mirrors the plain store, and the client.
pub struct World {
    pub policy: Policy,
    rotator: Rotator,
    rng: StdRng,
    pub now: u64,
    /// The plain store: the record the host holds for the session under test.
    store: Option<Session>,
    /// The same user's sessions in one container value, decided in place.
    container: Sessions<4>,
    model: Option<Record>,
    /// The latest session signed in, kept after sign-out to derive its tokens.
    latest: Session,
    foreign: Session,
    /// The newest token the client received.
    pub received: Token,
    /// Also decide every request a second time, on a decoded copy with a fresh rotator.
    pub check_determinism: bool,
    pub counts: Counts,
}

impl World {
    pub fn new(policy: Policy, seed: u64) -> Self {
        let policy = valid(policy);
        let rotator = rotator(&policy);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut container = Sessions::new();
        let foreign_id = container.sign_in(&rotator, &mut rng, Timestamp::from_unix_millis(START));
        let foreign = container
            .find(&foreign_id.client_id)
            .expect("just signed in")
            .clone();
        let mut world = Self {
            policy,
            rotator,
            rng,
            now: START,
            store: None,
            container,
            model: None,
            latest: foreign.clone(),
            foreign,
            received: foreign_id.token,
            check_determinism: false,
            counts: Counts::default(),
        };
        world.sign_in();
        world
    }

    pub fn store(&self) -> Option<&Session> {
        self.store.as_ref()
    }

    pub fn model(&self) -> Option<Record> {
        self.model
    }

    /// The client id of the session under test (the latest signed in).
    pub fn client_id(&self) -> ClientId {
        self.latest.client_id()
    }

    pub fn rotator(&self) -> &Rotator {
        &self.rotator
    }

    pub fn container(&self) -> &Sessions<4> {
        &self.container
    }

    /// The current generation `n` (of the last session, if signed out).
    pub fn generation(&self) -> u64 {
        self.model
            .map_or(self.latest.generation(), |r| r.generation)
    }

    pub fn token_at(&self, generation: u64) -> Token {
        token_at(&self.rotator, &self.latest, generation)
    }

    pub fn apply(&mut self, op: Op) -> Option<Step> {
        match op {
            Op::SignIn => self.sign_in(),
            Op::SignOut => self.sign_out(),
            Op::Clock(Clock::Forward(ms)) => self.now = self.now.saturating_add(ms),
            Op::Clock(Clock::Back(ms)) => self.now = self.now.saturating_sub(ms),
            Op::Clock(Clock::To(ms)) => self.now = ms,
            Op::Reconfigure(policy) => {
                self.policy = valid(policy);
                self.rotator = rotator(&self.policy);
            }
            Op::Present {
                pick,
                form,
                force,
                fate,
            } => return Some(self.present(pick, form, force, fate)),
        }
        None
    }

    /// Signs the session under test out (if any) and a new one in, through the container.
    pub fn sign_in(&mut self) {
        self.container.sign_out(&self.latest.client_id());
        let now = Timestamp::from_unix_millis(self.now);
        let signed_in = self.container.sign_in(&self.rotator, &mut self.rng, now);
        assert!(
            signed_in.evicted.is_none(),
            "two sessions fit in four places"
        );
        let session = self
            .container
            .find(&signed_in.client_id)
            .expect("just signed in")
            .clone();
        let expected = Record::sign_in(&self.policy, self.now);
        assert_eq!(record_of(&session), expected, "sign-in at {}", self.now);
        assert_eq!(Session::decode(&session.encode()).as_ref(), Ok(&session));
        assert_eq!(
            self.rotator.current_token(&session).as_ref(),
            Some(&signed_in.token)
        );
        assert_eq!(signed_in.token.generation(), 0);
        self.model = Some(expected);
        self.latest = session.clone();
        self.store = Some(session);
        self.received = signed_in.token;
    }

    pub fn sign_out(&mut self) {
        let removed = self.container.sign_out(&self.latest.client_id());
        assert_eq!(
            removed.as_ref(),
            self.store.as_ref(),
            "container and store agree"
        );
        self.store = None;
        self.model = None;
    }

    fn pick(&self, pick: Pick, form: Form) -> (Wire, Shown) {
        let n = self.generation();
        let genuine = |g: u64| (Wire::of(&self.token_at(g), form), Shown::Genuine(g));
        match pick {
            Pick::Current => genuine(n),
            Pick::Previous => genuine(n.saturating_sub(1)),
            Pick::Last => genuine(n.saturating_sub(2)),
            Pick::Older(k) => genuine(n.saturating_sub(3).saturating_sub(k)),
            Pick::Newer(k) => genuine(n.saturating_add(1).saturating_add(k)),
            Pick::Generation(g) => genuine(g),
            Pick::Received => (
                Wire::of(&self.received, form),
                Shown::Genuine(self.received.generation()),
            ),
            Pick::Flipped(bit) => {
                let mut bytes = *self.token_at(n).as_bytes();
                // Bytes 1..41: the generation and the MAC; byte 0 picks the key.
                let bit = 8 + usize::from(bit) % (8 * (rotauth::TOKEN_LEN - 1));
                bytes[bit / 8] ^= 1 << (bit % 8);
                let token = Token::from_bytes(&bytes).expect("41 bytes");
                (Wire::of(&token, form), Shown::Forged)
            }
            Pick::Foreign => {
                let token = token_at(&self.rotator, &self.foreign, n);
                (Wire::of(&token, form), Shown::Forged)
            }
            Pick::Malformed(kind) => (junk(&self.token_at(n), kind), Shown::Malformed),
            Pick::UnknownKey => {
                let mut bytes = *self.token_at(n).as_bytes();
                bytes[0] = 2;
                let token = Token::from_bytes(&bytes).expect("41 bytes");
                (Wire::of(&token, form), Shown::UnknownKey)
            }
        }
    }

    /// One request, decided by both sides and checked.
    pub fn present(&mut self, pick: Pick, form: Form, force: bool, fate: Fate) -> Step {
        let (wire, shown) = self.pick(pick, form);
        let now = self.now;
        let before = self.model;
        let (outcome, after) = decide(&self.policy, before, shown, now, force);
        let decision = self
            .rotator
            .decide(self.store.as_ref(), wire.request(now, force));
        // Formatted only when an assertion fails: this runs on every fuzz execution.
        let policy = self.policy;
        let context = || {
            format!(
                "policy {policy:?}, now {now}, force {force}, record {before:?}, shown {shown:?}"
            )
        };

        assert_eq!(outcome_of(&decision), outcome, "decision: {}", context());
        let stored = decision.session_to_store();
        let impl_after = if decision.must_revoke() {
            None
        } else {
            stored.or(self.store.as_ref()).cloned()
        };
        assert_eq!(
            impl_after.as_ref().map(record_of),
            after,
            "record after: {}",
            context()
        );
        // A host stores exactly when something changed, and every change bumps the version.
        assert_eq!(
            stored.is_some(),
            after.is_some() && after != before,
            "store?: {}",
            context()
        );
        if let (Some(new), Some(old)) = (stored, self.store.as_ref()) {
            // A fast-forward followed by a rotation bumps it twice; hosts compare equality.
            assert_ne!(new.version(), old.version(), "version: {}", context());
            assert_eq!(new.client_id(), old.client_id());
            assert_eq!(new.key_id(), PRIMARY);
        }
        if let Some(new) = impl_after.as_ref() {
            assert_eq!(
                Session::decode(&new.encode()).as_ref(),
                Ok(new),
                "round trip: {}",
                context()
            );
        }
        match &decision {
            Decision::Rotate { session, token } => {
                assert_eq!(token.generation(), session.generation());
                assert_eq!(self.rotator.current_token(session).as_ref(), Some(token));
            }
            Decision::Reissue { token, .. } => {
                let current = self.store.as_ref().expect("reissue needs a session");
                assert_eq!(token.generation(), current.generation());
                assert_eq!(self.rotator.current_token(current).as_ref(), Some(token));
            }
            _ => {}
        }
        if self.check_determinism {
            self.assert_deterministic(&wire, now, force, &decision);
        }
        if fate != Fate::WriteLost {
            // The container decides the same and applies it in place.
            let id = self.latest.client_id();
            let in_container = self
                .container
                .decide(&self.rotator, &id, wire.request(now, force));
            assert_eq!(in_container, decision, "container: {}", context());
            assert_eq!(
                self.container.find(&id),
                impl_after.as_ref(),
                "container: {}",
                context()
            );
        }

        self.counts.add(decision.kind(), outcome);
        if fate != Fate::WriteLost {
            self.store = impl_after;
            self.model = after;
            if let Some(session) = self.store.as_ref() {
                self.latest = session.clone();
            }
        }
        if fate != Fate::ResponseLost {
            if let Some(token) = decision.token_to_send() {
                self.received = token.clone();
            }
        }
        Step {
            now,
            force,
            fate,
            shown,
            before,
            outcome,
            after,
        }
    }

    /// The same request on a decoded copy of the record, with a rotator built afresh from
    /// the same key and policy, decides the same.
    fn assert_deterministic(&self, wire: &Wire, now: u64, force: bool, decision: &Decision) {
        let copy = self
            .store
            .as_ref()
            .map(|s| Session::decode(&s.encode()).expect("round trips"));
        let again = rotator(&self.policy).decide(copy.as_ref(), wire.request(now, force));
        assert_eq!(&again, decision, "a second host decided differently");
        let twice = self
            .rotator
            .decide(self.store.as_ref(), wire.request(now, force));
        assert_eq!(&twice, decision, "the same host decided differently");
    }
}

/// Two parties holding diverging tokens of one session in Recover mode: after `rotations`
/// rotations, a rotation's response reaches one party only, so one holds `T(n)` and the
/// other `T(n-1)`. Then, turn by turn, the chosen party (`true`: the one that kept the old
/// token) presents the newest token it received, `W + extra` after the previous request.
/// Asserts that at most one of them is served once the session is two generations past
/// the divergence: a recovery is granted once. Shared by the property test and the fuzz
/// target `recovery`.
pub fn diverging_holders(policy: Policy, seed: u64, rotations: u64, turns: &[(bool, u64)]) {
    let policy = Policy {
        rotate: true,
        recover: true,
        ..policy
    };
    let mut world = World::new(policy, seed);
    let policy = world.policy;
    for _ in 0..rotations.min(8) {
        let step = world.present(Pick::Received, Form::Text, true, Fate::Delivered);
        if step.outcome != Outcome::Rotate {
            return; // expired or too old already: nothing diverges
        }
    }
    let step = world.present(Pick::Received, Form::Text, true, Fate::Delivered);
    let (Outcome::Rotate, Some(after)) = (step.outcome, step.after) else {
        return;
    };
    let diverged = after.generation;
    let mut held = [diverged, diverged - 1];
    let mut served = [false, false];
    for &(party, extra) in turns {
        let party = usize::from(party);
        world.apply(Op::Clock(Clock::Forward(
            policy.window.saturating_add(extra % 100_000),
        )));
        let step = world.present(
            Pick::Generation(held[party]),
            Form::Text,
            false,
            Fate::Delivered,
        );
        let Some(before) = step.before else { break };
        match step.outcome {
            Outcome::Rotate => held[party] = step.after.expect("rotated").generation,
            Outcome::Reissue => held[party] = before.generation,
            _ => {}
        }
        let accepted = !matches!(step.outcome, Outcome::Reject(_) | Outcome::Revoke(_));
        if accepted && before.generation >= diverged + 2 {
            served[party] = true;
        }
    }
    assert!(
        !(served[0] && served[1]),
        "both diverging holders served two generations later: {:?}",
        world.model()
    );
}
