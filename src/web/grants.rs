//! The owner's grants (comp, extend, revoke) and redeem codes.
// Being built: routes are in router.rs; handlers answer 404 until implemented.
use crate::error::AppError;
pub async fn list() -> AppError { AppError::NotFound }
pub async fn comp() -> AppError { AppError::NotFound }
pub async fn extend() -> AppError { AppError::NotFound }
pub async fn revoke() -> AppError { AppError::NotFound }
pub async fn codes_page() -> AppError { AppError::NotFound }
pub async fn generate_codes() -> AppError { AppError::NotFound }
pub async fn export_codes() -> AppError { AppError::NotFound }
pub async fn redeem() -> AppError { AppError::NotFound }
