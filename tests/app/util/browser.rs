//! A real browser for the flows only a browser can check — camera and
//! microphone, WebRTC to LiveKit, htmx swaps: headless Chromium driven over
//! WebDriver (fantoccini). One chromedriver serves the whole test run; each
//! `Browser` is its own Chromium with a fresh profile and a fake camera.
//!
//! Nothing outlives the test binary: chromedriver is spawned like the other
//! services (PR_SET_PDEATHSIG), and Chromium through a `setpriv --pdeathsig`
//! wrapper so it dies with chromedriver (chromedriver itself leaves Chromium
//! running when killed). A `Browser` dropped without `close()` — a failed
//! test — deletes its WebDriver session synchronously in `Drop`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::services::{free_port, spawn_tied, target_dir};

/// How long a wait lasts before the test fails: generous, media takes a while.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,800",
];

struct Driver {
    url: String,
    chromium: PathBuf,
}

static DRIVER: OnceCell<Driver> = OnceCell::const_new();

/// The first of `candidates` (names looked up on PATH, or absolute paths) that exists.
fn find_program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        if name.starts_with('/') {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        path.split(':')
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
    })
}

async fn driver() -> &'static Driver {
    DRIVER.get_or_init(start_driver).await
}

#[allow(
    clippy::zombie_processes,
    reason = "chromedriver lives as long as the test binary and dies with it"
)]
async fn start_driver() -> Driver {
    let chromedriver = find_program(
        "CHROMEDRIVER_BIN",
        &["chromedriver", "/usr/bin/chromedriver"],
    )
    .unwrap_or_else(|| {
        panic!("`chromedriver` is not installed. Run `scripts/setup` (or set CHROMEDRIVER_BIN).")
    });
    let chromium = find_program(
        "CHROMIUM_BIN",
        &[
            "chromium",
            "chromium-browser",
            "/usr/bin/chromium",
            "google-chrome",
        ],
    )
    .unwrap_or_else(|| {
        panic!("Chromium is not installed. Run `scripts/setup` (or set CHROMIUM_BIN).")
    });
    let chromium = tied_chromium(&chromium);

    let port = free_port();
    let log = target_dir().join("chromedriver.log");
    let (tx, rx) = std::sync::mpsc::channel();
    // The children's parent for PDEATHSIG is this thread: it lives as long as the binary.
    std::thread::Builder::new()
        .name("chromedriver".into())
        .spawn(move || {
            let mut cmd = Command::new(&chromedriver);
            cmd.arg(format!("--port={port}"));
            let child = spawn_tied(cmd, &log);
            tx.send(child.id()).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("chromedriver did not start");

    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let ready = match client.get(format!("{url}/status")).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["value"]["ready"].as_bool()),
            Err(_) => None,
        };
        if ready == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url} within {TIMEOUT:?}; see {}",
            target_dir().join("chromedriver.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { url, chromium }
}

