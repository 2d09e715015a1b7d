//! (being built)
use crate::error::AppError;
pub async fn show() -> AppError {
    AppError::NotFound
}
pub async fn token() -> AppError {
    AppError::NotFound
}
pub async fn status() -> AppError {
    AppError::NotFound
}
