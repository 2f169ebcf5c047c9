//! Clients following their tokens over real HTTP with the devise protocol: the load that
//! `stores.rs` runs on every store, and that `faults.rs` runs while it restarts, fails over
//! or cuts off the store.
//!
//! Each client signs in, then sends bursts of 3–5 concurrent requests with pauses of up to
//! 150 ms (and one a little longer than the batch window after every tenth burst, so that
//! rotations by time happen beside the forced ones), every third burst led by an
//! `unbatch=true` request. Every request presents the token the client holds when it is
//! sent, and a response's token replaces the held one only if it is newer. A 503 is sent
//! again after a pause (when the shape says so) with the token the client then holds, as a
//! client honouring `Retry-After` does; a 401 means the client was signed out, and it signs
//! in again after the burst.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use rotauth::{ClientId, Token};
use rotauth_axum::SessionStore;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

use super::{Answer, Schedule, Server, unique};

/// What the clients do.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub clients: usize,
    /// Requests per client; [`Load::finish`] ends the load earlier.
    pub requests: usize,
    /// The server's batch window: every tenth pause is a little longer than it.
    pub window: Duration,
    /// How a 503 is sent again; `None`: it is not.
    pub retry: Option<Retry>,
}

/// A 503 is sent again after `pause`, at most `attempts` times; then the request is given up.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub pause: Duration,
    pub attempts: usize,
}

/// What one answer was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request behind the layer.
    Request,
    /// A sign-in (the first or a later one).
    SignIn,
}

/// One answer: which client, when it arrived (since the load began), its status.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    pub client: usize,
    pub at: Duration,
    pub kind: Kind,
    pub status: u16,
}

/// A request refused with 401: its session, the generation of the token it presented, when
/// it was sent and answered (since the load began).
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    pub client_id: ClientId,
    pub presented: u64,
    pub sent: Duration,
    pub at: Duration,
}

/// A client's session as it holds it.
#[derive(Clone)]
pub struct Held {
    pub client_id: ClientId,
    pub token: Token,
}

struct Shared {
    server: Arc<Server>,
    shape: Shape,
    started: Instant,
    started_unix_ms: u64,
    stop: AtomicBool,
    /// Each burst holds a read guard; [`Load::pause`] takes the write side.
    gate: Arc<RwLock<()>>,
    answers: Mutex<Vec<Answered>>,
    /// Every request refused with 401.
    refused: Mutex<Vec<Refused>>,
    users: Vec<String>,
    held: Vec<Mutex<Option<Held>>>,
}

impl Shared {
    fn record(&self, client: usize, kind: Kind, status: u16) {
        let at = self.started.elapsed();
        self.answers.lock().unwrap().push(Answered {
            client,
            at,
            kind,
            status,
        });
    }

    fn held(&self, client: usize) -> Held {
        self.held[client]
            .lock()
            .unwrap()
            .clone()
            .expect("signed in")
    }
}

/// What a client counted.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    tokens: usize,
    by_time: usize,
    gave_up: usize,
    signed_in_again: usize,
}

/// The load, running.
pub struct Load {
    shared: Arc<Shared>,
    clients: tokio::task::JoinSet<(usize, Counts)>,
}

/// The load, finished.
pub struct Report {
    pub shape: Shape,
    pub elapsed: Duration,
    pub answers: Vec<Answered>,
    /// Every request refused with 401.
    pub refused: Vec<Refused>,
    /// When the load began, in Unix milliseconds (records' timestamps are on this clock).
    pub started_unix_ms: u64,
    /// Each client's user, client id and the generation of the newest token it received.
    pub finals: Vec<(String, ClientId, u64)>,
    /// Tokens received, and those of them in bursts without `unbatch`.
    pub tokens: usize,
    pub by_time: usize,
    /// Requests given up after their last retry.
    pub gave_up: usize,
    /// Clients that signed in again after a 401, and how many sign-ins that took in all.
    pub clients_signed_in_again: usize,
    pub sign_ins_again: usize,
}

impl Load {
    /// Signs `shape.clients` users in (named after `label`) and starts their requests.
    /// Returns once every client holds a session.
    pub async fn start(server: Arc<Server>, shape: Shape, label: &str) -> Self {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let shared = Arc::new(Shared {
            server,
            shape,
            started: Instant::now(),
            started_unix_ms: rotauth::Timestamp::now().unix_millis(),
            stop: AtomicBool::new(false),
            gate: Arc::new(RwLock::new(())),
            answers: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            users: (0..shape.clients)
                .map(|c| unique(&format!("{label}-{c}")))
                .collect(),
            held: (0..shape.clients).map(|_| Mutex::new(None)).collect(),
        });
        let mut sign_ins = tokio::task::JoinSet::new();
        for c in 0..shape.clients {
            let shared = Arc::clone(&shared);
            sign_ins.spawn(async move { (c, sign_in(&shared, c).await) });
        }
        while let Some(signed_in) = sign_ins.join_next().await {
            let (c, signed_in) = signed_in.unwrap();
            assert!(signed_in, "client {c}: the first sign-in");
        }
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..shape.clients {
            let shared = Arc::clone(&shared);
            clients.spawn(async move { (c, run(&shared, c).await) });
        }
        Self { shared, clients }
    }