/// A launcher that gives Chromium PR_SET_PDEATHSIG, so it dies with
/// chromedriver. Without `setpriv` (util-linux), Chromium itself.
fn tied_chromium(chromium: &Path) -> PathBuf {
    let Some(setpriv) = find_program("SETPRIV_BIN", &["setpriv", "/usr/bin/setpriv"]) else {
        return chromium.to_owned();
    };
    let script = target_dir().join(format!("chromium-tied-{}", std::process::id()));
    let body = format!(
        "#!/bin/sh\n# Chromium for the browser tests: killed when chromedriver dies.\nexec {} --pdeathsig KILL {} \"$@\"\n",
        setpriv.display(),
        chromium.display()
    );
    std::fs::write(&script, body).expect("writing the Chromium launcher");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// One headless Chromium session. Helpers panic with what the page showed.
pub struct Browser {
    client: Client,
    session: String,
    driver_url: String,
    closed: bool,
    // Declared last: dropped after the session is gone.
    _profile: Profile,
}

/// Chromium's profile directory (Chromium creates it), removed when dropped.
struct Profile(PathBuf);

fn new_profile() -> Profile {
    Profile(std::env::temp_dir().join(format!(
        "stagepass-chromium-{}",
        uuid::Uuid::new_v4().simple()
    )))
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    pub async fn start() -> Browser {
        let driver = driver().await;
        Self::start_as(driver, &driver.chromium, new_profile(), false).await
    }

    /// A Chromium that trusts the certificate authority `root` (PEM) besides
    /// the web's: Chromium on Linux takes local roots from `$HOME/.pki/nssdb`,
    /// so this one gets a HOME of its own, inside its profile, whose NSS
    /// database holds `root`. It also keeps its network log (`protocols`).
    pub async fn start_trusting(root: &Path) -> Browser {
        let driver = driver().await;
        let profile = new_profile();
        let home = profile.0.join("home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let certutil = find_program("CERTUTIL_BIN", &["certutil", "/usr/bin/certutil"])
            .unwrap_or_else(|| {
                panic!("`certutil` is not installed. Run `scripts/setup` (libnss3-tools).")
            });
        let db = format!("sql:{}", nssdb.display());
        for args in [
            vec!["-d", &db, "-N", "--empty-password"],
            vec![
                "-d",
                &db,
                "-A",
                "-n",
                "stagepass-test-ca",
                "-t",
                "C,,",
                "-i",
                root.to_str().unwrap(),
            ],
        ] {
            let out = Command::new(&certutil).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let launcher = profile.0.join("chromium");
        let body = format!(
            "#!/bin/sh\n# Chromium with a HOME of its own (its NSS database trusts the test's CA).\nHOME={} exec {} \"$@\"\n",
            home.display(),
            driver.chromium.display()
        );
        std::fs::write(&launcher, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self::start_as(driver, &launcher, profile, true).await
    }

    async fn start_as(
        driver: &Driver,
        chromium: &Path,
        profile: Profile,
        network_log: bool,
    ) -> Browser {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        // Console messages, for the diagnostics of a failed wait; the network
        // log when asked for.
        let logging = if network_log {
            json!({ "browser": "ALL", "performance": "ALL" })
        } else {
            json!({ "browser": "ALL" })
        };
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": logging,
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("starting Chromium through chromedriver: {e}"));
        let session = client
            .session_id()
            .await
            .unwrap()
            .expect("chromedriver answers a session id");
        Browser {
            client,
            session,
            driver_url: driver.url.clone(),
            closed: false,
            _profile: profile,
        }
    }

    /// Every request the page makes from now on carries `name: value`
    /// (Chromium's DevTools, through chromedriver), navigations included.
    pub async fn send_header(&self, name: &str, value: &str) {
        self.cdp("Network.enable", json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({ "headers": { name: value } }),
        )
        .await;
    }

    /// For every response received since the last call (from a browser
    /// started with `start_trusting`): its resource type (Document,
    /// EventSource, Fetch, …), URL and protocol ("h2", "http/1.1", …).
    pub async fn protocols(&self) -> Vec<(String, String, String)> {
        let log = self.log("performance").await;
        log.iter()
            .filter_map(|e| {
                let m: Value = serde_json::from_str(e["message"].as_str()?).ok()?;
                let m = &m["message"];
                (m["method"] == "Network.responseReceived").then(|| {
                    let p = &m["params"];
                    (
                        p["type"].as_str().unwrap_or("").to_owned(),
                        p["response"]["url"].as_str().unwrap_or("").to_owned(),
                        p["response"]["protocol"].as_str().unwrap_or("").to_owned(),
                    )
                })
            })
            .collect()
    }

    /// Runs a DevTools command on the page's target; panics if it fails.
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/session/{}/goog/cdp/execute",
                self.driver_url, self.session
            ))
            .json(&json!({ "cmd": cmd, "params": params }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"));
        assert!(
            response.status().is_success(),
            "DevTools {cmd}: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.unwrap_or_default()
    }

    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("{}", self.report(&format!("opening {url}: {e}")).await);
        }
    }

    /// Signs in through the real sign-in form and waits for the signed-in page.
    pub async fn sign_in(&self, app_url: &str, email: &str, password: &str) {
        self.goto(&format!("{app_url}/signin")).await;
        self.wait_for("#signin-form #email")
            .await
            .send_keys(email)
            .await
            .unwrap();
        self.wait_for("#signin-form #password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.click("#signin-form [type=submit]").await;
        self.wait_for("[data-testid=nav-account]").await;
    }

    /// Waits (up to `TIMEOUT`) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                return el;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.report(&format!("no element matches `{css}` after {TIMEOUT:?}"))
                        .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (up to `timeout`) until `script` (a function body that
    /// `return`s) answers something truthy, and answers it.
    pub async fn wait_until(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.js(script).await;
            if truthy(&value) {
                return value;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.report(&format!(
                        "waited {timeout:?} for {what}; last answer: {value}"
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every chat stream (SSE connection) on the page is open.
    pub async fn wait_chat_open(&self) {
        self.wait_until(
            "the chat stream to connect",
            "const s = [...document.querySelectorAll('[sse-connect]')]; \
             return s.length > 0 && s.every(e => e['htmx-internal-data']?.sseEventSource?.readyState === 1)",
            TIMEOUT,
        )
        .await;
    }

    /// The rendered text of the first element matching `css` (waits for it).
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap_or_default()
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.wait_for(css).await.attr(name).await.unwrap()
    }

    /// Whether an element matches `css` right now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn click(&self, css: &str) {
        let el = self.wait_for(css).await;
        if let Err(e) = el.click().await {
            panic!("{}", self.report(&format!("clicking `{css}`: {e}")).await);
        }
    }

    /// Presses and releases `key` on the keyboard, as a person would: the
    /// page's focused element (or its body) receives real key events.
    /// Special keys are `fantoccini::key::Key` values, e.g. `Key::Down.into()`.
    pub async fn press(&self, key: char) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        if let Err(e) = self.client.perform_actions(actions).await {
            panic!("{}", self.report(&format!("pressing {key:?}: {e}")).await);
        }
    }

    /// Runs `script` (a function body; `return` a value, or a promise of one).
    pub async fn js(&self, script: &str) -> Value {
        match self.client.execute(script, vec![]).await {
            Ok(v) => v,
            Err(e) => panic!("script failed: {e}\n{script}"),
        }
    }

    /// Waits for a `confirm()`/`alert()` dialog, accepts it, answers its text.
    pub async fn accept_dialog(&self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(text) = self.client.get_alert_text().await {
                self.client.accept_alert().await.unwrap();
                return text;
            }
            if Instant::now() > deadline {
                panic!("{}", self.report("no dialog opened").await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves what the browser shows now as a PNG at `file` (creating its folder).
    pub async fn screenshot(&self, file: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("taking a screenshot: {e}"));
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(file, png).unwrap();
    }

    /// Switches to the window the page just opened (a form with
    /// `target="_blank"`), waiting for it; answers the window it left.
    pub async fn follow_new_window(&self) -> fantoccini::wd::WindowHandle {
        let first = self.client.window().await.unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let windows = self.client.windows().await.unwrap();
            if let Some(new) = windows.into_iter().find(|w| *w != first) {
                self.client.switch_to_window(new).await.unwrap();
                return first;
            }
            assert!(Instant::now() < deadline, "no new window opened");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Back to `window` (from `follow_new_window`).
    pub async fn switch_to(&self, window: fantoccini::wd::WindowHandle) {
        self.client.switch_to_window(window).await.unwrap();
    }

    /// Resizes the window (the page's viewport), e.g. to a phone's 390 px.
    pub async fn resize(&self, width: u32, height: u32) {
        if let Err(e) = self.client.set_window_size(width, height).await {
            panic!("resizing the window to {width}x{height}: {e}");
        }
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Makes the page's clock show `zone` (an IANA name, e.g. "Asia/Kolkata"),
    /// as if the machine ran there (Chromium's DevTools, through chromedriver).
    pub async fn time_zone(&self, zone: &str) {
        self.cdp(
            "Emulation.setTimezoneOverride",
            json!({ "timezoneId": zone }),
        )
        .await;
    }

    /// Ends the session (Chromium exits) and removes its profile.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.closed = true;
    }

    /// What the browser shows, for a failure message: URL, page text, console
    /// messages, and a screenshot saved under target/test-services/screenshots/.
    async fn report(&self, what: &str) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text: String = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
            .chars()
            .take(2000)
            .collect();
        let console = self.console().await;
        let shot = target_dir()
            .join("screenshots")
            .join(format!("{}.png", self.session));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::create_dir_all(shot.parent().unwrap());
            let _ = std::fs::write(&shot, png);
        }
        format!(
            "{what}\nat {url}\n--- page text ---\n{text}\n--- console ---\n{console}\n--- screenshot: {} ---",
            shot.display()
        )
    }

    /// The browser's console messages since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> String {
        self.log("browser")
            .await
            .iter()
            .map(|e| {
                format!(
                    "[{}] {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The entries of chromedriver's log `kind` since the last call (none if it fails).
    async fn log(&self, kind: &str) -> Vec<Value> {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&json!({ "type": kind }))
            .send()
            .await;
        let Ok(response) = response else {
            return Vec::new();
        };
        let Ok(mut log) = response.json::<Value>().await else {
            return Vec::new();
        };
        match log["value"].take() {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.closed {
            // A failed test: the runtime may be gone, so no async here.
            delete_session(&self.driver_url, &self.session);
        }
    }
}

/// DELETE /session/{id} over a plain blocking socket (chromedriver then quits Chromium).
fn delete_session(driver_url: &str, session: &str) {
    let addr = driver_url.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // chromedriver answers once Chromium has quit (and may keep the
        // connection open regardless of `Connection: close`): one read will do.
        let _ = stream.read(&mut [0; 1024]);
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Refreshes a README picture from `shot` only when asked (`STAGEPASS_UPDATE_DOCS=1
/// make test`), so an ordinary test run leaves the work tree clean.
pub fn copy_to_docs(shot: &Path, name: &str) {
    if std::env::var_os("STAGEPASS_UPDATE_DOCS").is_none() {
        return;
    }
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(shot, docs.join(name)).unwrap();
}

/// The owner `email`, in Chromium, signs in at `url` and goes live with
/// stream `stream` from the broadcast page, with the fake camera.
pub async fn go_live_at(url: &str, email: &str, stream: stagepass::db::StreamId) -> Browser {
    go_live_in(Browser::start().await, url, email, stream).await
}

/// Like `go_live_at`, in the Chromium `owner`.
pub async fn go_live_in(
    owner: Browser,
    url: &str,
    email: &str,
    stream: stagepass::db::StreamId,
) -> Browser {
    owner.sign_in(url, email, crate::util::PASSWORD).await;
    owner
        .goto(&format!("{url}/studio/streams/{stream}/broadcast"))
        .await;
    owner
        .wait_until(
            "the camera preview",
            "return document.getElementById('preview').videoWidth > 0",
            TIMEOUT,
        )
        .await;
    owner.click("#go-live-form [type=submit]").await;
    owner.wait_for("#broadcast[data-status=live]").await;
    owner
        .wait_until(
            "the broadcast to connect",
            "return document.getElementById('connection-state')?.dataset.state === 'live'",
            2 * TIMEOUT,
        )
        .await;
    owner
}
