//! The test harness: `TestApp` serves the real app on a random port against
//! its own database (cloned from a migrated template) and the run's real
//! LiveKit and S3 servers; `Browser` is a persona — an HTTP client with its
//! own cookie jar — that reads pages the way a user does (CSS selectors).

pub mod browser;
pub mod builders;
pub mod cluster;
pub mod instance;
pub mod livekit_webhook;
pub mod logs;
pub mod private_pg;
pub mod services;
pub mod sse;
pub mod standin;
pub mod uploads;
pub mod webhook_receiver;
pub mod whip;

use std::collections::HashMap;
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use scraper::{Html, Selector};
use secrecy::ExposeSecret;
use stagepass::AppState;
use stagepass::config::Config;
use stagepass::db::DbPool;
use tokio::sync::oneshot;

pub use services::Services;

pub struct TestApp {
    pub url: String,
    pub state: AppState,
    /// The settings it runs with (environment variable names), so that a
    /// test can start another instance of the same deployment.
    pub env: HashMap<String, String>,
    pub services: &'static Services,
    /// The root certificate its HTTPS address is signed by, when it is not
    /// one the web trusts (the cluster's Caddy, with its own CA).
    pub tls_root: Option<reqwest::Certificate>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// An app with its own fresh database and the run's real services.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Like `spawn`, with settings changed by `tweak` (environment variable names).
    pub async fn spawn_with(tweak: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        keep_log_callsites_live();
        let services = services::get().await;
        let database_url = services::create_database(services).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());

        let mut env = settings(services, database_url, &url);
        tweak(&mut env);
        let config =
            Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration is valid");
        let pool = stagepass::db::pool(
            config.database_url.expose_secret(),
            config.database_pool_size,
        )
        .unwrap();
        let state = AppState::new(config, pool);

