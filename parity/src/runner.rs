//! The runner the Rust hosts share: it plays each scenario against a [`Host`], following
//! the tokens the responses carry as a devise client does, and checks every expectation.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Encoding};

use crate::scenario::{
    Action, Claim, Config, Expect, Expected, Fault, Need, Presented, Request, Scenario, Stored, Via,
};

/// The user a request claims with [`Claim::Other`].
pub const OTHER_UID: &str = "someone-else@example.com";

/// What a sign-in gave the client.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The session's client id, as devise's `client` header carries it.
    pub client: String,
    /// The user, as devise's `uid` header carries it.
    pub uid: String,
    /// `T(0)`.
    pub token: String,
}

/// A request as it goes on the wire: the query string (empty, or starting with `?`) to
/// append to the host's protected path, and the headers.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    /// Empty, or `?` and the parameters.
    pub query: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
}

/// What the runner reads of a response.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// `access-token`, as sent.
    pub access_token: Option<String>,
    /// Whether an `Authorization` header came back (devise ≥ 1.1 sends the token there too).
    pub authorization: bool,
    /// `Retry-After`, as sent.
    pub retry_after: Option<String>,
}

impl Response {
    /// The fields the runner reads, from a status and the response's headers.
    pub fn from_headers<'a>(
        status: u16,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut response = Self {
            status,
            ..Self::default()
        };
        for (name, value) in headers {
            match name.to_ascii_lowercase().as_str() {
                "access-token" => response.access_token = Some(value.to_owned()),
                "authorization" => response.authorization = true,
                "retry-after" => response.retry_after = Some(value.to_owned()),
                _ => {}
            }
        }
        response
    }
}

/// A response, and how many compare-and-swaps its request tried (hosts that inject faults
/// count them; others say `None`).
#[derive(Clone, Debug)]
pub struct Sent {
    /// The response.
    pub response: Response,
    /// Compare-and-swaps tried while it was served.
    pub swaps_tried: Option<u32>,
}

/// A host the scenarios run against: set up for one scenario's [`Config`], it serves the
/// protected route and lets the runner look at (and put back) a session's stored record.
///
/// Times are Unix milliseconds: the host's clock must read `now` while it serves the
/// request (or signs in).
#[allow(
    async_fn_in_trait,
    reason = "a host is driven by one test task at a time: its futures need not be Send"
)]
pub trait Host {
    /// Signs a new session of a new user in at `now`.
    async fn sign_in(&mut self, now: u64) -> Result<SignedIn, String>;

    /// Sends `wire` to the protected route at `now`, with `fault` in the store while it is
    /// served (only asked of a host run with [`Need::Faults`] supported).
    async fn send(&mut self, now: u64, wire: &Wire, fault: Option<Fault>) -> Result<Sent, String>;

    /// Sends `first` at `now`, and once it has loaded the session (before its swap), sends
    /// `competing` and lets it finish; then lets `first` go on. Only asked of a host run
    /// with [`Need::Race`] supported.
    async fn race(
        &mut self,
        now: u64,
        first: &Wire,
        competing: &Wire,
    ) -> Result<(Response, Response), String> {
        let _ = (now, first, competing);
        Err("this host cannot run races".to_owned())
    }

    /// The generation of the stored record of `client`; `None` when there is none.
    async fn generation(&mut self, client: &str) -> Result<Option<u64>, String>;

    /// Keeps a copy of the stored record of `client`.
    async fn save(&mut self, client: &str) -> Result<(), String>;

    /// Puts the kept copy of `client`'s record back in the store.
    async fn restore(&mut self, client: &str) -> Result<(), String>;
}

/// What a run gave: scenarios passed, failed (with why) and skipped (with why).
#[derive(Debug, Default)]
pub struct Report {
    /// The host's name.
    pub host: String,
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed, and the first expectation each broke.
    pub failed: Vec<(String, String)>,
    /// Scenarios the host could not run, and why.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// Prints the report on standard error, past the test harness's capture of `eprintln!`,
    /// so that what a host skipped shows in every run, not only in a failing one.
    #[allow(
        clippy::explicit_write,
        reason = "eprintln! is captured by the test harness; this must show in passing runs"
    )]
    pub fn print(&self) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        for (name, why) in &self.failed {
            writeln!(f, "parity[{host}]: FAILED {name}: {why}")?;
        }
        // Skips grouped by reason: one line each.
        let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, why) in &self.skipped {
            by_reason.entry(why).or_default().push(name);
        }
        for (why, names) in by_reason {
            writeln!(f, "parity[{host}]: skipped ({why}): {}", names.join(", "))?;
        }
        write!(
            f,
            "parity[{host}]: {} passed, {} failed, {} skipped",
            self.passed,
            self.failed.len(),
            self.skipped.len()
        )
    }
}

