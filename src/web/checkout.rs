//! Checkout: buying a pass through a payment provider (Stripe or dev).
// Being built: routes are in router.rs; handlers answer 404 until implemented.
use crate::error::AppError;
pub async fn buy() -> AppError { AppError::NotFound }
pub async fn dev_page() -> AppError { AppError::NotFound }
pub async fn dev_confirm() -> AppError { AppError::NotFound }
pub async fn returned() -> AppError { AppError::NotFound }
pub async fn stripe_webhook() -> AppError { AppError::NotFound }
