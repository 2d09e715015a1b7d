//! Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device
//! Cookies"): a browser that signs in (or signs up) successfully gets a
//! random token in a long-lived, HttpOnly cookie; the database keeps only its
//! SHA-256, per account it signed in to (`db::users::remember_device`).
//!
//! Sign-in then tells a known device from a stranger: a known device is held
//! only by its own failures (`SIGNIN_MAX_FAILURES_PER_DEVICE`), never by the
//! limits on failures from everywhere, so nobody can lock the owner out of a
//! browser they signed in with before. A stolen cookie is worth one device's
//! few guesses and nothing else, and only until the owner signs in again:
//! every successful sign-in issues a new token and retires the old one. A
//! password change forgets every device of the account but the browser that
//! changed it. This module only makes and reads the cookie; the decision is
//! `web::auth::signin`'s.

use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "stagepass_device";

/// The browser's device token, as found in (or put into) its cookie.
pub struct DeviceCookie(String);

// Never print the token.
impl std::fmt::Debug for DeviceCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCookie(..)")
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DeviceCookie {
    /// A fresh token: 32 random bytes.
    pub fn new() -> Self {
        DeviceCookie(to_hex(&rand::random::<[u8; 32]>()))
    }

    /// The request's device cookie, if it has a well-formed one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        super::cookie(headers, COOKIE)
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|v| DeviceCookie(v.to_ascii_lowercase()))
    }

    /// What the database keeps.
    pub fn hash(&self) -> String {
        to_hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// `Set-Cookie` for a year (a new token at every sign-in).
    pub fn set_cookie(&self, secure: bool) -> HeaderValue {
        let max_age = crate::db::users::DEVICE_REMEMBERED_DAYS * 24 * 3600;
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.0
        ))
        .expect("hex and fixed attributes make a valid header")
    }
}

impl Default for DeviceCookie {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn the_cookie_round_trips_and_only_its_hash_is_kept() {
        let device = DeviceCookie::new();
        let set = device.set_cookie(true).to_str().unwrap().to_owned();
        assert!(set.contains("HttpOnly") && set.contains("Secure"), "{set}");
        let pair = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        let read = DeviceCookie::from_headers(&headers).unwrap();
        assert_eq!(read.hash(), device.hash());
        assert_ne!(read.hash(), pair.split_once('=').unwrap().1);
        assert!(!format!("{read:?}").contains(&pair[COOKIE.len() + 1..]));

        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("stagepass_device=nope"),
        );
        assert!(DeviceCookie::from_headers(&headers).is_none());
    }
}