        let (tx, rx) = oneshot::channel();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            stagepass::serve(listener, server_state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        services.webhook_targets.lock().unwrap().push(url.clone());
        TestApp {
            url,
            state,
            env,
            services,
            tls_root: None,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A handle on a deployment that serves elsewhere (the cluster test's
    /// instances, behind its proxy at `url`, whose certificate `tls_root`
    /// signs): the database and LiveKit of `env`'s settings, and personas
    /// that go through `url`. It serves nothing itself.
    pub async fn handle(
        url: &str,
        env: HashMap<String, String>,
        tls_root: reqwest::Certificate,
    ) -> TestApp {
        keep_log_callsites_live();
        let config =
            Config::from_lookup(|k| env.get(k).cloned()).expect("test configuration is valid");
        let pool = stagepass::db::pool(config.database_url.expose_secret(), 5).unwrap();
        TestApp {
            url: url.to_owned(),
            state: AppState::new(config, pool),
            env,
            services: services::get().await,
            tls_root: Some(tls_root),
            shutdown: None,
            server: None,
        }
    }

    pub fn db(&self) -> &DbPool {
        &self.state.db
    }

    pub async fn conn(
        &self,
    ) -> diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection> {
        self.state.db.get().await.unwrap()
    }

    /// A visitor who is not signed in.
    pub fn anonymous(&self) -> Browser {
        Browser::build(&self.url, None, self.tls_root.clone(), None)
    }

    /// A visitor who signed up through the real form (and is therefore signed in).
    pub async fn signed_up(&self, email: &str, name: &str) -> Browser {
        let browser = self.anonymous();
        let response = browser
            .submit(
                "/signup",
                "#signup-form",
                &[
                    ("email", email),
                    ("display_name", name),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::SEE_OTHER,
            "sign-up failed: {}",
            response.text
        );
        browser
    }

    /// Stops serving (graceful shutdown) and waits for it.
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.services
            .webhook_targets
            .lock()
            .unwrap()
            .retain(|u| u != &self.url);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The settings (environment variable names) of an app under test on
/// `database_url`, reached at `url`, with the run's services.
pub fn settings(services: &Services, database_url: String, url: &str) -> HashMap<String, String> {
    [
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("PUBLIC_URL", url.to_owned()),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "5".to_owned()),
        // API calls go through the stand-in (Egress, Ingress); browsers
        // connect to the real server.
        ("LIVEKIT_URL", services.livekit_url.clone()),
        (
            "LIVEKIT_PUBLIC_URL",
            services.livekit_direct_url.replacen("http://", "ws://", 1),
        ),
        ("LIVEKIT_API_KEY", services::LIVEKIT_KEY.to_owned()),
        ("LIVEKIT_API_SECRET", services::LIVEKIT_SECRET.to_owned()),
        // The stand-in answers LiveKit Ingress, so RTMP is offered (a test
        // of the default install turns it off).
        ("LIVEKIT_INGRESS", "true".to_owned()),
        // Every app under test shares the run's LiveKit: its own prefix keeps
        // its reconciler and webhooks to its own rooms.
        (
            "LIVEKIT_ROOM_PREFIX",
            format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        ),
        ("S3_ENDPOINT", services.s3_url.clone()),
        ("S3_BUCKET", services::S3_BUCKET.to_owned()),
        ("S3_ACCESS_KEY_ID", services::S3_KEY.to_owned()),
        ("S3_SECRET_ACCESS_KEY", services::S3_SECRET.to_owned()),
        // Every persona signs up from 127.0.0.1; the tests of the sign-up
        // limit set their own.
        ("SIGNUP_MAX_PER_ADDRESS", "1000".to_owned()),
        ("SIGNUP_MAX_PER_INSTANCE", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Tests that capture log lines (`tracing::subscriber::set_default` on their
/// thread) need every log callsite to stay enabled: tracing caches a
/// callsite's interest process-wide, computed by the first thread that hits
/// it, and a thread without a subscriber would cache "never" (tracing-core's
/// single-dispatcher shortcut) — the capturing test then misses the line.
/// A do-nothing global subscriber (DEBUG and up, like the captures) makes
/// every thread answer "interested".
fn keep_log_callsites_live() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let quiet =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::DEBUG);
        let _ = tracing::subscriber::set_global_default(quiet);
    });
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A response, read: status, headers, and the body as text and parsed HTML.
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Page {
    pub fn html(&self) -> Html {
        Html::parse_document(&self.text)
    }

    /// The text of every element matching `selector`, whitespace collapsed.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let sel =
            Selector::parse(selector).unwrap_or_else(|e| panic!("bad selector {selector}: {e:?}"));
        self.html()
            .select(&sel)
            .map(|el| {
                el.text()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// The text of the one element matching `selector`.
    pub fn text_of(&self, selector: &str) -> String {
        let all = self.texts(selector);
        assert!(
            !all.is_empty(),
            "no element matches {selector} in:\n{}",
            self.text
        );
        all.join(" ")
    }

    pub fn has(&self, selector: &str) -> bool {
        !self.texts(selector).is_empty()
    }

    pub fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let sel = Selector::parse(selector).unwrap();
        self.html()
            .select(&sel)
            .next()
            .and_then(|el| el.value().attr(name).map(str::to_owned))
    }

    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A persona: one cookie jar, never following redirects (tests assert them).
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    /// The root certificate it trusts besides the web's (see `TestApp::tls_root`).
    pub tls_root: Option<reqwest::Certificate>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self::from_address(base, None)
    }

    /// A persona whose connections come from `address` (another loopback
    /// address such as 127.0.0.2: another network, as the flood limits see it).
    pub fn from_address(base: &str, address: Option<std::net::IpAddr>) -> Self {
        Self::build(base, address, None, None)
    }

    /// The persona with its cookies, whose every request carries `header`
    /// (the cluster's proxy routes `X-Stagepass-Instance` to one instance);
    /// from the default local address.
    pub fn with_header(&self, header: (&'static str, &str)) -> Self {
        Browser {
            client: Self::client(self.jar.clone(), None, self.tls_root.clone(), Some(header)),
            ..self.clone()
        }
    }

    fn build(
        base: &str,
        address: Option<std::net::IpAddr>,
        tls_root: Option<reqwest::Certificate>,
        header: Option<(&'static str, &str)>,
    ) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            base: base.to_owned(),
            client: Self::client(jar.clone(), address, tls_root.clone(), header),
            jar,
            tls_root,
        }
    }

    fn client(
        jar: Arc<reqwest::cookie::Jar>,
        address: Option<std::net::IpAddr>,
        tls_root: Option<reqwest::Certificate>,
        header: Option<(&'static str, &str)>,
    ) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .cookie_provider(jar)
            .redirect(Policy::none())
            .local_address(address);
        if let Some(root) = tls_root {
            builder = builder.add_root_certificate(root);
        }
        if let Some((name, value)) = header {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            builder = builder.default_headers(headers);
        }
        builder.build().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Page {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// GET with htmx's request header (a fragment request).
    pub async fn get_htmx(&self, path: &str) -> Page {
        Self::read(
            self.client
                .get(self.url(path))
                .header("HX-Request", "true")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POSTs a urlencoded form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(self.url(path))
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Follows a 303 like a browser would, answering the page it lands on.
    pub async fn follow(&self, page: &Page) -> Page {
        let to = page.location().expect("a redirect");
        self.get(&to).await
    }

    /// Loads `page_path`, takes the hidden fields of `form` (the CSRF token
    /// among them), adds `fields`, and posts it to the form's action.
    pub async fn submit(&self, page_path: &str, form: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(page_path).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "GET {page_path}: {}",
            page.text
        );
        let html = page.html();
        let form_sel = Selector::parse(form).unwrap();
        let form_el = html
            .select(&form_sel)
            .next()
            .unwrap_or_else(|| panic!("no {form} on {page_path}"));
        let action = form_el
            .value()
            .attr("action")
            .unwrap_or(page_path)
            .to_owned();
        let hidden = Selector::parse("input[type=hidden]").unwrap();
        let mut body: Vec<(String, String)> = form_el
            .select(&hidden)
            .filter_map(|i| {
                Some((
                    i.value().attr("name")?.to_owned(),
                    i.value().attr("value").unwrap_or("").to_owned(),
                ))
            })
            .filter(|(k, _)| !fields.iter().any(|(f, _)| f == k))
            .collect();
        body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::read(
            self.client
                .post(self.url(&action))
                .form(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The CSRF token the pages give this browser (from `hx-headers`).
    pub async fn csrf_token(&self) -> String {
        let page = self.get("/").await;
        let headers = page.attr("body", "hx-headers").expect("hx-headers on body");
        let v: serde_json::Value = serde_json::from_str(&headers).unwrap();
        v["X-CSRF-Token"].as_str().unwrap().to_owned()
    }

    /// An htmx POST: CSRF token as a header, like htmx sends it.
    pub async fn post_htmx(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf_token().await;
        Self::read(
            self.client
                .post(self.url(path))
                .header("HX-Request", "true")
                .header("X-CSRF-Token", token)
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookie(stagepass::router::SESSION_COOKIE)
    }

    /// The value of the cookie `name` this browser holds for the app.
    pub fn cookie(&self, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }
}
