//! The web shell: error pages (full and htmx fragments), security headers,
//! operator endpoints, static files.

use reqwest::StatusCode;

use crate::util::TestApp;

#[tokio::test]
async fn unknown_page_is_a_404_page_or_an_htmx_fragment() {
    let app = TestApp::spawn().await;
    let browser = app.anonymous();
    let page = browser.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.text_of(".alert h1"), "Page not found");
    assert!(
        page.has("nav a[href='/signin']"),
        "a full page, with navigation"
    );

    let fragment = browser.get_htmx("/no/such/page").await;
    assert_eq!(fragment.status, StatusCode::NOT_FOUND);
    assert!(!fragment.text.contains("<nav"));
    assert_eq!(fragment.text_of(".alert h1"), "Page not found");
    assert_eq!(fragment.header("hx-retarget").as_deref(), Some("#alerts"));
    assert_eq!(fragment.header("vary").as_deref(), Some("HX-Request"));
}

#[tokio::test]
async fn navigation_reflects_who_is_signed_in() {
    let app = TestApp::spawn().await;
    let anon = app.anonymous().get("/").await;
    assert!(anon.has("nav a[href='/signin']"));
    assert!(!anon.has("form[action='/signout']"));

    let ivy = app.signed_up("ivy@example.com", "Ivy <b>bold</b>").await;
    let page = ivy.get("/").await;
    assert!(page.has("form[action='/signout']"));
    assert!(!page.has("nav a[href='/signin']"));
    // Names are escaped, never markup.
    assert_eq!(page.text_of("[data-testid=nav-account]"), "Ivy <b>bold</b>");
    assert!(!page.has("nav b"));
}

#[tokio::test]
async fn every_response_carries_security_headers_and_a_request_id() {
    let app = TestApp::spawn().await;
    let page = app.anonymous().get("/").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("strict-origin-when-cross-origin")
    );
    assert!(page.header("x-request-id").is_some_and(|id| id.len() >= 32));

    let cookie = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
}

#[tokio::test]
async fn session_cookie_is_secure_when_served_over_https() {
    let app = TestApp::spawn_with(|env| {
        env.insert("PUBLIC_URL".into(), "https://live.example.com".into());
        // The dev payment provider refuses a public URL unless told otherwise.
        env.insert("DEV_PAYMENTS_ALLOW_PUBLIC".into(), "true".into());
    })
    .await;
    let page = app.anonymous().get("/signin").await;
    let cookie = page.header("set-cookie").unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let browser = app.anonymous();
    let health = browser.get("/healthz").await;
    assert_eq!(
        (health.status, health.text.as_str()),
        (StatusCode::OK, "ok\n")
    );
    let ready = browser.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text.as_str()),
        (StatusCode::OK, "ready\n")
    );

    browser.get("/signin").await;
    let metrics = browser.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text
            .contains(r#"http_requests_total{method="GET",route="/signin",status="200"}"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("http_request_duration_seconds_bucket")
    );
    assert!(metrics.text.contains("db_pool_connections_max 5"));
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let app = TestApp::spawn_with(|env| {
        env.insert("METRICS_TOKEN".into(), "scrape-me-please".into());
    })
    .await;
    let scraper = reqwest::Client::new();
    let scrape = |auth: Option<&'static str>| {
        let mut request = scraper.get(format!("{}/metrics", app.url));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        async move { crate::util::Browser::read(request.send().await.unwrap()).await }
    };
    let none = scrape(None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.text.contains("METRICS_TOKEN"));
    assert!(!none.text.contains("scrape-me-please"));
    assert_eq!(
        scrape(Some("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ok = scrape(Some("Bearer scrape-me-please")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.text.contains("http_requests_total"));
    // Probes stay open.
    assert_eq!(app.anonymous().get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_503_while_the_database_is_unreachable() {
    let closed = crate::util::services::free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "DATABASE_URL".into(),
            format!("postgres://stagepass:stagepass@127.0.0.1:{closed}/nowhere"),
        );
    })
    .await;
    let browser = app.anonymous();
    let ready = browser.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text.contains("database unreachable"));
    assert_eq!(
        browser.get("/healthz").await.status,
        StatusCode::OK,
        "the process itself is up"
    );

    // Pages say what happened instead of hanging or crashing.
    let page = browser.get("/signin").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        page.text.contains("The database is not answering"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn stylesheet_is_served() {
    let app = TestApp::spawn().await;
    let css = app.anonymous().get("/static/css/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn static_files_come_from_static_dir_when_it_is_set() {
    // A binary deployed away from its checkout, with static/ copied beside it.
    let dir = std::env::temp_dir().join(format!(
        "stagepass-static-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::write(dir.join("css/app.css"), "body { color: rebeccapurple }").unwrap();
    let app = TestApp::spawn_with(|env| {
        env.insert("STATIC_DIR".into(), dir.display().to_string());
    })
    .await;
    let css = app.anonymous().get("/static/css/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.text, "body { color: rebeccapurple }");
    assert_eq!(
        app.anonymous().get("/static/js/app.js").await.status,
        StatusCode::NOT_FOUND,
        "nothing from the checkout's static/"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn graceful_shutdown_stops_serving() {
    let app = TestApp::spawn().await;
    let url = app.url.clone();
    assert_eq!(app.anonymous().get("/healthz").await.status, StatusCode::OK);
    app.stop().await;
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err());
}
