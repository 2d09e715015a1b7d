//! The development provider, for `make run`: no money moves. Its checkout is
//! our own confirmation page (/checkout/dev/{order}); confirming completes
//! the order through `db::orders::complete_order`, like a paid Stripe
//! session. Config refuses it when PUBLIC_URL is not localhost unless
//! DEV_PAYMENTS_ALLOW_PUBLIC is set, so it cannot give passes away by accident.

use async_trait::async_trait;

use super::{Checkout, CheckoutUrls, PaymentError, PaymentProvider, ProviderKind};
use crate::db::orders::Order;
use crate::db::passes::Pass;

pub struct DevProvider;

#[async_trait]
impl PaymentProvider for DevProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dev
    }

    async fn start_checkout(
        &self,
        order: &Order,
        _pass: &Pass,
        urls: &CheckoutUrls,
    ) -> Result<Checkout, PaymentError> {
        // The confirmation page keeps the success URL's `?stream=` to send the buyer on.
        let query = urls
            .success
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        Ok(Checkout {
            provider_ref: None,
            redirect_url: format!("/checkout/dev/{}{query}", order.id),
        })
    }
}
