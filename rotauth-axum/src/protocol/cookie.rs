//! Credentials in an httpOnly cookie, for browser apps, with CSRF protection built in.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::header::{COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use zeroize::Zeroizing;

use super::csrf::{Forbidden, OriginRules, constant_time_eq, is_safe};
use super::{Protocol, header_text, json_response, no_store};
use rotauth::exchange::{Refusal, Reply};

use crate::request::{Authenticated, Credentials};

/// The request header that carries the double-submit token.
const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The `SameSite` attribute of the cookies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (a link to the app keeps the user
    /// signed in), not on their subrequests or forms that POST.
    #[default]
    Lax,
    /// Never sent on a request another site started.
    Strict,
}

/// A cookie name that is not an RFC 6265 token, or names both cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidCookieName;

impl std::fmt::Display for InvalidCookieName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a cookie name must be a non-empty token, and the two names must differ")
    }
}

impl std::error::Error for InvalidCookieName {}

/// Credentials in one httpOnly cookie, for browser apps: scripts never see the token, and a
/// late refused response never logs the user out.
///
/// - Requests carry the cookie `__Host-rotauth=<client id>.<token>` (the name is
///   configurable, [`name`](Self::name)). One `Cookie` header may carry many cookies,
///   and a request many `Cookie` headers: every `name=value` pair is read, split at its
///   first `=`, name and value trimmed of blanks; pairs of other names are ignored. When
///   the name appears more than once with values that differ (a cookie another subdomain
///   or a script tossed in beside the real one), the request is refused as
///   [`MalformedCredentials`](Refusal::MalformedCredentials): nobody gets to pick which
///   one counts. No pair, or an empty value, is
///   [`MissingCredentials`](Refusal::MissingCredentials); a value not `<client id>.<token>`
///   (quoted values included, a blank after the dot included) is malformed.
/// - Before the credentials are read, an unsafe request (not `GET`, `HEAD` or `OPTIONS`)
///   must show it comes from the app ([`Protocol::screen`]): its `Origin` is the request's
///   own (`Host`) or an [allowed](Self::allow_origin) one; without `Origin`,
///   `Sec-Fetch-Site` is `same-origin` or `none` (or `same-site`,
///   [`allow_same_site`](Self::allow_same_site)); with neither, it is refused unless
///   [`allow_unknown_origin`](Self::allow_unknown_origin). With
///   [`double_submit`](Self::double_submit), it also carries `X-CSRF-Token` equal to the
///   readable cookie `__Host-rotauth-csrf`, which holds the session's client id. Else
///   403 `{"errors":["forbidden"],"reason":"…"}` ([`Forbidden`]): no rotation is spent,
///   the cookie stays.
/// - A response that carries a token sets the cookie (`Path=/; Expires=<the session's
///   expiry>; Secure; HttpOnly; SameSite=Lax`, or `Strict`) and `Cache-Control:
///   no-store`. Every cookie is `Secure` with `Path=/` and no `Domain`, the rules of the
///   `__Host-` prefix, so any name keeps them. A batch response sets nothing: the browser
///   keeps what it has. `Expires`, not `Max-Age`: the reply knows when the session ends,
///   not what time the authenticator's clock says it is now.
/// - A refused request gets 401 `{"errors":["unauthorized"]}` and keeps the cookie: a
///   late 401 (a token the session has rotated past) must not wipe the cookie a newer
///   response just set. Only a revocation ([`Refusal::Revoked`], the session is gone)
///   and sign-out ([`Protocol::sign_out_headers`]) clear it.
///
/// ```
/// use rotauth_axum::{CookieProtocol, SameSite};
/// let protocol = CookieProtocol::new()
///     .same_site(SameSite::Strict)
///     .allow_origin("https://admin.example.com")
///     .double_submit(true);
/// # let _ = protocol;
/// ```
#[derive(Clone, Debug)]
pub struct CookieProtocol {
    name: Arc<str>,
    csrf_name: Arc<str>,
    same_site: SameSite,
    origins: OriginRules,
    double_submit: bool,
}

impl Default for CookieProtocol {
    fn default() -> Self {
        Self {
            name: Arc::from(Self::NAME),
            csrf_name: Arc::from(Self::CSRF_NAME),
            same_site: SameSite::Lax,
            origins: OriginRules::default(),
            double_submit: false,
        }
    }
}

