//! The scenario format, as `parity/README.md` describes it: read from JSON, checked once
//! for what a runner relies on, and turned into enums the runners match on.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// One story: a configuration, a session signed in, and the requests made of it, each with
/// what the host must answer and store.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Unique among all the files.
    pub name: String,
    /// What the scenario proves, in a sentence.
    pub proves: String,
    /// How the host is set up.
    pub config: Config,
    /// What a host must be able to do beyond HTTP to run it.
    pub needs: BTreeSet<Need>,
    /// In order; the first signs in.
    pub steps: Vec<Step>,
}

/// How a host decides: the rotator's policy and the loop's options.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The batch window `W`, in milliseconds.
    pub batch_window_ms: u64,
    /// Strict or Recover.
    pub mode: Mode,
    /// What a replay does to its session.
    pub replay: Replay,
    /// What a batch member's response carries.
    pub batch_token: BatchToken,
    /// Decisions per request: one plus the compare-and-swaps it may lose before its 503.
    pub max_attempts: u32,
    /// Rotation on each request (devise's `change_headers_on_each_request`).
    pub rotate: bool,
    /// The host tries a failing store again before it answers 503 (for failures that pass
    /// at once); without it, the first failure is answered.
    pub patience: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            batch_window_ms: 5_000,
            mode: Mode::Strict,
            replay: Replay::Reject,
            batch_token: BatchToken::Blank,
            max_attempts: 4,
            rotate: true,
            patience: false,
        }
    }
}

/// Strict or Recover mode.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An invalidated token fails after the window.
    #[default]
    Strict,
    /// `T(n-1)` after the window is exchanged for `T(n)` once, while `T(n)` is unused.
    Recover,
}

/// The replay policy.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// A replay is refused; the session stays.
    #[default]
    Reject,
    /// A replay is refused and its session deleted.
    Revoke,
}

/// What a batch member's response carries.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[serde(rename_all = "snake_case")]
pub enum BatchToken {
    /// `access-token: " "`.
    #[default]
    Blank,
    /// `T(n)` to a holder of `T(n)` or `T(n-1)`, a blank to others.
    Current,
}

/// What a host must be able to do beyond serving HTTP.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// Make its store fail, or lose swaps, during one request.
    Faults,
    /// Run a competing request between one request's load and its swap.
    Race,
    /// Try a failing store again before answering 503.
    Patience,
}

impl Need {
    /// The name the scenario files use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Faults => "faults",
            Self::Race => "race",
            Self::Patience => "patience",
        }
    }
}

/// One step, at `at` milliseconds from the scenario's start.
#[derive(Clone, Debug)]
pub struct Step {
    /// Milliseconds from the scenario's start: the host's clock reads start + `at`.
    pub at: u64,
    /// What happens.
    pub action: Action,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Signs a session in: its token is `T(0)`.
    SignIn,
    /// Keeps a copy of the session's stored record.
    Save,
    /// Puts the kept copy back, as a restored backup or a lost write would.
    Restore,
    /// A request, and what it must be answered.
    Request(Box<Exchange>),
}

/// A request with its expectations, and what happens in the store meanwhile.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// What the request presents.
    pub request: Request,
    /// What its store does wrong while it is served.
    pub fault: Option<Fault>,
    /// A competing request that lands between this request's load and its swap.
    pub race: Option<Race>,
    /// What it must be answered, and what must be stored after it.
    pub expect: Expect,
}

/// A competing request and what it must be answered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Race {
    /// What the competing request presents.
    pub request: Request,
    /// What it must be answered.
    pub expect: Expect,
}

/// What a request presents, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The token.
    pub token: Presented,
    /// How the credentials travel.
    #[serde(default)]
    pub via: Via,
    /// Which user the request claims to be.
    #[serde(default)]
    pub uid: Claim,
    /// `?unbatch=true`: a forced rotation.
    #[serde(default)]
    pub unbatch: bool,
}

