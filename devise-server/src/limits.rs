//! What bounds the work an anonymous client can cause: the limits the command line sets
//! (with the time a stopping server gives its requests), and sign-in and sign-up
//! throttling.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as _;

use crate::email::normalize_email;

/// What bounds the work an anonymous client can cause.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Password hashes (sign-up, sign-in, password checks) running at once; the others
    /// wait for a permit without holding any argon2 memory. The number of cores by default.
    pub concurrent_hashes: usize,
    /// Sign-ins and sign-ups per minute from one client address (burst of as many); `0`: off.
    /// An IPv6 client is its /64 prefix.
    pub per_address_per_minute: u32,
    /// Sign-ins and sign-ups per minute from one client address for one email (burst of as
    /// many); `0`: off. Counted per address, never per account alone, so that guesses at
    /// someone's password from elsewhere never lock the owner out.
    pub per_address_account_per_minute: u32,
    /// Open connections at most; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// Time a connection has to send a complete request head, and also how long a
    /// kept-alive connection may sit idle before its next request (hyper's header-read
    /// timer runs from the moment the server waits for a request head).
    pub header_read_timeout: Duration,
    /// Time a request has from its head to its response (a slow body included).
    pub request_timeout: Duration,
    /// After a stop signal: how long the server keeps accepting and serving with
    /// `GET /readyz` answering 503, so that a load balancer's checks see it leave before
    /// its listener closes. Zero by default: the listener closes at once.
    pub shutdown_delay: Duration,
    /// Then, with the listener closed: how long the requests in flight have to be
    /// answered. Past it the server exits anyway and logs how many were cut off.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrent_hashes: std::thread::available_parallelism().map_or(1, usize::from),
            per_address_per_minute: 60,
            per_address_account_per_minute: 10,
            max_connections: 25_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Who a throttled request counts against: its client's address ([`source`]), `None` when
/// the peer is unknown (all such requests count as one address).
type Source = Option<IpAddr>;

/// The bits of an IPv6 address that name its /64 network.
const IPV6_PREFIX_64: u128 = 0xffff_ffff_ffff_ffff_0000_0000_0000_0000;

/// The part of a client address that stands for one client: an IPv4 address as it is, an
/// IPv6 address by its /64 prefix (one host is usually given a whole /64, and can pick a
/// new address in it for every request), an IPv4-mapped IPv6 address as its IPv4 address.
pub(crate) fn source(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & IPV6_PREFIX_64)),
        },
    }
}

/// Sign-in and sign-up throttling with governor's GCRA, keyed by client address and by
/// (client address, email). The address is checked first, so a flood of made-up emails
/// from one address stops before it fills the per-(address, email) table.
///
/// Nothing is counted per email alone: that would let anyone lock an account's owner out
/// by guessing its password from elsewhere. Guessing one account's password from many
/// addresses is bounded by the per-address quota of each.
pub(crate) struct Throttle {
    per_address: Option<governor::DefaultKeyedRateLimiter<Source>>,
    per_address_account: Option<governor::DefaultKeyedRateLimiter<(Source, String)>>,
}

impl Throttle {
    pub(crate) fn new(limits: &Limits) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(governor::Quota::per_minute);
        Self {
            per_address: quota(limits.per_address_per_minute).map(governor::RateLimiter::keyed),
            per_address_account: quota(limits.per_address_account_per_minute)
                .map(governor::RateLimiter::keyed),
        }
    }

    /// `Err(wait)` when the address, or the address for this email, is over its quota.
    /// The email is folded with [`normalize_email`], as accounts are looked up.
    pub(crate) fn check(&self, address: Option<IpAddr>, email: &str) -> Result<(), Duration> {
        let from: Source = address.map(source);
        if let Some(limiter) = &self.per_address {
            limiter
                .check_key(&from)
                .map_err(|n| n.wait_time_from(limiter.clock().now()))?;
        }
        if let Some(limiter) = &self.per_address_account {
            limiter
                .check_key(&(from, normalize_email(email)))
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
        if let Some(limiter) = &self.per_address_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::IpAddr;

    use super::{Limits, Throttle, source};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_its_64_prefix_and_a_mapped_ipv4_its_ipv4_address() {
        assert_eq!(source(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            source(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            source(ip("2001:db8:1:2::1")),
            source(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(source(ip("2001:db8:1:2::1")), source(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn guesses_from_one_address_never_refuse_the_account_from_another() {
        let throttle = Throttle::new(&Limits {
            per_address_per_minute: 100,
            per_address_account_per_minute: 3,
            ..Limits::default()
        });
        let attacker = Some(ip("2001:db8:bad::1"));
        for _ in 0..3 {
            assert!(throttle.check(attacker, "owner@example.com").is_ok());
        }
        // The attacker is refused for this account, however spelt, from anywhere in its /64.
        assert!(throttle.check(attacker, " OWNER@example.com").is_err());
        assert!(
            throttle
                .check(Some(ip("2001:db8:bad::2")), "owner@example.com")
                .is_err()
        );
        // Another account from the attacker's address, and the account from elsewhere, are not.
        assert!(throttle.check(attacker, "other@example.com").is_ok());
        assert!(
            throttle
                .check(Some(ip("2001:db8:600d::1")), "owner@example.com")
                .is_ok()
        );
        assert!(
            throttle
                .check(Some(ip("192.0.2.1")), "Owner@Example.com")
                .is_ok()
        );
    }

    #[test]
    fn an_address_is_refused_past_its_quota_whatever_the_emails() {
        let throttle = Throttle::new(&Limits {
            per_address_per_minute: 2,
            per_address_account_per_minute: 0,
            ..Limits::default()
        });
        let from = Some(ip("192.0.2.1"));
        assert!(throttle.check(from, "a@example.com").is_ok());
        assert!(throttle.check(from, "b@example.com").is_ok());
        let wait = throttle.check(from, "c@example.com").unwrap_err();
        assert!(wait.as_secs() <= 30, "{wait:?}");
        assert!(
            throttle
                .check(Some(ip("192.0.2.2")), "c@example.com")
                .is_ok()
        );
    }
}
