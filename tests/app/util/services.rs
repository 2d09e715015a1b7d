//! The real services the suite runs against, started once per test run:
//! a migrated template database on the local Postgres, one `livekit-server
//! --dev` on free ports, and one `s3s-fs` (and, on first use by the payment
//! tests, one `stripe-mock`). A test never skips because a
//! service is missing: it fails and says what to run.
//!
//! Child processes are spawned from one long-lived thread with
//! PR_SET_PDEATHSIG, so they die with the test binary, however it ends.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

pub const LIVEKIT_KEY: &str = "stagepass-test";
pub const LIVEKIT_SECRET: &str = "stagepass-test-secret-0123456789abcdefghij";
pub const S3_KEY: &str = "stagepass-test";
pub const S3_SECRET: &str = "stagepass-test-s3-secret";
pub const S3_BUCKET: &str = "stagepass";

pub struct Services {
    /// `postgres://…/` without a database name.
    pub pg_base: String,
    pub template: String,
    /// The URL apps under test call LiveKit's APIs at: the stand-in proxy
    /// (see standin.rs), which answers Egress and Ingress itself.
    pub livekit_url: String,
    /// The real livekit-server (http://…), for clients and checks that must
    /// bypass the stand-in; browsers connect to its `ws://` form.
    pub livekit_direct_url: String,
    pub s3_url: String,
    /// Base URLs of the apps under test; LiveKit's webhooks are relayed to each.
    pub webhook_targets: Arc<Mutex<Vec<String>>>,
}

static SERVICES: OnceCell<Services> = OnceCell::const_new();

pub async fn get() -> &'static Services {
    SERVICES.get_or_init(start).await
}

/// The run's services if they are up (for `Drop`s, which cannot wait).
pub fn get_if_started() -> Option<&'static Services> {
    SERVICES.get()
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stagepass:stagepass@localhost:5432/postgres".to_owned())
}

pub fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-services");
    std::fs::create_dir_all(&dir).expect("creating target/test-services");
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .unwrap()
        .port()
}

async fn start() -> Services {
    let admin = admin_url();
    let pg_base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .expect("TEST_DATABASE_URL has a database");
    let template = prepare_template(&admin).await;
    let webhook_targets = Arc::new(Mutex::new(Vec::new()));
    let relay_port = start_webhook_relay(webhook_targets.clone());
    let (livekit_direct_url, s3_url) =
        tokio::task::spawn_blocking(move || start_processes(relay_port))
            .await
            .expect("starting services");
    let livekit_url = super::standin::start(livekit_direct_url.clone(), webhook_targets.clone());
    Services {
        pg_base,
        template,
        livekit_url,
        livekit_direct_url,
        s3_url,
        webhook_targets,
    }
}

async fn admin_conn(admin: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(admin).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to Postgres at {admin}: {e}\n\
             Run `scripts/setup` (or `make test`) to install and start it, or set TEST_DATABASE_URL."
        )
    })
}

/// A migrated database named after the migrations' content; tests clone it.
async fn prepare_template(admin: &str) -> String {
    let mut hasher = DefaultHasher::new();
    let mut files: Vec<_> = walk(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations"
    )));
    files.sort();
    for f in files {
        f.hash(&mut hasher);
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    let template = format!("stagepass_tpl_{:016x}", hasher.finish());
    let mut conn = admin_conn(admin).await;

    // Databases of earlier runs (one per test) are dropped once per run —
    // only those of runs that are over: test runs started at the same time
    // (other engineers, other worktrees) share this Postgres.
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let old: Vec<Name> = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'stagepass\\_t\\_%' \
         OR (datname LIKE 'stagepass\\_tpl\\_%' AND datname <> $1)",
    )
    .bind::<diesel::sql_types::Text, _>(&template)
    .load(&mut conn)
    .await
    .expect("listing old test databases");
    // A template of other migrations (another worktree's) may be in use by a
    // run that is cloning from it right now: templates go only when no other
    // test run is alive.
    let others_running = old.iter().any(|n| of_running_test(&n.datname));
    let stale = old.into_iter().filter(|n| {
        if n.datname.starts_with("stagepass_tpl_") {
            !others_running
        } else {
            !of_running_test(&n.datname)
        }
    });
    for Name { datname } in stale {
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"
        ))
        .execute(&mut conn)
        .await;
    }

    let exists: i64 = diesel::dsl::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM pg_database WHERE datname = '{template}')"
    )))
    .get_result(&mut conn)
    .await
    .unwrap();
    if exists == 0 {
        let building = format!("stagepass_build_{}", std::process::id());
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{building}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{building}", admin.rsplit_once('/').unwrap().0);
        let pool = stagepass::db::pool(&url, 1).unwrap();
        stagepass::db::migrate(&pool)
            .await
            .expect("migrating the template database");
        drop(pool);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Another test run may have won the race; then ours is dropped.
        let renamed = diesel::sql_query(format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
        ))
        .execute(&mut conn)
        .await;
        if renamed.is_err() {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
            ))
            .execute(&mut conn)
            .await;
        }
    }
    template
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading migrations/") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// Whether `datname` is a test database of a test binary still running
/// (`stagepass_t_{pid}_{uuid}`, see `create_database`).
fn of_running_test(datname: &str) -> bool {
    let Some(rest) = datname.strip_prefix("stagepass_t_") else {
        return false;
    };
    rest.split_once('_')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Creates a fresh database for one test, cloned from the template. Its name
/// carries this process's id, so a concurrent run leaves it alone.
pub async fn create_database(services: &Services) -> String {
    let name = format!(
        "stagepass_t_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = admin_conn(&admin_url()).await;
    diesel::sql_query(format!(
        "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
        services.template
    ))
    .execute(&mut conn)
    .await
    .expect("cloning the template database");
    format!("{}/{name}", services.pg_base)
}

pub fn find_binary(name: &str, env: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let cache =
        std::env::var("STAGEPASS_TOOLS").unwrap_or_else(|_| "/root/.cache/stagepass".into());
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain([PathBuf::from(cache).join("bin")])
        .map(|d| d.join(name))
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`{name}` is not installed. Run `scripts/setup` (or `make test`), or set {env} to its path.")
    })
}

