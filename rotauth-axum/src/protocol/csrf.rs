//! Cross-site request forgery: which unsafe requests a cookie protocol lets reach the loop.
//!
//! A browser attaches a cookie to every request to its site, whoever made the page that
//! sends it, so a protocol whose credentials travel in a cookie must tell the app's own
//! requests from forged ones before it reads them: a forged request that reached the loop
//! would spend a rotation, and its response (which the forging page cannot read) would
//! carry the session's next token away from the real client.

use std::fmt;
use std::sync::Arc;

use http::header::{HOST, ORIGIN};
use http::request::Parts;
use http::{HeaderName, Method};

use super::header_text;

/// The header the Fetch Metadata standard adds: how the request's initiator relates to
/// its target.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why a request was refused with 403 before its credentials were read: it may be forged
/// by another site. The session was not judged and nothing of it changed; the body of the
/// 403 names the reason ([`as_str`](Self::as_str)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forbidden {
    /// The `Origin` is neither the request's own (its `Host`) nor an allowed one.
    CrossOrigin,
    /// No `Origin`, and `Sec-Fetch-Site` names another site (or the same site, unless
    /// allowed).
    CrossSite,
    /// Neither `Origin` nor `Sec-Fetch-Site`: the request's origin cannot be told (an old
    /// browser, or a client that is not a browser, unless allowed).
    UnknownOrigin,
    /// The double-submit token is missing or does not match.
    CsrfToken,
}

impl Forbidden {
    /// The reason as the 403's body names it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CrossOrigin => "cross_origin",
            Self::CrossSite => "cross_site",
            Self::UnknownOrigin => "unknown_origin",
            Self::CsrfToken => "csrf_token",
        }
    }

    /// The 403's body: `{"errors":["forbidden"],"reason":"<as_str>"}`.
    #[must_use]
    pub const fn body(self) -> &'static str {
        match self {
            Self::CrossOrigin => r#"{"errors":["forbidden"],"reason":"cross_origin"}"#,
            Self::CrossSite => r#"{"errors":["forbidden"],"reason":"cross_site"}"#,
            Self::UnknownOrigin => r#"{"errors":["forbidden"],"reason":"unknown_origin"}"#,
            Self::CsrfToken => r#"{"errors":["forbidden"],"reason":"csrf_token"}"#,
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CrossOrigin => "the request's Origin is not allowed",
            Self::CrossSite => "the request comes from another site",
            Self::UnknownOrigin => "the request's origin cannot be told",
            Self::CsrfToken => "the CSRF token is missing or does not match",
        })
    }
}

/// Which unsafe requests pass: the origin rules. The double-submit token is checked by the
/// protocol, which reads the cookies.
#[derive(Clone, Debug, Default)]
pub(crate) struct OriginRules {
    /// Origins besides the request's own, lowercase, as browsers send them
    /// (`https://admin.example.com`, no path, no trailing slash).
    pub(crate) allowed: Arc<[String]>,
    /// Whether `Sec-Fetch-Site: same-site` passes (subdomains trusted).
    pub(crate) same_site: bool,
    /// Whether a request with neither `Origin` nor `Sec-Fetch-Site` passes.
    pub(crate) unknown_origin: bool,
}

/// Whether a method changes nothing, so that a forged one gains the forger nothing it can
/// read (the browser keeps the response from another origin's script).
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl OriginRules {
    /// Whether an unsafe request may come from where it says it comes from: `Origin` first
    /// (every browser sends it on a cross-origin POST), then `Sec-Fetch-Site`, then the
    /// choice for requests that carry neither.
    pub(crate) fn check(&self, parts: &Parts) -> Result<(), Forbidden> {
        if let Some(origin) = parts.headers.get(ORIGIN) {
            let origin = origin.to_str().map_err(|_| Forbidden::CrossOrigin)?.trim();
            return if self.is_own(origin, parts) || self.is_allowed(origin) {
                Ok(())
            } else {
                Err(Forbidden::CrossOrigin)
            };
        }
        match header_text(&parts.headers, &SEC_FETCH_SITE) {
            Some("same-origin" | "none") => Ok(()),
            Some("same-site") if self.same_site => Ok(()),
            Some(_) => Err(Forbidden::CrossSite),
            None if self.unknown_origin => Ok(()),
            None => Err(Forbidden::UnknownOrigin),
        }
    }

    /// Whether `origin` is `<scheme>://<host>` with the request's own host (its `Host`
    /// header, or the URI's authority as HTTP/2 carries it). The scheme is not compared: a
    /// TLS proxy in front sends the app plain HTTP, and no browser sends a foreign page's
    /// request under the target's host.
    fn is_own(&self, origin: &str, parts: &Parts) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        if !matches!(scheme, "https" | "http") || authority.is_empty() {
            return false;
        }
        let host = header_text(&parts.headers, &HOST)
            .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str));
        host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
    }

    fn is_allowed(&self, origin: &str) -> bool {
        self.allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

/// Whether two byte strings are equal, in a time that depends on their lengths only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        .eq(&0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use http::Request;

    use super::*;

    fn post(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().method("POST").uri("/x");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn origin_is_read_before_fetch_metadata() {
        let rules = OriginRules::default();
        let own = [("host", "app.example"), ("origin", "https://app.example")];
        assert_eq!(rules.check(&post(&own)), Ok(()));
        // A cross-site Origin is refused even when Sec-Fetch-Site would pass.
        let forged = [
            ("host", "app.example"),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(rules.check(&post(&forged)), Err(Forbidden::CrossOrigin));
        for origin in ["null", "app.example", "https://app.example.evil", ""] {
            let parts = post(&[("host", "app.example"), ("origin", origin)]);
            assert_eq!(rules.check(&parts), Err(Forbidden::CrossOrigin), "{origin}");
        }
    }

    #[test]
    fn same_site_passes_only_when_allowed() {
        let parts = post(&[("sec-fetch-site", "same-site")]);
        assert_eq!(
            OriginRules::default().check(&parts),
            Err(Forbidden::CrossSite)
        );
        let rules = OriginRules {
            same_site: true,
            ..OriginRules::default()
        };
        assert_eq!(rules.check(&parts), Ok(()));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
