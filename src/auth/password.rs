//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
//! Hashing takes tens of milliseconds of CPU, so it runs in `spawn_blocking`,
//! never on the async workers.

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 128;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a new password is not acceptable, in words for the form.
pub fn check_strength(password: &str, email: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err("Use at least 10 characters.");
    }
    if chars > MAX_LENGTH {
        return Err("Use at most 128 characters.");
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err("Don't use your email address as your password.");
    }
    Ok(())
}

/// At most this many hashes run at once (each takes 19 MiB and a core for
/// tens of milliseconds); a flood of sign-ups queues instead of exhausting memory.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    tokio::sync::Semaphore::new(cores * 2)
});

pub async fn hash(password: String) -> anyhow::Result<String> {
    let _permit = HASHING
        .acquire()
        .await
        .context("password hashing limiter")?;
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .context("password hashing task")?
}

/// Checks `password` against a stored PHC string. With `None` it still does the
/// work of a verification, so an unknown email takes as long as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    let _permit = HASHING
        .acquire()
        .await
        .context("password hashing limiter")?;
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
        let ok = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .context("password verification task")?
}

/// A hash, with our parameters, of a random password nobody knows: verifying
/// against it costs what a real verification costs.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let secret: [u8; 32] = rand::random();
    argon2()
        .hash_password(&secret)
        .expect("hashing random bytes")
        .to_string()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            verify("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn strength_rules_say_why() {
        assert_eq!(
            check_strength("short", "a@b.c"),
            Err("Use at least 10 characters.")
        );
        assert_eq!(
            check_strength("me@example.com", "me@example.com"),
            Err("Don't use your email address as your password.")
        );
        assert!(check_strength("a long enough passphrase", "a@b.c").is_ok());
    }
}