impl CookieProtocol {
    /// The credentials cookie's name unless set.
    pub const NAME: &'static str = "__Host-rotauth";
    /// The double-submit cookie's name unless set.
    pub const CSRF_NAME: &'static str = "__Host-rotauth-csrf";
    /// The header that carries the double-submit token.
    pub const CSRF_HEADER: &'static str = "x-csrf-token";

    /// The protocol: cookie `__Host-rotauth`, `SameSite=Lax`, no origin allowed but the
    /// request's own, no double-submit token.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the credentials cookie and the double-submit cookie. Keep the `__Host-`
    /// prefix in production: browsers then refuse the cookie from a subdomain or over
    /// plain HTTP.
    ///
    /// # Errors
    ///
    /// [`InvalidCookieName`] when a name is empty or not an RFC 6265 token, or both are
    /// the same.
    pub fn name(mut self, name: &str, csrf_name: &str) -> Result<Self, InvalidCookieName> {
        if !is_token(name) || !is_token(csrf_name) || name == csrf_name {
            return Err(InvalidCookieName);
        }
        self.name = Arc::from(name);
        self.csrf_name = Arc::from(csrf_name);
        Ok(self)
    }

    /// The cookies' `SameSite`.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Lets unsafe requests from `origin` (`https://admin.example.com`: scheme, host and
    /// port if not the default, no path) through, besides the request's own.
    #[must_use]
    pub fn allow_origin(mut self, origin: &str) -> Self {
        let mut allowed = self.origins.allowed.to_vec();
        allowed.push(origin.trim().trim_end_matches('/').to_ascii_lowercase());
        self.origins.allowed = allowed.into();
        self
    }

    /// Lets an unsafe request without `Origin` whose `Sec-Fetch-Site` is `same-site` (a
    /// sibling subdomain) through.
    #[must_use]
    pub fn allow_same_site(mut self, allow: bool) -> Self {
        self.origins.same_site = allow;
        self
    }

    /// Lets an unsafe request with neither `Origin` nor `Sec-Fetch-Site` through: for
    /// clients that are not browsers (every browser of the last years sends one of them).
    #[must_use]
    pub fn allow_unknown_origin(mut self, allow: bool) -> Self {
        self.origins.unknown_origin = allow;
        self
    }

    /// Requires unsafe requests to carry `X-CSRF-Token` equal to the readable cookie the
    /// protocol sets beside the credentials (the session's client id, which no other site
    /// can read), for apps that want a token on top of the origin checks.
    #[must_use]
    pub fn double_submit(mut self, on: bool) -> Self {
        self.double_submit = on;
        self
    }

    /// The value of the `Cookie` header a browser sends with these credentials, kept in a
    /// wiped buffer.
    #[must_use]
    pub fn cookie_header(
        &self,
        client_id: &rotauth::ClientId,
        token: &rotauth::Token,
    ) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}={client_id}.{}",
            self.name,
            token.to_text().as_str()
        ))
    }

    /// Appends the `Set-Cookie` headers that clear both cookies.
    pub fn clear(&self, headers: &mut HeaderMap) {
        for (name, http_only) in [(&self.name, true), (&self.csrf_name, false)] {
            let cookie = format!(
                "{name}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{}",
                self.attributes(http_only)
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.append(SET_COOKIE, value);
            }
        }
    }

    /// `; Secure[; HttpOnly]; SameSite=…`
    fn attributes(&self, http_only: bool) -> String {
        let same_site = match self.same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        };
        let http_only = if http_only { "; HttpOnly" } else { "" };
        format!("; Secure{http_only}; SameSite={same_site}")
    }

    /// The one value of the cookie `name` among the request's cookies (see the type's
    /// documentation for the rule).
    fn cookie<'a>(&self, parts: &'a Parts, name: &str) -> Result<Option<&'a [u8]>, Refusal> {
        let mut found: Option<&[u8]> = None;
        for header in parts.headers.get_all(COOKIE) {
            for pair in header.as_bytes().split(|&b| b == b';') {
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let (key, value) = pair.split_at(eq);
                if trim(key) != name.as_bytes() {
                    continue;
                }
                let value = trim(value.get(1..).unwrap_or_default());
                match found {
                    Some(seen) if seen != value => return Err(Refusal::MalformedCredentials),
                    _ => found = Some(value),
                }
            }
        }
        Ok(found.filter(|value| !value.is_empty()))
    }
}

