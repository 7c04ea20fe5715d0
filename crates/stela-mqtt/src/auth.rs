//! The authentication hook of the broker.
//!
//! Every CONNECT, SUBSCRIBE and PUBLISH asks an [`Authenticator`]. The identity issue will
//! implement it on the same layer as HTTP (DIDs, credentials, roles); until then there are
//! two implementations: [`AllowAll`] (anonymous access, the default) and
//! [`StaticCredentials`] (one configured username/password, anonymous access off).

use std::fmt;

/// What a client presented in its CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// The answer to a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Accepted; the string names the principal in logs (the username, or `anonymous`).
    Accept(String),
    /// Wrong or missing credentials (CONNACK return code 4).
    BadCredentials,
    /// Known but not allowed to connect (CONNACK return code 5).
    NotAuthorized,
}

/// Decides who may connect, subscribe and publish.
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Checks the credentials of a CONNECT.
    fn authenticate(&self, request: &ConnectRequest<'_>) -> AuthDecision;
    /// Whether `principal` may subscribe to `topic` (a refusal is SUBACK failure 0x80).
    fn may_subscribe(&self, principal: &str, topic: &str) -> bool {
        let _ = (principal, topic);
        true
    }
    /// Whether `principal` may publish (create) on `topic`; refused messages are dropped
    /// and counted as rejected.
    fn may_publish(&self, principal: &str, topic: &str) -> bool {
        let _ = (principal, topic);
        true
    }
}

/// Anonymous access: everyone may connect, subscribe and publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, request: &ConnectRequest<'_>) -> AuthDecision {
        AuthDecision::Accept(request.username.unwrap_or("anonymous").to_owned())
    }
}

/// One configured username and password; connections without them are refused.
pub struct StaticCredentials {
    username: String,
    password: String,
}

impl StaticCredentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> StaticCredentials {
        StaticCredentials { username: username.into(), password: password.into() }
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Compares without an early exit, so that the time taken does not tell how many leading
/// bytes matched.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (index, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

impl Authenticator for StaticCredentials {
    fn authenticate(&self, request: &ConnectRequest<'_>) -> AuthDecision {
        match (request.username, request.password) {
            (Some(username), Some(password))
                if same_bytes(username.as_bytes(), self.username.as_bytes())
                    & same_bytes(password.as_bytes(), self.password.as_bytes()) =>
            {
                AuthDecision::Accept(username.to_owned())
            }
            _ => AuthDecision::BadCredentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(username: Option<&'a str>, password: Option<&'a str>) -> ConnectRequest<'a> {
        ConnectRequest { client_id: "c", username, password }
    }

    #[test]
    fn static_credentials_accept_only_the_configured_pair() {
        let auth = StaticCredentials::new("device", "s3cret");
        assert_eq!(
            auth.authenticate(&request(Some("device"), Some("s3cret"))),
            AuthDecision::Accept("device".into())
        );
        for (username, password) in [
            (None, None),
            (Some("device"), None),
            (Some("device"), Some("s3cre")),
            (Some("device"), Some("s3cret!")),
            (Some("other"), Some("s3cret")),
        ] {
            assert_eq!(
                auth.authenticate(&request(username, password)),
                AuthDecision::BadCredentials,
                "{username:?} {password:?}"
            );
        }
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn allow_all_names_the_principal() {
        assert_eq!(
            AllowAll.authenticate(&request(None, None)),
            AuthDecision::Accept("anonymous".into())
        );
        assert_eq!(
            AllowAll.authenticate(&request(Some("u"), None)),
            AuthDecision::Accept("u".into())
        );
    }
}
