//! This server's clock: the system clock, shifted by `--clock-offset-ms`; or, in a build
//! with the `test-clock` feature and `--test-clock-file PATH`, the time a test writes into
//! a file, so that a test moves time past a batch window without waiting for it. Without
//! the feature the file clock does not exist: a production build cannot be told to read
//! its time from a file.

use rotauth::Timestamp;

/// Where the server reads the time of every decision.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: i64,
    /// Holds the Unix milliseconds as decimal text.
    #[cfg(feature = "test-clock")]
    file: Option<std::path::PathBuf>,
}

impl Clock {
    /// The system clock shifted by `offset_ms` (signed): instances whose clocks disagree.
    pub fn shifted(offset_ms: i64) -> Self {
        Self {
            offset_ms,
            #[cfg(feature = "test-clock")]
            file: None,
        }
    }

    /// TESTS ONLY: the time written into `path` (Unix milliseconds as decimal text), read
    /// at every decision, then shifted as [`shifted`](Self::shifted) says. A file that
    /// cannot be read as a time is logged as an error, and the system clock read instead.
    #[cfg(feature = "test-clock")]
    pub fn from_file(path: std::path::PathBuf, offset_ms: i64) -> Self {
        Self {
            offset_ms,
            file: Some(path),
        }
    }

    /// The time now, by this clock.
    pub fn now(&self) -> Timestamp {
        let base = self.base().unix_millis();
        let offset = self.offset_ms;
        let shifted = if offset >= 0 {
            base.saturating_add(offset.unsigned_abs())
        } else {
            base.saturating_sub(offset.unsigned_abs())
        };
        Timestamp::from_unix_millis(shifted)
    }

    #[cfg(feature = "test-clock")]
    fn base(&self) -> Timestamp {
        let Some(path) = &self.file else {
            return Timestamp::now();
        };
        match std::fs::read_to_string(path).map(|text| text.trim().parse::<u64>()) {
            Ok(Ok(millis)) => Timestamp::from_unix_millis(millis),
            _ => {
                tracing::error!(path = %path.display(), "--test-clock-file holds no time; the system clock is read");
                Timestamp::now()
            }
        }
    }

    #[cfg(not(feature = "test-clock"))]
    fn base(&self) -> Timestamp {
        Timestamp::now()
    }
}