/// The token a request presents.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum Presented {
    /// `T(k)`, the session's `k`-th token, as the runner received it.
    Generation(u64),
    /// `T(0)` with one character of its MAC changed: well formed, not made with the key.
    Forged,
    /// Text that is no token at all.
    Malformed,
}

impl TryFrom<String> for Presented {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "forged" => Ok(Self::Forged),
            "malformed" => Ok(Self::Malformed),
            _ => generation(&text).map(Self::Generation),
        }
    }
}

/// How the credentials travel.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// devise's `access-token`, `client` and `uid` headers.
    #[default]
    Headers,
    /// `Authorization: Bearer <base64 of the JSON of the devise headers>`.
    Bearer,
    /// `?access-token=…&client=…&uid=…`.
    Query,
}

/// Which user a request claims.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// The session's own.
    #[default]
    Own,
    /// Someone else.
    Other,
}

/// What goes wrong in the store while one request is served.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Every load fails.
    LoadFails,
    /// The first load fails; the store is back for the next.
    LoadFailsOnce,
    /// Every compare-and-swap fails, writing nothing.
    SwapFails,
    /// The first compare-and-swap is written, then reported as a failure (a lost
    /// acknowledgement); the store is back for the next.
    SwapLandsUnacknowledged,
    /// Every compare-and-swap is lost to another request, writing nothing.
    EverySwapLost,
    /// Every delete fails.
    DeleteFails,
}

/// What a request must be answered, and what must be stored after it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The HTTP status.
    pub status: u16,
    /// What the response's `access-token` carries.
    pub token: Expected,
    /// The `Retry-After` header of a 503.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// The session's record afterwards.
    #[serde(default)]
    pub generation: Option<Stored>,
    /// How many compare-and-swaps the request tried (hosts that inject faults count them).
    #[serde(default)]
    pub swaps_tried: Option<u32>,
}

/// What a response's `access-token` carries.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum Expected {
    /// `T(k)`.
    Token(u64),
    /// A blank (devise's batch response, `access-token: " "`).
    Blank,
    /// No `access-token` header, and no `Authorization` either.
    None,
}

impl TryFrom<String> for Expected {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "blank" => Ok(Self::Blank),
            "none" => Ok(Self::None),
            _ => generation(&text).map(Self::Token),
        }
    }
}

/// The session's stored record after a request.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "StoredText")]
pub enum Stored {
    /// The record has this generation.
    Generation(u64),
    /// There is no record.
    Absent,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StoredText {
    Generation(u64),
    Word(String),
}

impl TryFrom<StoredText> for Stored {
    type Error = String;

    fn try_from(value: StoredText) -> Result<Self, String> {
        match value {
            StoredText::Generation(n) => Ok(Self::Generation(n)),
            StoredText::Word(word) if word == "absent" => Ok(Self::Absent),
            StoredText::Word(word) => Err(format!("expected a generation or \"absent\": {word:?}")),
        }
    }
}

/// `k` of `"T(k)"`.
fn generation(text: &str) -> Result<u64, String> {
    text.strip_prefix("T(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| format!("expected \"T(k)\": {text:?}"))
}

/// A scenario as written, before its steps are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    name: String,
    proves: String,
    #[serde(default)]
    config: Config,
    #[serde(default)]
    needs: BTreeSet<Need>,
    steps: Vec<WrittenStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenStep {
    at: u64,
    #[serde(default)]
    sign_in: bool,
    #[serde(default)]
    store: Option<StoreOp>,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    fault: Option<Fault>,
    #[serde(default)]
    race: Option<Race>,
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreOp {
    Save,
    Restore,
}

/// Every scenario of every `*.json` file in `dir`, in file order. A file holds an array of
/// scenarios.
///
/// # Errors
///
/// A file that cannot be read or parsed, or a scenario that breaks a rule of the format
/// (the message names the file and the scenario).
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut scenarios = Vec::new();
    let mut names = BTreeSet::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let written: Vec<Written> =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for scenario in written {
            let name = scenario.name.clone();
            let scenario =
                checked(scenario).map_err(|e| format!("{}: {name}: {e}", file.display()))?;
            if !names.insert(name.clone()) {
                return Err(format!("{}: {name}: the name is taken", file.display()));
            }
            scenarios.push(scenario);
        }
    }
    Ok(scenarios)
}

