//! (being built)
use crate::error::AppError;
pub async fn livekit() -> AppError {
    AppError::NotFound
}
