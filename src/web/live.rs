//! (being built)
use crate::error::AppError;
pub async fn go_live() -> AppError {
    AppError::NotFound
}
pub async fn end() -> AppError {
    AppError::NotFound
}
pub async fn broadcast() -> AppError {
    AppError::NotFound
}
pub async fn host_token() -> AppError {
    AppError::NotFound
}
pub async fn stats() -> AppError {
    AppError::NotFound
}
