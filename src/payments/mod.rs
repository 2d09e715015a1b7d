//! Payments: the checkout providers (Stripe, dev) behind one trait, and the
//! purchase flow that uses them.
//!
//! A provider only *starts* a checkout: it answers where to send the buyer.
//! It never grants anything. A pass is granted in exactly one place,
//! `db::orders::complete_order`, reached from a verified Stripe webhook, the
//! dev provider's confirmation, or directly for a free pass. A redirect back
//! from the provider proves nothing and grants nothing.

pub mod dev;
pub mod stripe;

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::config::{Config, PaymentsConfig};
use crate::db::grants::Grant;
use crate::db::orders::{self, NewOrder, Order, Status};
use crate::db::passes::Pass;
use crate::db::{DbPool, OrderId, StreamId, UserId};

pub use crate::db::orders::ProviderKind;

/// Where a provider sends the buyer back to (absolute URLs).
#[derive(Debug, Clone)]
pub struct CheckoutUrls {
    /// After paying: `/checkout/{order}/return[?stream={id}]`.
    pub success: Url,
    /// After giving up: the pass page they came from.
    pub cancel: Url,
}

/// A checkout the provider has opened.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The provider's reference for it (Stripe's Checkout Session id), stored on the order.
    pub provider_ref: Option<String>,
    /// Where to send the buyer's browser now.
    pub redirect_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the payment provider refused the checkout (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the payment provider answered something we do not understand: {0}")]
    Unexpected(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Opens a checkout for a pending `order` of `pass`.
    async fn start_checkout(
        &self,
        order: &Order,
        pass: &Pass,
        urls: &CheckoutUrls,
    ) -> Result<Checkout, PaymentError>;
}

/// The provider the configuration chooses.
pub fn from_config(config: &Config) -> Arc<dyn PaymentProvider> {
    match &config.payments {
        PaymentsConfig::Dev => Arc::new(dev::DevProvider),
        PaymentsConfig::Stripe(stripe) => Arc::new(stripe::StripeProvider::new(stripe)),
    }
}

/// Where the buyer goes after the purchase, and back to if they give up.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The stream to watch (the pass's own, or the one they came from).
    pub stream: Option<StreamId>,
    /// The page to return to when the checkout fails or is abandoned.
    pub pass_page: String,
}

/// How a purchase went on.
#[derive(Debug)]
pub enum Started {
    /// Send the buyer to the provider (or the dev confirmation page).
    Redirect { order: Order, to: String },
    /// A free pass: granted at once (None: nothing left to grant).
    Free { order: Order, grant: Option<Grant> },
}

#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    /// The order was marked failed; nothing was granted.
    #[error("order {order}: {error}")]
    Provider { order: OrderId, error: PaymentError },
}

/// Starts buying `pass` for `buyer`: a pending order, then the provider's
/// checkout (its reference recorded on the order), or for a free pass the
/// grant itself. When the provider fails the order is marked failed.
/// The caller has checked that the pass is on sale.
pub async fn start_purchase(
    db: &DbPool,
    provider: &dyn PaymentProvider,
    public_url: &Url,
    buyer: UserId,
    pass: &Pass,
    destination: &Destination,
) -> Result<Started, PurchaseError> {
    let kind = provider.kind();
    let mut conn = db.get().await?;
    let order = orders::insert(
        &mut conn,
        &NewOrder {
            user_id: buyer,
            pass_id: pass.id,
            amount_cents: pass.price_cents,
            currency: &pass.currency,
            provider: kind,
            stream_id: destination.stream,
        },
    )
    .await?;
    crate::analytics::record(
        &mut conn,
        crate::analytics::Step::CheckoutStarted,
        pass.channel_id,
        destination.stream,
        &crate::analytics::Visitor::user(buyer),
    )
    .await
    .unwrap_or_else(|error| tracing::warn!(%error, "funnel event 'checkout_started' not recorded"));
    if pass.price_cents == 0 {
        let grant = orders::complete_order(&mut conn, order.id, None).await?;
        count(kind, "free");
        let order = orders::find(&mut conn, order.id).await?.unwrap_or(order);
        return Ok(Started::Free { order, grant });
    }
    // No connection is held while the provider answers (it may take seconds).
    drop(conn);

    let urls = checkout_urls(public_url, order.id, destination);
    let result = provider.start_checkout(&order, pass, &urls).await;
    let mut conn = db.get().await?;
    match result {
        Ok(checkout) => {
            if let Some(r) = &checkout.provider_ref {
                orders::set_provider_ref(&mut conn, order.id, r).await?;
            }
            count(kind, "started");
            Ok(Started::Redirect {
                order,
                to: checkout.redirect_url,
            })
        }
        Err(error) => {
            orders::close_pending(&mut conn, order.id, Status::Failed).await?;
            count(kind, "failed");
            Err(PurchaseError::Provider {
                order: order.id,
                error,
            })
        }
    }
}

fn checkout_urls(public_url: &Url, order: OrderId, destination: &Destination) -> CheckoutUrls {
    let mut success = public_url.clone();
    success.set_path(&format!("/checkout/{order}/return"));
    success.set_query(None);
    if let Some(stream) = destination.stream {
        success
            .query_pairs_mut()
            .append_pair("stream", &stream.to_string());
    }
    let mut cancel = public_url.clone();
    cancel.set_path(&destination.pass_page);
    cancel.set_query(None);
    CheckoutUrls { success, cancel }
}

/// `orders_total{provider, outcome}`: started, free, paid, failed, canceled, refunded.
pub fn count(provider: ProviderKind, outcome: &'static str) {
    metrics::counter!("orders_total", "provider" => provider.as_str(), "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_carry_the_order_and_the_stream() {
        let base = Url::parse("https://live.example.com/").unwrap();
        let urls = checkout_urls(
            &base,
            OrderId(42),
            &Destination {
                stream: Some(StreamId(7)),
                pass_page: "/s/7/pass".into(),
            },
        );
        assert_eq!(
            urls.success.as_str(),
            "https://live.example.com/checkout/42/return?stream=7"
        );
        assert_eq!(urls.cancel.as_str(), "https://live.example.com/s/7/pass");
        let urls = checkout_urls(
            &base,
            OrderId(1),
            &Destination {
                stream: None,
                pass_page: "/c/jazz/passes".into(),
            },
        );
        assert_eq!(
            urls.success.as_str(),
            "https://live.example.com/checkout/1/return"
        );
    }
}
