//! What bounds the work an anonymous client can cause: the limits the command line sets,
//! and sign-in and sign-up throttling.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as _;

/// What bounds the work an anonymous client can cause.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Password hashes (sign-up, sign-in, password checks) running at once; the others
    /// wait for a permit without holding any argon2 memory. The number of cores by default.
    pub concurrent_hashes: usize,
    /// Sign-ins and sign-ups per minute from one client address (burst of as many); `0`: off.
    pub per_address_per_minute: u32,
    /// Sign-ins and sign-ups per minute for one email (burst of as many); `0`: off.
    pub per_account_per_minute: u32,
    /// Open connections at most; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// Time a connection has to send a complete request head, and also how long a
    /// kept-alive connection may sit idle before its next request (hyper's header-read
    /// timer runs from the moment the server waits for a request head).
    pub header_read_timeout: Duration,
    /// Time a request has from its head to its response (a slow body included).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent_hashes: std::thread::available_parallelism().map_or(1, usize::from),
            per_address_per_minute: 60,
            per_account_per_minute: 10,
            max_connections: 25_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Sign-in and sign-up throttling with governor's GCRA, keyed by client address and by
/// email. An address is checked first, so a flood of made-up emails from one address
/// stops before it fills the per-account table.
pub(crate) struct Throttle {
    per_address: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    per_account: Option<governor::DefaultKeyedRateLimiter<String>>,
}

impl Throttle {
    pub(crate) fn new(limits: &Limits) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(governor::Quota::per_minute);
        Self {
            per_address: quota(limits.per_address_per_minute).map(governor::RateLimiter::keyed),
            per_account: quota(limits.per_account_per_minute).map(governor::RateLimiter::keyed),
        }
    }

    /// `Err(wait)` when the address or the account is over its quota.
    pub(crate) fn check(&self, address: Option<IpAddr>, email: &str) -> Result<(), Duration> {
        if let (Some(limiter), Some(address)) = (&self.per_address, address) {
            limiter
                .check_key(&address)
                .map_err(|n| n.wait_time_from(limiter.clock().now()))?;
        }
        if let Some(limiter) = &self.per_account {
            limiter
                .check_key(&email.to_owned())
                .map_err(|n| n.wait_time_from(limiter.clock().now()))?;
        }
        Ok(())
    }

    /// Forgets keys whose quota has fully recovered, so the tables stay as small as the
    /// set of recently active addresses and accounts.
    pub(crate) fn purge(&self) {
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
