//! Guests: visitors without an account, watching public streams. A guest is
//! known by a random id in a year-long, HttpOnly cookie (`stagepass_guest`),
//! made the first time they ask for a token. Their LiveKit identity is
//! `guest-{tag}` (`livekit::Participant::Guest`), the tag a hash of the id:
//! everyone in a room sees the identities in it, so the identity must not
//! be the cookie (whoever copied it could take over the guest's place and
//! their free preview). One browser is one viewer in the counts however
//! often it reconnects. What a guest may do is the access rule's
//! (`Access::Guest`), and their tokens are limited per address (`web::watch::token`).

use axum::http::{HeaderMap, HeaderValue};

pub const COOKIE: &str = "stagepass_guest";

/// How long a browser keeps its guest id.
const KEPT_DAYS: i64 = 365;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestId(pub u128);

impl std::fmt::Debug for GuestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestId({})", self.hex())
    }
}

impl GuestId {
    pub fn new() -> Self {
        GuestId(rand::random())
    }

    /// The public tag of this guest: the first 128 bits of the SHA-256 of the id.
    pub fn tag(&self) -> GuestTag {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.hex().as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        GuestTag(u128::from_be_bytes(first))
    }

    /// The id as written in the cookie and the identity: 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Reads the exact form `hex` writes (anything else is not a guest id).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u128::from_str_radix(s, 16).ok().map(GuestId))
            .flatten()
    }

    /// The request's guest id, if it has a well-formed one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        super::cookie(headers, COOKIE).and_then(|v| Self::parse(&v))
    }

    pub fn set_cookie(&self, secure: bool) -> HeaderValue {
        let max_age = KEPT_DAYS * 24 * 3600;
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            self.hex()
        ))
        .expect("hex and fixed attributes make a valid header")
    }
}

/// What others may know of a guest: the tag in their LiveKit identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GuestTag(pub u128);

impl GuestTag {
    /// 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Reads the exact form `hex` writes.
    pub fn parse(s: &str) -> Option<Self> {
        GuestId::parse(s).map(|g| GuestTag(g.0))
    }
}

impl Default for GuestId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_id_reads_back_only_in_its_own_form() {
        let id = GuestId::new();
        assert_eq!(GuestId::parse(&id.hex()), Some(id));
        assert_eq!(GuestId::parse(&id.hex().to_uppercase()), None);
        assert_eq!(GuestId::parse("12"), None);
        assert_eq!(GuestId::parse(&format!("+{}", &id.hex()[1..])), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={}", id.hex()).parse().unwrap(),
        );
        assert_eq!(GuestId::from_headers(&headers), Some(id));
        // The tag is not the id, and is the same every time.
        assert_ne!(id.tag().hex(), id.hex());
        assert_eq!(id.tag(), id.tag());
        assert_eq!(GuestTag::parse(&id.tag().hex()), Some(id.tag()));
    }
}
