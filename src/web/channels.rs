//! Channels: create, the public channel page, and the team (moderators).
// Being built: routes are in router.rs; handlers answer 404 until implemented.

use crate::error::AppError;

pub async fn show() -> AppError {
    AppError::NotFound
}
pub async fn new_page() -> AppError {
    AppError::NotFound
}
pub async fn create() -> AppError {
    AppError::NotFound
}
pub async fn team() -> AppError {
    AppError::NotFound
}
pub async fn add_moderator() -> AppError {
    AppError::NotFound
}
pub async fn remove_moderator() -> AppError {
    AppError::NotFound
}
