//! Moderation: the moderation page and participants panel, bans and timeouts,
//! the audit log, and the moderators' dashboard.
// Being built: routes are in router.rs; handlers answer 404 until implemented.
use crate::error::AppError;
pub async fn page() -> AppError { AppError::NotFound }
pub async fn participants() -> AppError { AppError::NotFound }
pub async fn mute() -> AppError { AppError::NotFound }
pub async fn remove() -> AppError { AppError::NotFound }
pub async fn ban() -> AppError { AppError::NotFound }
pub async fn lift_ban() -> AppError { AppError::NotFound }
pub async fn timeout() -> AppError { AppError::NotFound }
pub async fn audit() -> AppError { AppError::NotFound }
pub async fn dashboard() -> AppError { AppError::NotFound }
