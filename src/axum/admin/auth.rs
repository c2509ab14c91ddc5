//! Who may call the admin routes: a bearer token compared in constant time,
//! a user-supplied check, or both.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AdminError;
use crate::secret::Secret;

/// A user-supplied check of a request's head.
pub(super) type Authorize = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// The admin routes' authentication: every request passes the token (when
/// one is set), then the check (when one is set).
pub(super) struct Auth {
    /// The SHA-256 of the token: comparing digests takes the same time
    /// whatever the lengths, and the token itself is not kept.
    token: Option<[u8; 32]>,
    authorize: Option<Authorize>,
}

impl Auth {
    pub(super) fn new(token: Option<&Secret>, authorize: Option<Authorize>) -> Self {
        Self {
            token: token.map(|t| Sha256::digest(t.expose()).into()),
            authorize,
        }
    }

    /// Whether the request may go on.
    pub(super) fn check(&self, parts: &Parts) -> Result<(), AdminError> {
        if let Some(expected) = &self.token {
            let presented = bearer(&parts.headers)?;
            let digest: [u8; 32] = Sha256::digest(presented).into();
            if !bool::from(digest.ct_eq(expected)) {
                return Err(AdminError::InvalidToken);
            }
        }
        if let Some(authorize) = &self.authorize {
            // A check that panics refuses: a bug in it must not open the door
            // nor take the connection down.
            let allowed =
                std::panic::catch_unwind(AssertUnwindSafe(|| authorize(parts))).unwrap_or(false);
            if !allowed {
                return Err(AdminError::Forbidden);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.map(|_| "<redacted>"))
            .field("authorize", &self.authorize.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// The token of the one `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Result<&[u8], AdminError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AdminError::MissingToken)?;
    if values.next().is_some() {
        return Err(AdminError::InvalidToken);
    }
    let bytes = value.as_bytes();
    let space = bytes
        .iter()
        .position(|&b| b == b' ')
        .ok_or(AdminError::MissingToken)?;
    let (scheme, rest) = bytes.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AdminError::MissingToken);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(AdminError::InvalidToken);
    }
    Ok(token)
}

/// The middleware in front of every admin route.
pub(super) async fn require(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match auth.check(&parts) {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: &[&str]) -> Parts {
        let mut builder = http::Request::builder();
        for value in authorization {
            builder = builder.header(AUTHORIZATION, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_the_one_bearer_token_passes() {
        let auth = Auth::new(Some(&Secret::from("a-long-admin-token")), None);
        assert_eq!(auth.check(&parts(&["Bearer a-long-admin-token"])), Ok(()));
        assert_eq!(auth.check(&parts(&["bearer  a-long-admin-token "])), Ok(()));
        assert_eq!(auth.check(&parts(&[])), Err(AdminError::MissingToken));
        assert_eq!(
            auth.check(&parts(&["Basic YTpi"])),
            Err(AdminError::MissingToken)
        );
        assert_eq!(
            auth.check(&parts(&["Bearer"])),
            Err(AdminError::MissingToken)
        );
        assert_eq!(
            auth.check(&parts(&["Bearer "])),
            Err(AdminError::InvalidToken)
        );
        assert_eq!(
            auth.check(&parts(&["Bearer a-long-admin-toke"])),
            Err(AdminError::InvalidToken)
        );
        assert_eq!(
            auth.check(&parts(&["Bearer a-long-admin-tokenX"])),
            Err(AdminError::InvalidToken)
        );
        assert_eq!(
            auth.check(&parts(&[
                "Bearer a-long-admin-token",
                "Bearer a-long-admin-token"
            ])),
            Err(AdminError::InvalidToken),
            "two headers are ambiguous"
        );
        assert!(!format!("{auth:?}").contains("a-long-admin-token"));
    }

    #[test]
    fn the_check_runs_after_the_token_and_a_panic_refuses() {
        let check: Authorize = Arc::new(|parts: &Parts| parts.headers.contains_key("x-admin"));
        let auth = Auth::new(Some(&Secret::from("a-long-admin-token")), Some(check));
        assert_eq!(auth.check(&parts(&[])), Err(AdminError::MissingToken));
        assert_eq!(
            auth.check(&parts(&["Bearer a-long-admin-token"])),
            Err(AdminError::Forbidden)
        );
        let panicking: Authorize = Arc::new(|_: &Parts| panic!("bug in the check"));
        let auth = Auth::new(None, Some(panicking));
        assert_eq!(auth.check(&parts(&[])), Err(AdminError::Forbidden));
    }
}
