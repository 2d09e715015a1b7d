//! Buying passes: Stripe Checkout against the run's real stripe-mock, with
//! webhook events we sign ourselves; the dev provider's confirmation page;
//! and what each leaves in the database (orders, grants, audit log) and lets
//! the viewer do (a LiveKit token for the live stream, or a 403).

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use stagepass::db::channels::Channel;
use stagepass::db::grants::Grant;
use stagepass::db::orders::{Order, ProviderKind, Status as OrderStatus};
use stagepass::db::passes::{self, Pass};
use stagepass::db::schema::{access_grants, audit_log, orders};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;
use stagepass::db::{OrderId, PassId, StreamId, UserId};

use crate::util::builders;
use crate::util::{Browser, Page, TestApp, services};

const WEBHOOK_SECRET: &str = "whsec_test";

/// An app that pays through the run's stripe-mock.
async fn stripe_app() -> TestApp {
    let base = services::stripe_mock().await;
    TestApp::spawn_with(|env| {
        env.insert("PAYMENTS_PROVIDER".into(), "stripe".into());
        env.insert("STRIPE_API_BASE".into(), base.to_owned());
        env.insert("STRIPE_SECRET_KEY".into(), "sk_test_123".into());
        env.insert("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await
}

/// A creator's channel with one pass-only stream, and a viewer.
struct Shop {
    app: TestApp,
    owner: Browser,
    channel: Channel,
    stream: Stream,
    viewer: Browser,
    viewer_id: UserId,
}

async fn open_shop(app: TestApp) -> Shop {
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "jazz").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    // On sale to viewers: an unannounced draft's passes are not.
    builders::announce(&app, stream.id).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    Shop {
        app,
        owner,
        channel,
        stream,
        viewer,
        viewer_id,
    }
}

/// What a pass is, for `Shop::pass` (the studio UI for passes is built elsewhere).
struct Terms {
    stream: Option<StreamId>,
    price_cents: i64,
    /// A duration in seconds, or else a fixed window (SQL intervals from now).
    duration_seconds: Option<i32>,
    window: Option<(&'static str, &'static str)>,
    includes_replays: bool,
}

impl Terms {
    fn channel_day(price_cents: i64) -> Terms {
        Terms {
            stream: None,
            price_cents,
            duration_seconds: Some(86_400),
            window: None,
            includes_replays: true,
        }
    }
}

impl Shop {
    async fn pass(&self, name: &str, terms: Terms) -> Pass {
        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let (starts, ends) = match terms.window {
            Some((s, e)) => (Some(s), Some(e)),
            None => (None, None),
        };
        let row: Id = diesel::sql_query(
            "INSERT INTO access_passes (channel_id, stream_id, name, price_cents, currency, scope, \
               duration_seconds, window_starts_at, window_ends_at, includes_replays) \
             VALUES ($1, $2, $3, $4, 'USD', CASE WHEN $2 IS NULL THEN 'channel' ELSE 'stream' END, \
               $5, now() + $6::interval, now() + $7::interval, $8) RETURNING id",
        )
        .bind::<BigInt, _>(self.channel.id.0)
        .bind::<Nullable<BigInt>, _>(terms.stream.map(|s| s.0))
        .bind::<Text, _>(name)
        .bind::<BigInt, _>(terms.price_cents)
        .bind::<Nullable<diesel::sql_types::Integer>, _>(terms.duration_seconds)
        .bind::<Nullable<Text>, _>(starts)
        .bind::<Nullable<Text>, _>(ends)
        .bind::<Bool, _>(terms.includes_replays)
        .get_result(&mut *self.app.conn().await)
        .await
        .unwrap();
        passes::find(&mut *self.app.conn().await, PassId(row.id))
            .await
            .unwrap()
            .unwrap()
    }

    async fn orders(&self) -> Vec<Order> {
        orders::table
            .order(orders::id)
            .select(Order::as_select())
            .load(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    async fn order(&self, id: OrderId) -> Order {
        orders::table
            .find(id)
            .select(Order::as_select())
            .first(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    async fn grants(&self, user: UserId) -> Vec<Grant> {
        access_grants::table
            .filter(access_grants::user_id.eq(user))
            .order(access_grants::id)
            .select(Grant::as_select())
            .load(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    async fn audit(&self, action: &str) -> Vec<(Option<i64>, Option<String>)> {
        audit_log::table
            .filter(audit_log::action.eq(action))
            .select((audit_log::channel_id, audit_log::subject))
            .load(&mut *self.app.conn().await)
            .await
            .unwrap()
    }

    /// POST /s/{id}/token as the viewer's page does.
    async fn token_status(&self, browser: &Browser) -> StatusCode {
        browser
            .post_htmx(&format!("/s/{}/token", self.stream.id), &[])
            .await
            .status
    }

    async fn send_webhook(&self, body: &str, signature: Option<String>) -> StatusCode {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/stripe", self.app.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(s) = signature {
            request = request.header("Stripe-Signature", s);
        }
        request.send().await.unwrap().status()
    }
}

/// The buy form of the pass pages, posted as a browser does (CSRF field).
async fn buy(browser: &Browser, pass: PassId, came_from: Option<StreamId>) -> Page {
    let token = browser.csrf_token().await;
    let stream = came_from.map(|s| s.to_string()).unwrap_or_default();
    browser
        .post_raw(
            &format!("/passes/{pass}/buy"),
            &[("csrf_token", &token), ("stream_id", &stream)],
        )
        .await
}

/// `Stripe-Signature` for `body` at Unix time `t` under `secret`.
fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

fn signed_now(body: &str) -> Option<String> {
    Some(signature(WEBHOOK_SECRET, Utc::now().timestamp(), body))
}

fn completed_event(session: &str, order: OrderId, payment_intent: &str) -> String {
    serde_json::json!({
        "id": format!("evt_completed_{order}"),
        "object": "event",
        "type": "checkout.session.completed",
        "data": { "object": {
            "id": session,
            "object": "checkout.session",
            "client_reference_id": order.to_string(),
            "metadata": { "order_id": order.to_string() },
            "payment_intent": payment_intent,
            "payment_status": "paid",
            "status": "complete",
        }},
    })
    .to_string()
}

fn refunded_event(payment_intent: &str) -> String {
    serde_json::json!({
        "id": "evt_refunded_1",
        "object": "event",
        "type": "charge.refunded",
        "data": { "object": {
            "id": "ch_test_1",
            "object": "charge",
            "payment_intent": payment_intent,
            "refunded": true,
        }},
    })
    .to_string()
}

fn order_id_in(location: &str) -> OrderId {
    let id = location
        .trim_start_matches("/checkout/dev/")
        .split(['?', '/'])
        .next()
        .unwrap();
    OrderId(
        id.parse()
            .unwrap_or_else(|_| panic!("no order id in {location}")),
    )
}

/// Buys `pass` through Stripe: the order (with its Checkout Session id).
async fn stripe_checkout(shop: &Shop, pass: &Pass, came_from: Option<StreamId>) -> Order {
    let page = buy(&shop.viewer, pass.id, came_from).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let to = page.location().unwrap();
    assert!(to.starts_with("https://checkout.stripe.com/"), "{to}");
    let order = shop.orders().await.pop().expect("an order");
    assert!(
        order
            .provider_ref
            .as_deref()
            .is_some_and(|r| r.starts_with("cs_"))
    );
    order
}

#[tokio::test]
async fn stripe_checkout_grants_only_through_the_signed_webhook_and_only_once() {
    let shop = open_shop(stripe_app().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;

    // stripe-mock accepts the Checkout Session; the browser goes to its URL.
    let page = buy(&shop.viewer, pass.id, Some(shop.stream.id)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let to = page.location().unwrap();
    assert!(to.starts_with("https://checkout.stripe.com/"), "{to}");
    // Browsers hold a form post's redirect to form-action: Checkout must be allowed.
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' https://checkout.stripe.com;"),
        "{csp}"
    );
    let orders = shop.orders().await;
    assert_eq!(orders.len(), 1);
    let order = &orders[0];
    assert_eq!(
        (
            order.status.as_str(),
            order.provider.as_str(),
            order.amount_cents,
            order.currency.as_str()
        ),
        ("pending", "stripe", 900, "USD")
    );
    let session = order
        .provider_ref
        .clone()
        .expect("the session id is recorded");
    assert!(session.starts_with("cs_"), "{session}");
    assert_eq!(order.user_id, shop.viewer_id);

    // Coming back from Stripe proves nothing: the page waits, polling itself.
    let back = format!("/checkout/{}/return?stream={}", order.id, shop.stream.id);
    let waiting = shop.viewer.get(&back).await;
    assert_eq!(waiting.status, StatusCode::OK);
    assert_eq!(
        waiting.text_of("#checkout-status strong"),
        "Payment processing…"
    );
    assert_eq!(
        waiting.attr("#checkout-status", "hx-trigger").as_deref(),
        Some("every 2s")
    );
    assert_eq!(
        waiting.attr("#checkout-status", "hx-get"),
        Some(back.clone())
    );
    let poll = shop.viewer.get_htmx(&back).await;
    assert!(
        poll.has("#checkout-status[data-status=pending]"),
        "{}",
        poll.text
    );
    assert!(shop.grants(shop.viewer_id).await.is_empty());

    // The signed completed event: paid, and one grant of the pass's scope and length.
    let event = completed_event(&session, order.id, "pi_test_1");
    assert_eq!(
        shop.send_webhook(&event, signed_now(&event)).await,
        StatusCode::OK
    );
    let paid = shop.order(order.id).await;
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.provider_payment_ref.as_deref(), Some("pi_test_1"));
    let grants = shop.grants(shop.viewer_id).await;
    assert_eq!(grants.len(), 1);
    let grant = &grants[0];
    assert_eq!(paid.grant_id, Some(grant.id));
    assert_eq!(
        (
            grant.channel_id,
            grant.stream_id,
            grant.pass_id,
            grant.source.as_str()
        ),
        (shop.channel.id, None, Some(pass.id), "purchase")
    );
    assert!(grant.includes_replays);
    assert_eq!((grant.expires_at - grant.starts_at).num_seconds(), 86_400);
    assert!((Utc::now() - grant.starts_at).num_seconds().abs() < 60);
    assert_eq!(
        shop.audit("order.paid").await,
        vec![(Some(shop.channel.id.0), Some(order.id.to_string()))]
    );

    // The waiting page now sends the viewer to the stream they came from.
    let poll = shop.viewer.get_htmx(&back).await;
    assert_eq!(
        poll.header("hx-redirect"),
        Some(format!("/s/{}", shop.stream.id))
    );
    let full = shop.viewer.get(&back).await;
    assert_eq!(full.status, StatusCode::SEE_OTHER);
    assert_eq!(full.location(), Some(format!("/s/{}", shop.stream.id)));

    // The same event again, and ten concurrent duplicates: no second grant.
    assert_eq!(
        shop.send_webhook(&event, signed_now(&event)).await,
        StatusCode::OK
    );
    let duplicates = (0..10).map(|_| shop.send_webhook(&event, signed_now(&event)));
    for status in futures_util::future::join_all(duplicates).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(shop.grants(shop.viewer_id).await.len(), 1);
    assert_eq!(shop.order(order.id).await.grant_id, Some(grant.id));
    assert_eq!(shop.audit("order.paid").await.len(), 1);
}

#[tokio::test]
async fn concurrent_first_deliveries_of_a_completed_event_grant_once() {
    let shop = open_shop(stripe_app().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;
    let order = stripe_checkout(&shop, &pass, None).await;
    let event = completed_event(
        order.provider_ref.as_deref().unwrap(),
        order.id,
        "pi_test_2",
    );
    let deliveries = (0..10).map(|_| shop.send_webhook(&event, signed_now(&event)));
    for status in futures_util::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(shop.grants(shop.viewer_id).await.len(), 1);
    assert_eq!(shop.order(order.id).await.status, OrderStatus::Paid);
}

#[tokio::test]
async fn webhooks_that_fail_verification_get_400_and_change_nothing() {
    let shop = open_shop(stripe_app().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;
    let order = stripe_checkout(&shop, &pass, None).await;
    let event = completed_event(
        order.provider_ref.as_deref().unwrap(),
        order.id,
        "pi_test_3",
    );
    let now = Utc::now().timestamp();

    let refused = [
        ("wrong secret", Some(signature("whsec_other", now, &event))),
        ("no header", None),
        ("garbage header", Some("nonsense".to_owned())),
        (
            "301 s old",
            Some(signature(WEBHOOK_SECRET, now - 301, &event)),
        ),
        (
            "an hour ahead",
            Some(signature(WEBHOOK_SECRET, now + 3600, &event)),
        ),
        (
            "body changed after signing",
            Some(signature(
                WEBHOOK_SECRET,
                now,
                &event.replace("pi_test_3", "pi_test_x"),
            )),
        ),
    ];
    for (what, header) in refused {
        assert_eq!(
            shop.send_webhook(&event, header).await,
            StatusCode::BAD_REQUEST,
            "{what}"
        );
    }
    let unchanged = shop.order(order.id).await;
    assert_eq!(unchanged.status, OrderStatus::Pending);
    assert_eq!(unchanged.provider_payment_ref, None);
    assert!(shop.grants(shop.viewer_id).await.is_empty());
    assert!(shop.audit("order.paid").await.is_empty());

    // A correctly signed event we don't handle is acknowledged and ignored.
    let other = r#"{"id":"evt_x","object":"event","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
    assert_eq!(
        shop.send_webhook(other, signed_now(other)).await,
        StatusCode::OK
    );
    assert_eq!(shop.order(order.id).await.status, OrderStatus::Pending);
}

#[tokio::test]
async fn a_refund_revokes_the_grant_and_the_viewer_loses_the_stream() {
    let shop = open_shop(stripe_app().await).await;
    let pass = shop
        .pass(
            "Tonight only",
            Terms {
                stream: Some(shop.stream.id),
                price_cents: 500,
                duration_seconds: Some(3 * 3600),
                window: None,
                includes_replays: false,
            },
        )
        .await;
    let order = stripe_checkout(&shop, &pass, None).await;
    let event = completed_event(
        order.provider_ref.as_deref().unwrap(),
        order.id,
        "pi_test_4",
    );
    assert_eq!(
        shop.send_webhook(&event, signed_now(&event)).await,
        StatusCode::OK
    );
    let grant = shop.grants(shop.viewer_id).await.pop().unwrap();
    assert_eq!(
        grant.stream_id,
        Some(shop.stream.id),
        "a stream pass covers its stream"
    );
    assert!(!grant.includes_replays);

    builders::go_live(&shop.owner, shop.stream.id).await;
    assert_eq!(shop.token_status(&shop.viewer).await, StatusCode::OK);

    let refund = refunded_event("pi_test_4");
    assert_eq!(
        shop.send_webhook(&refund, signed_now(&refund)).await,
        StatusCode::OK
    );
    let refunded = shop.order(order.id).await;
    assert_eq!(refunded.status, OrderStatus::Refunded);
    let grant = shop.grants(shop.viewer_id).await.pop().unwrap();
    assert!(grant.revoked_at.is_some());
    assert_eq!(grant.revoked_reason.as_deref(), Some("refunded"));
    assert_eq!(shop.token_status(&shop.viewer).await, StatusCode::FORBIDDEN);
    assert_eq!(
        shop.audit("order.refunded").await,
        vec![(Some(shop.channel.id.0), Some(order.id.to_string()))]
    );

    // A replayed refund, or a late replay of the payment, changes nothing.
    assert_eq!(
        shop.send_webhook(&refund, signed_now(&refund)).await,
        StatusCode::OK
    );
    assert_eq!(
        shop.send_webhook(&event, signed_now(&event)).await,
        StatusCode::OK
    );
    assert_eq!(shop.order(order.id).await.status, OrderStatus::Refunded);
    assert_eq!(shop.grants(shop.viewer_id).await.len(), 1);
    assert_eq!(shop.audit("order.refunded").await.len(), 1);
    assert_eq!(shop.token_status(&shop.viewer).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn when_stripe_fails_the_order_fails_and_the_pass_page_says_so() {
    // Unreachable: nothing listens on the port.
    let closed = services::free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("PAYMENTS_PROVIDER".into(), "stripe".into());
        env.insert(
            "STRIPE_API_BASE".into(),
            format!("http://127.0.0.1:{closed}"),
        );
        env.insert("STRIPE_SECRET_KEY".into(), "sk_test_123".into());
        env.insert("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await;
    let shop = open_shop(app).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;
    let page = buy(&shop.viewer, pass.id, Some(shop.stream.id)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some(format!("/s/{}/pass", shop.stream.id)));
    let order = shop.orders().await.pop().unwrap();
    assert_eq!(
        (order.status.as_str(), order.provider_ref),
        ("failed", None)
    );
    assert!(shop.grants(shop.viewer_id).await.is_empty());
    let next = shop.viewer.get("/").await;
    assert!(
        next.text_of("#alerts")
            .contains("couldn't start the payment"),
        "{}",
        next.text
    );

    // Refused: stripe-mock answers 401 to a key that isn't one.
    let base = services::stripe_mock().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("PAYMENTS_PROVIDER".into(), "stripe".into());
        env.insert("STRIPE_API_BASE".into(), base.to_owned());
        env.insert("STRIPE_SECRET_KEY".into(), "not-a-key".into());
        env.insert("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await;
    let shop = open_shop(app).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;
    let page = buy(&shop.viewer, pass.id, None).await;
    assert_eq!(page.location(), Some("/c/jazz/passes".to_owned()));
    assert_eq!(
        shop.orders().await.pop().unwrap().status,
        OrderStatus::Failed
    );
    assert!(shop.grants(shop.viewer_id).await.is_empty());
}

#[tokio::test]
async fn dev_checkout_confirms_on_its_page_and_the_viewer_lands_on_the_playing_stream() {
    let shop = open_shop(TestApp::spawn().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(500)).await;
    builders::go_live(&shop.owner, shop.stream.id).await;
    assert_eq!(shop.token_status(&shop.viewer).await, StatusCode::FORBIDDEN);

    let page = buy(&shop.viewer, pass.id, Some(shop.stream.id)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    let confirm_page = page.location().unwrap();
    let order = order_id_in(&confirm_page);
    assert_eq!(
        confirm_page,
        format!("/checkout/dev/{order}?stream={}", shop.stream.id)
    );
    assert_eq!(shop.order(order).await.provider, ProviderKind::Dev);

    let confirm = shop.viewer.get(&confirm_page).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert_eq!(
        confirm.text_of("#dev-checkout h1"),
        "Development payment — no money moves."
    );
    assert!(
        confirm
            .text_of("#dev-summary")
            .starts_with("Confirm purchase of Day pass for $5.00"),
        "{}",
        confirm.text
    );
    assert!(
        shop.grants(shop.viewer_id).await.is_empty(),
        "the page alone grants nothing"
    );

    let done = shop
        .viewer
        .submit(&confirm_page, "#dev-confirm-form", &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(done.location(), Some(format!("/s/{}", shop.stream.id)));
    assert_eq!(shop.order(order).await.status, OrderStatus::Paid);
    assert_eq!(shop.token_status(&shop.viewer).await, StatusCode::OK);
    let watch = shop.viewer.follow(&done).await;
    assert!(watch.has("#player"), "{}", watch.text);

    // Confirming again is harmless: one grant, the same landing.
    let token = shop.viewer.csrf_token().await;
    let again = shop
        .viewer
        .post_raw(
            &format!("/checkout/dev/{order}/confirm"),
            &[
                ("csrf_token", &token),
                ("stream", &shop.stream.id.to_string()),
            ],
        )
        .await;
    assert_eq!(again.location(), Some(format!("/s/{}", shop.stream.id)));
    assert_eq!(shop.grants(shop.viewer_id).await.len(), 1);
    assert_eq!(shop.audit("order.paid").await.len(), 1);
    // And the confirmation page of a paid order moves on.
    let paid = shop.viewer.get(&confirm_page).await;
    assert_eq!(paid.location(), Some(format!("/s/{}", shop.stream.id)));
}

#[tokio::test]
async fn orders_are_only_their_buyers() {
    let shop = open_shop(TestApp::spawn().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(500)).await;
    let page = buy(&shop.viewer, pass.id, None).await;
    let order = order_id_in(&page.location().unwrap());
    let (other, _) = builders::user(&shop.app, "other@example.com", "Other").await;

    assert_eq!(
        other.get(&format!("/checkout/dev/{order}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get(&format!("/checkout/{order}/return")).await.status,
        StatusCode::NOT_FOUND
    );
    let token = other.csrf_token().await;
    let confirm = other
        .post_raw(
            &format!("/checkout/dev/{order}/confirm"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(confirm.status, StatusCode::NOT_FOUND);
    assert_eq!(shop.order(order).await.status, OrderStatus::Pending);
    assert!(shop.grants(shop.viewer_id).await.is_empty());

    // Signed out: sign in first, and come back.
    let anonymous = shop.app.anonymous();
    let page = anonymous.get(&format!("/checkout/dev/{order}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().unwrap().starts_with("/signin?next="));

    // The dev provider has no Stripe webhook.
    let event = completed_event("cs_test_x", order, "pi_x");
    assert_eq!(
        shop.send_webhook(&event, signed_now(&event)).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn archived_and_finished_passes_cannot_be_bought() {
    let shop = open_shop(TestApp::spawn().await).await;
    let archived = shop.pass("Old pass", Terms::channel_day(500)).await;
    diesel::update(stagepass::db::schema::access_passes::table.find(archived.id))
        .set(stagepass::db::schema::access_passes::archived_at.eq(diesel::dsl::now))
        .execute(&mut *shop.app.conn().await)
        .await
        .unwrap();
    let page = buy(&shop.viewer, archived.id, None).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text.contains("no longer on sale"), "{}", page.text);

    let over = shop
        .pass(
            "Last week's festival",
            Terms {
                stream: None,
                price_cents: 500,
                duration_seconds: None,
                window: Some(("-8 days", "-1 day")),
                includes_replays: true,
            },
        )
        .await;
    let page = buy(&shop.viewer, over.id, None).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text.contains("window is over"), "{}", page.text);

    assert_eq!(
        buy(&shop.viewer, PassId(999_999), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(shop.orders().await.is_empty());
    assert!(shop.grants(shop.viewer_id).await.is_empty());
}

#[tokio::test]
async fn buying_a_channel_pass_again_stacks_onto_the_active_one() {
    let shop = open_shop(TestApp::spawn().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(500)).await;
    for _ in 0..2 {
        // Bought from the channel page (no stream): lands back on the channel.
        let page = buy(&shop.viewer, pass.id, None).await;
        let confirm_page = page.location().unwrap();
        let done = shop
            .viewer
            .submit(&confirm_page, "#dev-confirm-form", &[])
            .await;
        assert_eq!(done.location().as_deref(), Some("/c/jazz"));
    }
    let grants = shop.grants(shop.viewer_id).await;
    assert_eq!(grants.len(), 2);
    assert_eq!(
        grants[1].starts_at, grants[0].expires_at,
        "the new day starts when the first ends"
    );
    assert_eq!(
        (grants[1].expires_at - grants[1].starts_at).num_seconds(),
        86_400
    );
}

#[tokio::test]
async fn a_stream_from_another_channel_is_not_a_landing_place() {
    let shop = open_shop(TestApp::spawn().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(500)).await;
    let elsewhere = builders::channel(&shop.app, shop.viewer_id, "elsewhere").await;
    let foreign = builders::stream(&shop.app, &elsewhere, AccessKind::Public).await;
    let page = buy(&shop.viewer, pass.id, Some(foreign.id)).await;
    let confirm_page = page.location().unwrap();
    assert!(!confirm_page.contains("stream="), "{confirm_page}");
    let done = shop
        .viewer
        .submit(&confirm_page, "#dev-confirm-form", &[])
        .await;
    assert_eq!(done.location().as_deref(), Some("/c/jazz"));
}

#[tokio::test]
async fn a_free_pass_is_granted_at_once() {
    let shop = open_shop(TestApp::spawn().await).await;
    let pass = shop
        .pass(
            "Free preview",
            Terms {
                stream: Some(shop.stream.id),
                price_cents: 0,
                duration_seconds: Some(600),
                window: None,
                includes_replays: false,
            },
        )
        .await;
    let page = buy(&shop.viewer, pass.id, None).await;
    assert_eq!(page.location(), Some(format!("/s/{}", shop.stream.id)));
    let order = shop.orders().await.pop().unwrap();
    assert_eq!((order.status.as_str(), order.amount_cents), ("paid", 0));
    let grants = shop.grants(shop.viewer_id).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(order.grant_id, Some(grants[0].id));
    assert_eq!(grants[0].stream_id, Some(shop.stream.id));

    // Free passes don't stack: taking it again while it runs is refused.
    let again = buy(&shop.viewer, pass.id, None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(
        again.text.contains("You already have this free pass"),
        "{}",
        again.text
    );
    assert_eq!(shop.grants(shop.viewer_id).await.len(), 1);
}

#[tokio::test]
async fn a_stream_pass_without_replays_is_not_sold_after_the_stream_ended() {
    let shop = open_shop(TestApp::spawn().await).await;
    let live_only = Terms {
        stream: Some(shop.stream.id),
        price_cents: 500,
        duration_seconds: Some(3600),
        window: None,
        includes_replays: false,
    };
    let pass = shop.pass("Tonight only", live_only).await;
    builders::set_ended(&shop.app, shop.stream.id).await;
    let page = buy(&shop.viewer, pass.id, None).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text.contains("does not include its replay"),
        "{}",
        page.text
    );
    assert!(shop.orders().await.is_empty());
}

#[tokio::test]
async fn the_dev_provider_refuses_to_start_on_a_public_url() {
    let dir = services::target_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagepass"))
        .arg("serve")
        .current_dir(&dir)
        .env_remove("PAYMENTS_PROVIDER")
        .env_remove("DEV_PAYMENTS_ALLOW_PUBLIC")
        .env("PUBLIC_URL", "https://live.example.com")
        .env("LIVEKIT_API_SECRET", "a-real-looking-secret-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PAYMENTS_PROVIDER: the dev provider"),
        "{stderr}"
    );
    assert!(
        stderr.contains("DEV_PAYMENTS_ALLOW_PUBLIC=true"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_session_that_is_not_ours_or_charged_another_amount_grants_nothing() {
    let shop = open_shop(stripe_app().await).await;
    let pass = shop.pass("Day pass", Terms::channel_day(900)).await;
    let order = stripe_checkout(&shop, &pass, None).await;
    let session = order.provider_ref.as_deref().unwrap();

    // Someone paid a cheap Payment Link with our order id as client_reference_id:
    // another session, no metadata of ours.
    let foreign = serde_json::json!({
        "id": "evt_foreign", "object": "event", "type": "checkout.session.completed",
        "data": { "object": {
            "id": "cs_someone_elses", "object": "checkout.session",
            "client_reference_id": order.id.to_string(),
            "payment_intent": "pi_cheap", "payment_status": "paid", "amount_total": 100, "currency": "usd",
        }},
    })
    .to_string();
    assert_eq!(
        shop.send_webhook(&foreign, signed_now(&foreign)).await,
        StatusCode::OK
    );

    // Our session, but it charged something else than the order says.
    let wrong_amount = serde_json::json!({
        "id": "evt_wrong_amount", "object": "event", "type": "checkout.session.completed",
        "data": { "object": {
            "id": session, "object": "checkout.session",
            "metadata": { "order_id": order.id.to_string() },
            "payment_intent": "pi_wrong", "payment_status": "paid", "amount_total": 100, "currency": "usd",
        }},
    })
    .to_string();
    assert_eq!(
        shop.send_webhook(&wrong_amount, signed_now(&wrong_amount))
            .await,
        StatusCode::OK
    );

    assert!(shop.grants(shop.viewer_id).await.is_empty());
    assert_ne!(shop.order(order.id).await.status, OrderStatus::Paid);
}

#[tokio::test]
async fn starting_purchases_is_limited_per_account() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CHECKOUT_MAX_PER_ACCOUNT".into(), "2".into());
    })
    .await;
    let shop = open_shop(app).await;
    let pass = shop.pass("Day pass", Terms::channel_day(500)).await;
    for _ in 0..2 {
        let page = buy(&shop.viewer, pass.id, None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }
    let page = buy(&shop.viewer, pass.id, None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text
            .contains("You started 2 purchases in a short time")
            && page.text.contains("Wait 60 minutes before trying again"),
        "{}",
        page.text
    );
    assert_eq!(shop.orders().await.len(), 2, "no order for the refused one");
    // The owner is not held back by the viewer.
    let page = buy(&shop.owner, pass.id, None).await;
    assert_ne!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.text);
}