/// The scenarios a host supporting `supported` can run, and the others with why not.
#[must_use]
pub fn runnable<'a>(
    scenarios: &'a [Scenario],
    supported: &[Need],
) -> (Vec<&'a Scenario>, Vec<(String, String)>) {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for scenario in scenarios {
        match scenario.needs.iter().find(|n| !supported.contains(n)) {
            Some(need) => skipped.push((scenario.name.clone(), format!("needs {}", need.as_str()))),
            None => run.push(scenario),
        }
    }
    (run, skipped)
}

/// Runs every scenario whose needs are in `supported` on a host made for its
/// configuration by `host_for`, which answers `Err(why)` for a configuration the host
/// cannot take; the others are skipped, and the report says why.
pub async fn run<H, F, Fut>(
    host: &str,
    scenarios: &[Scenario],
    supported: &[Need],
    mut host_for: F,
) -> Report
where
    H: Host,
    F: FnMut(Config) -> Fut,
    Fut: Future<Output = Result<H, String>>,
{
    let (runnable, skipped) = runnable(scenarios, supported);
    let mut report = Report {
        host: host.to_owned(),
        skipped,
        ..Report::default()
    };
    for scenario in runnable {
        let mut instance = match host_for(scenario.config).await {
            Ok(instance) => instance,
            Err(why) => {
                report.skipped.push((scenario.name.clone(), why));
                continue;
            }
        };
        match play(scenario, &mut instance).await {
            Ok(()) => report.passed = report.passed.saturating_add(1),
            Err(why) => report.failed.push((scenario.name.clone(), why)),
        }
    }
    report
}

/// The tokens a client has received, by generation, and who it is.
struct Client {
    signed_in: SignedIn,
    tokens: BTreeMap<u64, String>,
}

async fn play<H: Host>(scenario: &Scenario, host: &mut H) -> Result<(), String> {
    let start = wall_clock_ms();
    let mut client: Option<Client> = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        let now = start.saturating_add(step.at);
        let at = |e: String| format!("step {i} (at {} ms): {e}", step.at);
        if let Action::SignIn = step.action {
            let signed_in = host.sign_in(now).await.map_err(at)?;
            let tokens = BTreeMap::from([(0, signed_in.token.clone())]);
            client = Some(Client { signed_in, tokens });
            continue;
        }
        let client = client.as_mut().ok_or_else(|| at("no sign-in".to_owned()))?;
        let id = client.signed_in.client.clone();
        match &step.action {
            Action::SignIn => {}
            Action::Save => host.save(&id).await.map_err(at)?,
            Action::Restore => host.restore(&id).await.map_err(at)?,
            Action::Request(exchange) => {
                let wire = client.wire(&exchange.request).map_err(at)?;
                let (response, swaps_tried) = match &exchange.race {
                    Some(race) => {
                        let competing = client.wire(&race.request).map_err(at)?;
                        let (response, theirs) =
                            host.race(now, &wire, &competing).await.map_err(at)?;
                        client
                            .check(&race.expect, &theirs)
                            .map_err(|e| at(format!("the competing request: {e}")))?;
                        (response, None)
                    }
                    None => {
                        let sent = host.send(now, &wire, exchange.fault).await.map_err(at)?;
                        (sent.response, sent.swaps_tried)
                    }
                };
                client.check(&exchange.expect, &response).map_err(at)?;
                if let Some(expected) = exchange.expect.swaps_tried
                    && swaps_tried != Some(expected)
                {
                    return Err(at(format!(
                        "{expected} compare-and-swaps expected, {swaps_tried:?} tried"
                    )));
                }
                if let Some(expected) = exchange.expect.generation {
                    let stored = match host.generation(&id).await.map_err(at)? {
                        Some(generation) => Stored::Generation(generation),
                        None => Stored::Absent,
                    };
                    if stored != expected {
                        return Err(at(format!("stored {stored:?}, expected {expected:?}")));
                    }
                }
            }
        }
    }
    Ok(())
}