/// The scenario, if it keeps the rules a runner relies on.
fn checked(written: Written) -> Result<Scenario, String> {
    let mut steps = Vec::with_capacity(written.steps.len());
    let mut needs = BTreeSet::new();
    let mut last = 0;
    for (i, step) in written.steps.into_iter().enumerate() {
        let at = step.at;
        if at < last {
            return Err(format!("step {i}: `at` goes back in time"));
        }
        last = at;
        let action = action(step, &mut needs).map_err(|e| format!("step {i}: {e}"))?;
        if matches!(action, Action::SignIn) != (i == 0) {
            return Err(format!("step {i}: the first step, and only it, signs in"));
        }
        steps.push(Step { at, action });
    }
    if steps.is_empty() {
        return Err("no steps".to_owned());
    }
    if written.config.patience {
        needs.insert(Need::Patience);
    }
    if needs != written.needs {
        let list = |set: &BTreeSet<Need>| set.iter().map(|n| n.as_str()).collect::<Vec<_>>();
        return Err(format!(
            "`needs` is {:?}, but the steps need {:?}",
            list(&written.needs),
            list(&needs)
        ));
    }
    if written.config.max_attempts == 0 {
        return Err("max_attempts is at least 1".to_owned());
    }
    Ok(Scenario {
        name: written.name,
        proves: written.proves,
        config: written.config,
        needs,
        steps,
    })
}

fn action(step: WrittenStep, needs: &mut BTreeSet<Need>) -> Result<Action, String> {
    let WrittenStep {
        sign_in,
        store,
        request,
        fault,
        race,
        expect,
        ..
    } = step;
    match (sign_in, store, request) {
        (true, None, None) | (false, Some(_), None) if fault.is_some() || race.is_some() => {
            Err("only a request has a fault or a race".to_owned())
        }
        (true, None, None) | (false, Some(_), None) if expect.is_some() => {
            Err("only a request has expectations".to_owned())
        }
        (true, None, None) => Ok(Action::SignIn),
        (false, Some(StoreOp::Save), None) => Ok(Action::Save),
        (false, Some(StoreOp::Restore), None) => Ok(Action::Restore),
        (false, None, Some(request)) => {
            let expect = expect.ok_or("a request without `expect`")?;
            check_expect(&expect, fault.is_some())?;
            if let Some(race) = &race {
                check_expect(&race.expect, false).map_err(|e| format!("race: {e}"))?;
                needs.insert(Need::Race);
            }
            if fault.is_some() {
                needs.insert(Need::Faults);
            }
            Ok(Action::Request(Box::new(Exchange {
                request,
                fault,
                race,
                expect,
            })))
        }
        _ => Err("a step is one of `sign_in`, `store` or `request`".to_owned()),
    }
}

fn check_expect(expect: &Expect, faulty: bool) -> Result<(), String> {
    match (expect.status, expect.token) {
        (200, Expected::None) => return Err("a 200 carries a token or a blank".to_owned()),
        (200, _) | (401 | 503, Expected::None) => {}
        (401 | 503, _) => return Err("a refusal carries no token: \"none\"".to_owned()),
        (status, _) => return Err(format!("status {status}: 200, 401 or 503")),
    }
    if (expect.status == 503) != expect.retry_after.is_some() {
        return Err("a 503, and only a 503, expects `retry_after`".to_owned());
    }
    if expect.swaps_tried.is_some() && !faulty {
        return Err("`swaps_tried` is counted by hosts that inject faults".to_owned());
    }
    Ok(())
}
