//! Passes: the owner's pass management, the pass pages viewers buy from, and "My passes".
// Being built: routes are in router.rs; handlers answer 404 until implemented.
use crate::error::AppError;
pub async fn studio_list() -> AppError { AppError::NotFound }
pub async fn create() -> AppError { AppError::NotFound }
pub async fn edit_page() -> AppError { AppError::NotFound }
pub async fn update() -> AppError { AppError::NotFound }
pub async fn archive() -> AppError { AppError::NotFound }
pub async fn for_stream() -> AppError { AppError::NotFound }
pub async fn for_channel() -> AppError { AppError::NotFound }
pub async fn mine() -> AppError { AppError::NotFound }
