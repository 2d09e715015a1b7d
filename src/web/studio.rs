//! The studio: the owner's streams, create, edit, delete a draft.
// Being built: routes are in router.rs; handlers answer 404 until implemented.

use crate::error::AppError;

pub async fn dashboard() -> AppError {
    AppError::NotFound
}
pub async fn new_stream_page() -> AppError {
    AppError::NotFound
}
pub async fn create_stream() -> AppError {
    AppError::NotFound
}
pub async fn stream_page() -> AppError {
    AppError::NotFound
}
pub async fn update_stream() -> AppError {
    AppError::NotFound
}
pub async fn delete_stream() -> AppError {
    AppError::NotFound
}