    /// Time since the load began, on the clock of [`Answered::at`].
    pub fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Lets the load run for `duration`.
    pub async fn run_for(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Holds every client before its next burst, once the bursts under way are answered.
    /// The load goes on when the guard is dropped.
    pub async fn pause(&self) -> OwnedRwLockWriteGuard<()> {
        Arc::clone(&self.shared.gate).write_owned().await
    }

    /// Each client's user and the session it holds now.
    pub fn held(&self) -> Vec<(String, Held)> {
        (0..self.shared.shape.clients)
            .map(|c| (self.shared.users[c].clone(), self.shared.held(c)))
            .collect()
    }

    /// Lets the load run until every client has had a request served that was answered
    /// after `since`, or `limit` passed; then for `settle` more.
    pub async fn run_until_served_after(&self, since: Duration, limit: Duration, settle: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let served = {
                let answers = self.shared.answers.lock().unwrap();
                let mut served = vec![false; self.shared.shape.clients];
                for a in answers.iter() {
                    if a.kind == Kind::Request && a.status == 200 && a.at >= since {
                        served[a.client] = true;
                    }
                }
                served.iter().all(|s| *s)
            };
            if served {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(settle).await;
    }

    /// Ends the load after each client's burst under way, and reports.
    pub async fn finish(self) -> Report {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.completed().await
    }

    /// Waits until every client has sent its requests, and reports.
    pub async fn completed(mut self) -> Report {
        let mut counts = vec![Counts::default(); self.shared.shape.clients];
        while let Some(done) = self.clients.join_next().await {
            let (c, n) = done.unwrap();
            counts[c] = n;
        }
        let shared = &self.shared;
        let finals = (0..shared.shape.clients)
            .map(|c| {
                let held = shared.held(c);
                (
                    shared.users[c].clone(),
                    held.client_id,
                    held.token.generation(),
                )
            })
            .collect();
        Report {
            shape: shared.shape,
            elapsed: shared.started.elapsed(),
            answers: std::mem::take(&mut *shared.answers.lock().unwrap()),
            refused: std::mem::take(&mut *shared.refused.lock().unwrap()),
            started_unix_ms: shared.started_unix_ms,
            finals,
            tokens: counts.iter().map(|n| n.tokens).sum(),
            by_time: counts.iter().map(|n| n.by_time).sum(),
            gave_up: counts.iter().map(|n| n.gave_up).sum(),
            clients_signed_in_again: counts.iter().filter(|n| n.signed_in_again > 0).count(),
            sign_ins_again: counts.iter().map(|n| n.signed_in_again).sum(),
        }
    }
}

/// Signs client `c` in (again), retrying a 503 as the shape says. `false` if it could not.
async fn sign_in(shared: &Shared, c: usize) -> bool {
    let path = format!("/sign_in/{}", shared.users[c]);
    let attempts = shared.shape.retry.map_or(0, |r| r.attempts);
    for attempt in 0..=attempts {
        let answer = shared.server.request(Method::POST, &path, &[]).await;
        shared.record(c, Kind::SignIn, answer.status);
        if answer.status == 200 {
            let client_id = answer.header("client").unwrap().parse().unwrap();
            let token = answer.devise_token().unwrap();
            *shared.held[c].lock().unwrap() = Some(Held { client_id, token });
            return true;
        }
        assert_eq!(answer.status, 503, "sign-in: {}", answer.body);
        if let Some(retry) = shared.shape.retry.filter(|_| attempt < attempts) {
            tokio::time::sleep(retry.pause).await;
        }
    }
    false
}

/// How one request ended.
enum Ended {
    Served { token: bool },
    SignedOut(ClientId),
    GaveUp,
}

/// Client `c`'s bursts, until it sent its requests or the load is finished.
async fn run(shared: &Arc<Shared>, c: usize) -> Counts {
    let shape = shared.shape;
    let mut schedule = Schedule::new(c as u64 + 1);
    let mut counts = Counts::default();
    let (mut sent, mut burst) = (0, 0);
    while sent < shape.requests && !shared.stop.load(Ordering::SeqCst) {
        let gate = Arc::clone(&shared.gate).read_owned().await;
        let size = (3 + schedule.below(3) as usize).min(shape.requests - sent);
        let unbatch = burst % 3 == 2;
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..size {
            let shared = Arc::clone(shared);
            let path = if unbatch && i == 0 {
                "/ping?unbatch=true"
            } else {
                "/ping"
            };
            requests.spawn(async move { request(&shared, c, path).await });
        }
        let mut signed_out = None;
        while let Some(ended) = requests.join_next().await {
            match ended.unwrap() {
                Ended::Served { token: true } => {
                    counts.tokens += 1;
                    if !unbatch {
                        counts.by_time += 1;
                    }
                }
                Ended::Served { token: false } => {}
                Ended::SignedOut(client_id) => signed_out = Some(client_id),
                Ended::GaveUp => counts.gave_up += 1,
            }
        }
        // Signed out: sign in again, unless the session went away for good.
        if signed_out.is_some_and(|id| id == shared.held(c).client_id) {
            if !sign_in(shared, c).await {
                return counts;
            }
            counts.signed_in_again += 1;
        }
        drop(gate);
        sent += size;
        let pause = if burst % 10 == 9 {
            shape.window + Duration::from_millis(50)
        } else {
            Duration::from_millis(schedule.below(150))
        };
        burst += 1;
        tokio::time::sleep(pause).await;
    }
    counts
}

/// One request with the token the client holds when it is sent (and again on each retry).
async fn request(shared: &Shared, c: usize, path: &str) -> Ended {
    let user = &shared.users[c];
    let mut retries = 0;
    loop {
        let held = shared.held(c);
        let (client, token) = (held.client_id.to_string(), held.token.to_text());
        let headers = [
            ("access-token", token.as_str()),
            ("token-type", "Bearer"),
            ("client", client.as_str()),
            ("uid", user.as_str()),
        ];
        let sent = shared.started.elapsed();
        let answer: Answer = shared.server.request(Method::GET, path, &headers).await;
        shared.record(c, Kind::Request, answer.status);
        match answer.status {
            200 => {
                let new = answer.devise_token();
                if let Some(new) = &new {
                    let mut current = shared.held[c].lock().unwrap();
                    let current = current.as_mut().unwrap();
                    if current.client_id == held.client_id
                        && new.generation() > current.token.generation()
                    {
                        current.token = new.clone();
                    }
                }
                return Ended::Served {
                    token: new.is_some(),
                };
            }
            401 => {
                shared.refused.lock().unwrap().push(Refused {
                    client_id: held.client_id,
                    presented: held.token.generation(),
                    sent,
                    at: shared.started.elapsed(),
                });
                return Ended::SignedOut(held.client_id);
            }
            503 => match shared.shape.retry {
                Some(retry) if retries < retry.attempts => {
                    retries += 1;
                    tokio::time::sleep(retry.pause).await;
                }
                Some(_) => return Ended::GaveUp,
                None => return Ended::GaveUp,
            },
            s => panic!("status {s}: {}", answer.body),
        }
    }
}

impl Report {
    /// Answers of `kind` with `status`.
    pub fn count(&self, kind: Kind, status: u16) -> usize {
        self.answers
            .iter()
            .filter(|a| a.kind == kind && a.status == status)
            .count()
    }

    /// Requests served (200).
    pub fn served(&self) -> usize {
        self.count(Kind::Request, 200)
    }

    /// How long after `since` every client had a request served (answered 200 at or
    /// after `since`); `None` if some client had none.
    pub fn every_client_served_after(&self, since: Duration) -> Option<Duration> {
        let mut first = vec![None; self.shape.clients];
        for a in &self.answers {
            if a.kind == Kind::Request && a.status == 200 && a.at >= since {
                let slot: &mut Option<Duration> = &mut first[a.client];
                if slot.is_none_or(|t| a.at < t) {
                    *slot = Some(a.at);
                }
            }
        }
        first
            .into_iter()
            .try_fold(Duration::ZERO, |max, t| Some(max.max(t? - since)))
    }

    /// The longest time a client went between two served requests (or from its sign-in to
    /// its first served request).
    pub fn longest_unserved(&self) -> Duration {
        let mut last: Vec<Option<Duration>> = vec![None; self.shape.clients];
        let mut longest = Duration::ZERO;
        let mut answers = self.answers.clone();
        answers.sort_by_key(|a| a.at);
        for a in answers {
            let served = a.status == 200;
            if !served {
                continue;
            }
            if let Some(before) = last[a.client] {
                longest = longest.max(a.at - before);
            }
            last[a.client] = Some(a.at);
        }
        longest
    }
}

/// Checks that each client's session has one record, at the generation of the newest
/// token the client received (the load's final state is consistent, whatever happened in
/// between). Returns the sum of the generations: the rotations.
pub async fn check_records<S: SessionStore>(store: &S, report: &Report) -> u64 {
    let mut rotations = 0;
    for (user, client_id, generation) in &report.finals {
        let listed = store.list(user).await.unwrap();
        assert_eq!(listed.len(), 1, "{user}: one session");
        let stored = store.load(*client_id).await.unwrap().unwrap();
        assert_eq!(&stored.user_id, user);
        let session = rotauth::Session::decode(stored.record.as_bytes()).unwrap();
        assert_eq!(session.version(), stored.record.version());
        assert_eq!(
            session.generation(),
            *generation,
            "{user}: the record is at the newest token its client received"
        );
        rotations += generation;
    }
    rotations
}