impl Client {
    /// The request on the wire, with the tokens received so far.
    fn wire(&self, request: &Request) -> Result<Wire, String> {
        let token = match request.token {
            Presented::Generation(k) => self
                .tokens
                .get(&k)
                .cloned()
                .ok_or_else(|| format!("T({k}) was never received"))?,
            Presented::Forged => forged(&self.signed_in.token),
            Presented::Malformed => "not-a-token".to_owned(),
        };
        let uid = match request.uid {
            Claim::Own => self.signed_in.uid.as_str(),
            Claim::Other => OTHER_UID,
        };
        let client = self.signed_in.client.as_str();
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut headers = Vec::new();
        match request.via {
            Via::Headers => {
                for (name, value) in [
                    ("access-token", token.as_str()),
                    ("token-type", "Bearer"),
                    ("client", client),
                    ("uid", uid),
                ] {
                    headers.push((name.to_owned(), value.to_owned()));
                }
            }
            Via::Bearer => {
                let json = serde_json::json!({
                    "access-token": token,
                    "token-type": "Bearer",
                    "client": client,
                    "uid": uid,
                });
                let encoded = Base64::encode_string(json.to_string().as_bytes());
                headers.push(("authorization".to_owned(), format!("Bearer {encoded}")));
            }
            Via::Query => {
                query.append_pair("access-token", &token);
                query.append_pair("client", client);
                query.append_pair("uid", uid);
            }
        }
        if request.unbatch {
            query.append_pair("unbatch", "true");
        }
        let query = query.finish();
        Ok(Wire {
            query: if query.is_empty() {
                query
            } else {
                format!("?{query}")
            },
            headers,
        })
    }

    /// Checks `response` against `expect`, and keeps a token it carries as `T(k)`.
    fn check(&mut self, expect: &Expect, response: &Response) -> Result<(), String> {
        if response.status != expect.status {
            return Err(format!(
                "status {}, expected {} ({:?})",
                response.status, expect.status, expect.token
            ));
        }
        let sent = response.access_token.as_deref().map(str::trim);
        match (expect.token, sent) {
            (Expected::None, None) if !response.authorization => {}
            (Expected::None, _) => return Err("a token was sent with a refusal".to_owned()),
            (Expected::Blank, Some("")) => {}
            (Expected::Blank, _) => {
                return Err(format!("a blank expected, got {}", self.name(sent)));
            }
            (Expected::Token(k), Some(text)) if !text.is_empty() => self.keep(k, text)?,
            (Expected::Token(k), _) => {
                return Err(format!("T({k}) expected, got {}", self.name(sent)));
            }
        }
        if response.retry_after != expect.retry_after {
            return Err(format!(
                "Retry-After {:?}, expected {:?}",
                response.retry_after, expect.retry_after
            ));
        }
        Ok(())
    }

    /// Keeps `text` as `T(k)`: it must claim generation `k`, and be the `T(k)` received
    /// before, if any.
    fn keep(&mut self, k: u64, text: &str) -> Result<(), String> {
        let claimed = rotauth::Token::from_text(text)
            .map_err(|e| format!("T({k}) expected, got text that is no token ({e})"))?
            .generation();
        if claimed != k {
            return Err(format!("T({k}) expected, got {}", self.name(Some(text))));
        }
        match self.tokens.get(&k) {
            Some(known) if known != text => Err(format!("a second, different T({k})")),
            Some(_) => Ok(()),
            None => {
                self.tokens.insert(k, text.to_owned());
                Ok(())
            }
        }
    }

    /// What a sent `access-token` is, in the scenarios' words.
    fn name(&self, sent: Option<&str>) -> String {
        match sent {
            None => "no token".to_owned(),
            Some("") => "a blank".to_owned(),
            Some(text) => match rotauth::Token::from_text(text) {
                Ok(token) => format!("T({})", token.generation()),
                Err(_) => "text that is no token".to_owned(),
            },
        }
    }
}

/// `token` with one character of its MAC changed: still well formed, and made with no key.
fn forged(token: &str) -> String {
    // Characters 12 on are the MAC's (the key id and the generation fill the first nine
    // bytes, twelve characters of base64url).
    const AT: usize = 30;
    token
        .char_indices()
        .map(|(i, c)| match (i, c) {
            (AT, 'A') => 'B',
            (AT, _) => 'A',
            _ => c,
        })
        .collect()
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_token_differs_in_one_character_of_its_mac() {
        for token in ["A".repeat(55), "B".repeat(55)] {
            let forged = forged(&token);
            let differ: Vec<usize> = (0..55)
                .filter(|&i| forged.as_bytes()[i] != token.as_bytes()[i])
                .collect();
            assert_eq!(differ, [30], "{token} -> {forged}");
        }
    }
}