impl Protocol for CookieProtocol {
    /// Both cookies cleared.
    fn sign_out_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.clear(&mut headers);
        headers
    }

    fn screen(&self, parts: &Parts) -> Result<(), Forbidden> {
        if is_safe(&parts.method) {
            return Ok(());
        }
        self.origins.check(parts)?;
        if self.double_submit {
            let header = header_text(&parts.headers, &CSRF_HEADER).ok_or(Forbidden::CsrfToken)?;
            let cookie = self
                .cookie(parts, &self.csrf_name)
                .ok()
                .flatten()
                .ok_or(Forbidden::CsrfToken)?;
            // The token is the session's client id: one tossed in by a sibling subdomain
            // for a session of its own does not pass with this session's cookie.
            let client = self
                .cookie(parts, &self.name)
                .ok()
                .flatten()
                .and_then(|value| value.split(|&b| b == b'.').next())
                .unwrap_or_default();
            if !constant_time_eq(header.as_bytes(), cookie) || !constant_time_eq(cookie, client) {
                return Err(Forbidden::CsrfToken);
            }
        }
        Ok(())
    }

    fn credentials(&self, parts: &Parts) -> Result<Credentials, Refusal> {
        let value = self
            .cookie(parts, &self.name)?
            .ok_or(Refusal::MissingCredentials)?;
        let value = std::str::from_utf8(value).map_err(|_| Refusal::MalformedCredentials)?;
        let (client, token) = value.split_once('.').ok_or(Refusal::MalformedCredentials)?;
        if token.starts_with(char::is_whitespace) {
            return Err(Refusal::MalformedCredentials);
        }
        let client_id = client.parse().map_err(|_| Refusal::MalformedCredentials)?;
        Ok(Credentials {
            client_id,
            token: Zeroizing::new(token.to_owned()),
            uid: None,
        })
    }

    fn write_reply(&self, who: &Authenticated, reply: &Reply, headers: &mut HeaderMap) {
        let Some(token) = reply.token() else {
            return;
        };
        let expires = httpdate::fmt_http_date(system_time(reply.expires_at()));
        let cookie = Zeroizing::new(format!(
            "{}={}.{}; Path=/; Expires={expires}{}",
            self.name,
            who.client_id,
            token.to_text().as_str(),
            self.attributes(true)
        ));
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, value);
            no_store(headers);
        }
        if self.double_submit {
            let csrf = format!(
                "{}={}; Path=/; Expires={expires}{}",
                self.csrf_name,
                who.client_id,
                self.attributes(false)
            );
            if let Ok(value) = HeaderValue::from_str(&csrf) {
                headers.append(SET_COOKIE, value);
            }
        }
    }

    fn refused(&self, refusal: &Refusal) -> Response<Body> {
        let mut response =
            json_response(StatusCode::UNAUTHORIZED, r#"{"errors":["unauthorized"]}"#);
        if let Refusal::Revoked(_) = refusal {
            self.clear(response.headers_mut());
        }
        response
    }
}

/// The last instant an HTTP date can name (9999-12-31T23:59:59Z), in Unix milliseconds.
const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_000;

/// `at` as a time an HTTP date can name: one after the year 9999 is clamped to it (`httpdate`
/// panics past it, and a session that long-lived never ends in a browser anyway).
fn system_time(at: rotauth::Timestamp) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(
            at.unix_millis().min(LAST_HTTP_DATE_MS),
        ))
        .unwrap_or(UNIX_EPOCH)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Whether `name` is an RFC 6265 cookie name (an RFC 2616 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn an_expiry_past_the_year_9999_is_clamped_not_a_panic() {
        let who = Authenticated {
            client_id: "AAAAAAAAAAAAAAAAAAAAAA".parse().unwrap(),
            user_id: "u".to_owned(),
            uid: "u".to_owned(),
        };
        let reply = Reply::NewToken {
            token: rotauth::Token::from_bytes(&[1; rotauth::TOKEN_LEN]).unwrap(),
            expires_at: rotauth::Timestamp::from_unix_millis(u64::MAX),
        };
        let mut headers = HeaderMap::new();
        CookieProtocol::new().write_reply(&who, &reply, &mut headers);
        let set = headers[SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("; Expires=Fri, 31 Dec 9999 23:59:59 GMT;"),
            "{set}"
        );
    }
}
