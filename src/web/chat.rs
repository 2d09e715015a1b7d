//! Live chat: the panel, posting, the SSE stream, deletion, chat settings.
// Being built: routes are in router.rs; handlers answer 404 until implemented.
use crate::error::AppError;
pub async fn panel() -> AppError { AppError::NotFound }
pub async fn post() -> AppError { AppError::NotFound }
pub async fn events() -> AppError { AppError::NotFound }
pub async fn delete() -> AppError { AppError::NotFound }
pub async fn settings() -> AppError { AppError::NotFound }
