//! Authenticated requests: the credentials decided by rotauth-axum, the answer carrying its
//! reply, and the routes that only authenticate (validate, the demo route, sign-out).

use super::*;

/// An accepted request: its user, its session, and what its response carries.
pub(super) struct Authed {
    pub(super) user: User,
    pub(super) client_id: ClientId,
    /// What the stored decision sends; `None` after [`check`], which stores nothing.
    pub(super) reply: Option<Reply>,
    /// What rotauth decided (for the log).
    pub(super) decision: DecisionKind,
    /// Compare-and-swaps lost before the decision held (for the log).
    pub(super) lost_swaps: usize,
}

pub(super) enum AuthError {
    /// No usable credentials, or rotauth refused them (the reason, for the log).
    Unauthorized(String),
    /// The database failed or the request lost too many swaps: 503, no token.
    Unavailable(String),
}

impl AuthError {
    /// The response for an error; `unauthorized` is the route's own 401 body.
    pub(super) fn into_response(self, unauthorized: Response) -> Response {
        match self {
            Self::Unauthorized(reason) => note(unauthorized, "reject", Some(reason)),
            Self::Unavailable(detail) => unavailable(&detail),
        }
    }
}

/// The one place a request's credentials are decided: devise's headers read by
/// rotauth-axum's protocol, then rotauth-axum's loop: the session loaded (and refused if
/// the `uid` is not its owner's email), rotauth's decision stored with compare-and-swap
/// before answering, decided again on a lost swap (`force`: `?unbatch`). The user comes
/// from the session's owner (`"{id} {email}"`), without a query.
pub(super) async fn authenticate<D: Database>(
    state: &AppState<D>,
    parts: &Parts,
    force: bool,
) -> Result<Authed, AuthError> {
    let inner = &state.0;
    let credentials = credentials(state, parts)?;
    match inner
        .auth
        .authenticate(&credentials, state.now(), force)
        .await
    {
        Outcome::Served {
            who,
            reply,
            decision,
            lost_swaps,
        } => {
            inner.metrics.count(decision);
            inner.metrics.conflicts(lost_swaps);
            Ok(Authed {
                user: user_of(&who)?,
                client_id: who.client_id,
                reply: Some(reply),
                decision,
                lost_swaps,
            })
        }
        Outcome::Refused(refusal) => Err(refused(state, refusal)),
        Outcome::Unavailable(why) => Err(unavailable_because(state, why)),
    }
}

/// Whether the request's credentials are accepted, storing nothing and sending no token:
/// sign-out, account deletion, and the check before slow work that commits later. A
/// replay that the policy revokes still deletes its session.
pub(super) async fn check<D: Database>(
    state: &AppState<D>,
    parts: &Parts,
) -> Result<Authed, AuthError> {
    let credentials = credentials(state, parts)?;
    match state.0.auth.check(&credentials, state.now()).await {
        Checked::Accepted { who, decision } => Ok(Authed {
            user: user_of(&who)?,
            client_id: who.client_id,
            reply: None,
            decision,
            lost_swaps: 0,
        }),
        Checked::Refused(refusal) => Err(refused(state, refusal)),
        Checked::Unavailable(why) => Err(unavailable_because(state, why)),
    }
}

pub(super) fn credentials<D: Database>(
    state: &AppState<D>,
    parts: &Parts,
) -> Result<Credentials, AuthError> {
    state
        .0
        .protocol
        .credentials(parts)
        .map_err(|refusal| AuthError::Unauthorized(refusal.to_string()))
}

/// The user a session belongs to.
pub(super) fn user_of(who: &Authenticated) -> Result<User, AuthError> {
    User::from_session_owner(&who.user_id)
        .ok_or_else(|| AuthError::Unavailable("a session's owner is not a user".to_owned()))
}

