//! How credentials travel to and from this server: devise's headers, or (`--credentials
//! cookie`) rotauth-axum's httpOnly cookie with its CSRF screening. One type for both, so
//! that the routes are written once; each method hands over to the protocol chosen.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Response};
use rotauth_axum::{
    Authenticated, CookieProtocol, Credentials, DeviseProtocol, Forbidden, Protocol, Refusal,
    Reply, SignedIn,
};

use super::log::{Event, note};
use super::state::AppState;
use crate::db::Database;

/// The protocol the server speaks, chosen at start.
#[derive(Clone, Debug)]
pub enum Transport {
    /// devise_token_auth's headers (the default).
    Devise(DeviseProtocol),
    /// One httpOnly `__Host-` cookie; unsafe requests from another origin are refused.
    Cookie(CookieProtocol),
}

impl Protocol for Transport {
    fn screen(&self, parts: &Parts) -> Result<(), Forbidden> {
        match self {
            Self::Devise(p) => p.screen(parts),
            Self::Cookie(p) => p.screen(parts),
        }
    }

    fn sign_out_headers(&self) -> HeaderMap {
        match self {
            Self::Devise(p) => p.sign_out_headers(),
            Self::Cookie(p) => p.sign_out_headers(),
        }
    }

    fn credentials(&self, parts: &Parts) -> Result<Credentials, Refusal> {
        match self {
            Self::Devise(p) => p.credentials(parts),
            Self::Cookie(p) => p.credentials(parts),
        }
    }

    fn force_rotation(&self, parts: &Parts) -> bool {
        match self {
            Self::Devise(p) => p.force_rotation(parts),
            Self::Cookie(p) => p.force_rotation(parts),
        }
    }

    fn write_reply(&self, who: &Authenticated, reply: &Reply, headers: &mut HeaderMap) {
        match self {
            Self::Devise(p) => p.write_reply(who, reply, headers),
            Self::Cookie(p) => p.write_reply(who, reply, headers),
        }
    }

    fn sign_in_headers(&self, signed_in: &SignedIn) -> HeaderMap {
        match self {
            Self::Devise(p) => p.sign_in_headers(signed_in),
            Self::Cookie(p) => p.sign_in_headers(signed_in),
        }
    }

    fn refused(&self, refusal: &Refusal) -> Response<Body> {
        match self {
            Self::Devise(p) => p.refused(refusal),
            Self::Cookie(p) => p.refused(refusal),
        }
    }

    fn forbidden(&self, why: Forbidden) -> Response<Body> {
        match self {
            Self::Devise(p) => p.forbidden(why),
            Self::Cookie(p) => p.forbidden(why),
        }
    }

    fn unavailable(&self) -> Response<Body> {
        match self {
            Self::Devise(p) => p.unavailable(),
            Self::Cookie(p) => p.unavailable(),
        }
    }
}

/// A sign-up or sign-in request, screened as the protocol screens authenticated ones: in
/// cookie mode a forged cross-site sign-in (login CSRF, which would sign the victim's
/// browser into the forger's account) is answered 403 before the password is checked.
pub(crate) struct Screened;

impl<D: Database> FromRequestParts<AppState<D>> for Screened {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<D>,
    ) -> Result<Self, Self::Rejection> {
        let transport = state.transport();
        transport.screen(parts).map(|()| Self).map_err(|why| {
            note(
                transport.forbidden(why),
                Event::Reject,
                Some(why.to_string()),
            )
        })
    }
}
