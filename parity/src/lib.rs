//! rotauth's parity suite: scenarios written as data (`parity/scenarios/*.json`, described
//! in `parity/README.md`) that every host of rotauth's request loop runs, and the runner
//! the Rust hosts share.
//!
//! The rules around a decision (load, decide, compare-and-swap, decide again on a lost
//! swap, which token a response carries, 503s, revocation, the `uid` check) live once, in
//! `rotauth::exchange`; each host drives them with its own I/O. A scenario says what a
//! devise client sees and what the store holds after each request, so a host that drifts
//! from the others fails here, whichever language it is written in. The Rust hosts
//! (`rotauth-axum`'s layer on each store, the devise server over HTTP) implement [`Host`]
//! and call [`run`]; the JavaScript hosts have a runner of their own that reads the same
//! files (`wasm/js/test/parity/`).

mod runner;
mod scenario;

pub use runner::{Host, OTHER_UID, Report, Response, Sent, SignedIn, Wire, run, runnable};
pub use scenario::{
    Action, BatchToken, Claim, Config, Exchange, Expect, Expected, Fault, Mode, Need, Presented,
    Race, Replay, Request, Scenario, Step, Stored, Via, load_dir,
};

/// The directory of the scenario files.
#[must_use]
pub fn scenario_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Every scenario of the suite.
///
/// # Errors
///
/// As [`load_dir`]: a file that does not parse, or a scenario that breaks the format's
/// rules.
pub fn scenarios() -> Result<Vec<Scenario>, String> {
    load_dir(&scenario_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file parses and keeps the format's rules; and the decision table is covered:
    /// each row at ages 0, W-1, W and W+1, plain and forced, in Strict and Recover mode.
    #[test]
    fn every_scenario_loads_and_the_table_is_covered() {
        let scenarios = scenarios().unwrap();
        for row in ["current", "previous", "last", "older", "future"] {
            for mode in ["strict", "recover"] {
                for age in ["0", "W-1", "W", "W+1"] {
                    for forced in ["", "/unbatch"] {
                        let name = format!("table/{row}/{mode}/age {age}{forced}");
                        assert!(
                            scenarios.iter().any(|s| s.name == name),
                            "{name} is missing"
                        );
                    }
                }
            }
        }
        for need in [Need::Faults, Need::Race, Need::Patience] {
            assert!(
                scenarios.iter().any(|s| s.needs.contains(&need)),
                "no scenario needs {}",
                need.as_str()
            );
        }
    }

    #[test]
    fn a_scenario_breaking_the_format_is_refused() {
        let dir = std::env::temp_dir().join(format!("rotauth-parity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            // A fault without `needs`.
            r#"[{"name": "a", "proves": "", "steps": [{"at": 0, "sign_in": true},
                {"at": 1, "request": {"token": "T(0)"}, "fault": "load_fails",
                 "expect": {"status": 503, "token": "none", "retry_after": "1"}}]}]"#,
            // A 503 without Retry-After.
            r#"[{"name": "a", "proves": "", "needs": ["faults"], "steps": [{"at": 0, "sign_in": true},
                {"at": 1, "request": {"token": "T(0)"}, "fault": "load_fails",
                 "expect": {"status": 503, "token": "none"}}]}]"#,
            // A refusal that expects a token.
            r#"[{"name": "a", "proves": "", "steps": [{"at": 0, "sign_in": true},
                {"at": 1, "request": {"token": "T(0)"}, "expect": {"status": 401, "token": "T(0)"}}]}]"#,
            // Time going back.
            r#"[{"name": "a", "proves": "", "steps": [{"at": 5, "sign_in": true},
                {"at": 1, "request": {"token": "T(0)"}, "expect": {"status": 200, "token": "blank"}}]}]"#,
            // No sign-in first.
            r#"[{"name": "a", "proves": "", "steps": [
                {"at": 1, "request": {"token": "T(0)"}, "expect": {"status": 200, "token": "blank"}}]}]"#,
            // An unknown field.
            r#"[{"name": "a", "proves": "", "steps": [{"at": 0, "sign_in": true, "typo": 1}]}]"#,
            // A token that is not T(k).
            r#"[{"name": "a", "proves": "", "steps": [{"at": 0, "sign_in": true},
                {"at": 1, "request": {"token": "T(x)"}, "expect": {"status": 401, "token": "none"}}]}]"#,
        ];
        for (i, case) in cases.iter().enumerate() {
            let file = dir.join("case.json");
            std::fs::write(&file, case).unwrap();
            assert!(load_dir(&dir).is_err(), "case {i} was accepted");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
