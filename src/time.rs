//! Time as the host tells it: Unix milliseconds, never read from a clock here.

use core::fmt;
use core::time::Duration;

/// A point in time, in milliseconds since the Unix epoch, supplied by the host.
///
/// The host's clock is not required to be monotonic. rotauth never subtracts two
/// timestamps without saturating: a `now` that lies before a session's `rotated_at`
/// (a clock stepped back, a replica running behind) counts as age zero, which is
/// inside the batch window. Every value from `0` to `u64::MAX` is valid input.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);
    /// The last representable instant; a session expiring here never expires.
    pub const MAX: Self = Self(u64::MAX);

    /// A timestamp from Unix milliseconds.
    #[must_use]
    pub const fn from_unix_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Unix milliseconds.
    #[must_use]
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// Whole Unix seconds, rounded down (devise's `expiry` header).
    #[must_use]
    pub const fn unix_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The current system time. Times before the epoch read as the epoch.
    #[cfg(feature = "std")]
    #[must_use]
    pub fn now() -> Self {
        Self::from(std::time::SystemTime::now())
    }

    /// `self + duration`, stopping at [`Timestamp::MAX`].
    #[must_use]
    pub const fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis(duration)))
    }

    /// `self + millis`, stopping at [`Timestamp::MAX`].
    #[must_use]
    pub(crate) const fn saturating_add_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self`; zero if `earlier` is not earlier.
    #[must_use]
    pub const fn millis_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Whole milliseconds in `duration`, saturating at `u64::MAX` (about 584 million years).
pub(crate) const fn millis(duration: Duration) -> u64 {
    let ms = duration.as_millis();
    if ms > u64::MAX as u128 {
        u64::MAX
    } else {
        #[allow(clippy::cast_possible_truncation)] // checked just above
        {
            ms as u64
        }
    }
}

/// A system time in whole milliseconds, rounded down. A time before the Unix epoch (a clock
/// set wrong) becomes [`Timestamp::EPOCH`], and one past [`Timestamp::MAX`] becomes `MAX`:
/// rotauth's timestamps cannot be negative, and every value is valid input.
#[cfg(feature = "std")]
impl From<std::time::SystemTime> for Timestamp {
    fn from(time: std::time::SystemTime) -> Self {
        let since_epoch = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(millis(since_epoch))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_at_both_ends() {
        assert_eq!(
            Timestamp::MAX.saturating_add(Duration::from_secs(1)),
            Timestamp::MAX
        );
        assert_eq!(Timestamp::EPOCH.millis_since(Timestamp::MAX), 0);
        assert_eq!(Timestamp::MAX.millis_since(Timestamp::EPOCH), u64::MAX);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(millis(Duration::from_micros(1999)), 1);
    }

    #[cfg(feature = "std")]
    #[test]
    fn system_time_before_the_epoch_is_the_epoch() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let after = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(
            Timestamp::from(after(1_700_000_000_123)),
            Timestamp::from_unix_millis(1_700_000_000_123)
        );
        assert_eq!(
            Timestamp::from(UNIX_EPOCH + Duration::from_micros(1_999)),
            Timestamp::from_unix_millis(1)
        );
        assert_eq!(Timestamp::from(UNIX_EPOCH), Timestamp::EPOCH);
        assert_eq!(
            Timestamp::from(UNIX_EPOCH - Duration::from_secs(3600)),
            Timestamp::EPOCH
        );
        assert!(
            Timestamp::from(SystemTime::now()) > Timestamp::from_unix_millis(1_700_000_000_000)
        );
    }

    #[test]
    fn seconds_round_down() {
        assert_eq!(Timestamp::from_unix_millis(1_999).unix_secs(), 1);
        assert_eq!(Timestamp::from_unix_millis(999).unix_secs(), 0);
    }
}