/// A refusal, counted when rotauth made it.
pub(super) fn refused<D: Database>(state: &AppState<D>, refusal: Refusal) -> AuthError {
    match refusal {
        Refusal::Rejected(_) => state.0.metrics.count(DecisionKind::Reject),
        Refusal::Revoked(_) => state.0.metrics.count(DecisionKind::Revoke),
        _ => {}
    }
    AuthError::Unauthorized(refusal.to_string())
}

/// A 503, counted when the request lost every compare-and-swap it was allowed.
pub(super) fn unavailable_because<D: Database>(state: &AppState<D>, why: Unavailable) -> AuthError {
    if let Unavailable::Contention = why {
        state.0.metrics.exhausted();
    }
    AuthError::Unavailable(why.to_string())
}

impl Authed {
    /// devise's headers for the reply, with the user's email, as it is when the response
    /// is sent, as `uid`; none when nothing was stored.
    pub(super) fn headers<D: Database>(&self, state: &AppState<D>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(reply) = &self.reply {
            let who = Authenticated {
                client_id: self.client_id,
                user_id: self.user.session_owner(),
                uid: self.user.email.clone(),
            };
            state.0.protocol.write_reply(&who, reply, &mut headers);
        }
        headers
    }

    /// `response` with the headers of the reply.
    pub(super) fn answer<D: Database>(&self, state: &AppState<D>, response: Response) -> Response {
        with_headers(response, self.headers(state))
    }

    /// A JSON response with the headers of the reply, logged with the decision.
    pub(super) fn respond<D: Database>(
        &self,
        state: &AppState<D>,
        status: StatusCode,
        body: &Value,
    ) -> Response {
        let detail = (self.lost_swaps > 0)
            .then(|| format!("decided again after CAS conflict x{}", self.lost_swaps));
        note(
            self.answer(state, json_response(status, body)),
            self.decision.as_str(),
            detail,
        )
    }
}

/// Whether the request asks to rotate inside the batch window (`?unbatch=true`).
pub(super) fn force<D: Database>(state: &AppState<D>, parts: &Parts) -> bool {
    state.0.protocol.force_rotation(parts)
}

/// `GET /auth/validate_token`.
pub(super) async fn validate_token<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
) -> Response {
    match authenticate(&state, &parts, force(&state, &parts)).await {
        Ok(authed) => {
            let body = json!({"success": true, "data": user_json(&authed.user)});
            authed.respond(&state, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(errors(
            StatusCode::UNAUTHORIZED,
            "Invalid login credentials",
        )),
    }
}

/// `GET /demo/members_only`: devise_token_auth's demo protected route.
pub(super) async fn members_only<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
) -> Response {
    match authenticate(&state, &parts, force(&state, &parts)).await {
        Ok(authed) => {
            let body = json!({"data": {
                "message": format!("Welcome {}", authed.user.email),
                "user": user_json(&authed.user),
            }});
            authed.respond(&state, StatusCode::OK, &body)
        }
        Err(e) => e.into_response(json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"errors": ["You need to sign in or sign up before continuing."]}),
        )),
    }
}

/// `DELETE /auth/sign_out`: any token the decision accepts (batch ones included) signs the
/// session out; nothing is rotated, and the response carries no auth headers.
pub(super) async fn sign_out<D: Database>(
    State(state): State<AppState<D>>,
    parts: Parts,
) -> Response {
    let not_found = || {
        errors(
            StatusCode::NOT_FOUND,
            "User was not found or was not logged in.",
        )
    };
    let authed = match check(&state, &parts).await {
        Ok(authed) => authed,
        Err(e) => return e.into_response(not_found()),
    };
    match state.0.auth.sign_out(authed.client_id).await {
        Ok(true) => note(
            json_response(StatusCode::OK, &json!({"success": true})),
            "sign_out",
            None,
        ),
        Ok(false) => note(not_found(), "reject", Some("already signed out".to_owned())),
        Err(e) => unavailable(&e),
    }
}