fn wait_http_ok(url: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: String = tail
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    panic!(
        "{what} did not start on {url} within 30 s. Its log ({}):\n{tail}",
        log.display()
    );
}

/// Starts livekit-server and s3s-fs from a thread that lives as long as the
/// test binary (the PR_SET_PDEATHSIG parent), and answers their URLs.
#[allow(
    clippy::zombie_processes,
    reason = "the children live as long as the test binary and die with it"
)]
fn start_processes(relay_port: u16) -> (String, String) {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("test-services".into())
        .spawn(move || {
            let dir = target_dir();
            let livekit_port = free_port();
            let rtc_tcp = free_port();
            let rtc_udp = free_port();
            let config = format!(
                "port: {livekit_port}\n\
                 bind_addresses: [\"127.0.0.1\"]\n\
                 rtc:\n  tcp_port: {rtc_tcp}\n  udp_port: {rtc_udp}\n  use_external_ip: false\n  node_ip: 127.0.0.1\n\
                 keys:\n  {LIVEKIT_KEY}: {LIVEKIT_SECRET}\n\
                 webhook:\n  api_key: {LIVEKIT_KEY}\n  urls:\n    - http://127.0.0.1:{relay_port}/webhooks/livekit\n\
                 logging:\n  level: info\n"
            );
            let config_path = dir.join(format!("livekit-{}.yaml", std::process::id()));
            std::fs::File::create(&config_path).unwrap().write_all(config.as_bytes()).unwrap();
            let livekit_log = dir.join("livekit.log");
            let mut livekit = Command::new(find_binary("livekit-server", "LIVEKIT_SERVER_BIN"));
            livekit.arg("--dev").arg("--config").arg(&config_path);
            let _livekit = spawn_tied(livekit, &livekit_log);

            let s3_port = free_port();
            let s3_root = dir.join(format!("s3-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&s3_root);
            std::fs::create_dir_all(s3_root.join(S3_BUCKET)).unwrap();
            let s3_log = dir.join("s3s-fs.log");
            let mut s3 = Command::new(find_binary("s3s-fs", "S3S_FS_BIN"));
            s3.args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
                .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
                .arg(&s3_root);
            let _s3 = spawn_tied(s3, &s3_log);

            let livekit_url = format!("http://127.0.0.1:{livekit_port}");
            let s3_url = format!("http://127.0.0.1:{s3_port}");
            wait_http_ok(&livekit_url, "livekit-server", &livekit_log);
            wait_http_ok(&s3_url, "s3s-fs", &s3_log);
            tx.send((livekit_url, s3_url)).unwrap();
            // Keep this thread (the children's parent for PDEATHSIG) alive.
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("test services did not start")
}

pub fn spawn_tied(mut cmd: Command, log: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).unwrap();
    cmd.stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()))
}

/// LiveKit sends every webhook here; each app under test gets a copy (apps
/// ignore rooms they don't know). Runs on its own runtime for the whole run.
fn start_webhook_relay(targets: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name("webhook-relay".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = reqwest::Client::new();
                let relay = axum::Router::new().route(
                    "/webhooks/livekit",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                            let targets = targets.lock().unwrap().clone();
                            let client = client.clone();
                            async move {
                                for base in targets {
                                    let mut req = client
                                        .post(format!("{base}/webhooks/livekit"))
                                        .body(body.clone());
                                    for (name, value) in &headers {
                                        if name == "authorization" || name == "content-type" {
                                            req = req.header(name.as_str(), value.as_bytes());
                                        }
                                    }
                                    let _ = req.send().await;
                                }
                                "ok"
                            }
                        },
                    ),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, relay).await.unwrap();
            });
        })
        .unwrap();
    port
}

/// The run's stripe-mock (Stripe's API answered from its OpenAPI spec),
/// started on first use by the tests that pay: its base URL.
static STRIPE_MOCK: OnceCell<String> = OnceCell::const_new();

pub async fn stripe_mock() -> &'static str {
    STRIPE_MOCK
        .get_or_init(|| async {
            tokio::task::spawn_blocking(start_stripe_mock)
                .await
                .expect("starting stripe-mock")
        })
        .await
}

/// Like `start_processes`: the spawning thread stays alive as the child's
/// PR_SET_PDEATHSIG parent, so stripe-mock dies with the test binary.
#[allow(
    clippy::zombie_processes,
    reason = "the child lives as long as the test binary and dies with it"
)]
fn start_stripe_mock() -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("stripe-mock".into())
        .spawn(move || {
            let port = free_port();
            let log = target_dir().join("stripe-mock.log");
            let mut cmd = Command::new(find_binary("stripe-mock", "STRIPE_MOCK_BIN"));
            // Loopback only (-http-port would listen on every interface). Its
            // HTTPS listener otherwise takes :12112 on every interface, which a
            // second test run on this machine would then fail to bind.
            cmd.args(["-http-addr", &format!("127.0.0.1:{port}")]);
            cmd.args(["-https-addr", &format!("127.0.0.1:{}", free_port())]);
            let _stripe = spawn_tied(cmd, &log);
            let url = format!("http://127.0.0.1:{port}");
            wait_http_ok(&url, "stripe-mock", &log);
            tx.send(url).unwrap();
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("stripe-mock did not start")
}
