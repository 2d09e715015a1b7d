//! The deployment kit of `deploy/`, on one machine, for the cluster test
//! (`make test-cluster`): one Redis; two livekit-server nodes in cluster
//! mode on it; two `stagepass serve` processes on one database; and Caddy
//! in front, serving the kit's own site blocks (`deploy/Caddyfile`, with
//! the test's global options in place of the kit's) with TLS from Caddy's
//! own certificate authority, which the test's clients trust (reqwest
//! personas, and Chromium through `Browser::start_trusting`).
//!
//! | address                  | what                                                  |
//! |--------------------------|-------------------------------------------------------|
//! | `https://localhost:{p}`  | the app (PUBLIC_URL): both instances, health-checked  |
//! | `wss://localhost:{q}`    | LiveKit's signalling, for browsers: both nodes        |
//! | `http://127.0.0.1:{l}`   | the app's private way to LiveKit's API: both nodes    |
//!
//! The private way exists because the app's LiveKit client trusts the web's
//! roots only, and Caddy's own authority is not one of them; in production
//! LIVEKIT_URL can be the public `https://` name. LiveKit's webhooks go
//! through the proxy like any request (livekit-server trusts Caddy's
//! authority through SSL_CERT_FILE), so either instance may receive one.
//!
//! A request carrying `X-Stagepass-Instance: a` (or `b`) goes to that
//! instance alone (a file in the kit's import folder): how a test puts a
//! persona, or a Chromium, on one instance.
//!
//! Every process but the app instances is spawned by a thread of the
//! cluster's own (their PR_SET_PDEATHSIG parent), which kills them all when
//! the `Cluster` is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::TestApp;
use super::instance::Instance;
use super::services::{self, LIVEKIT_KEY, LIVEKIT_SECRET, free_port, spawn_tied, target_dir};

/// The request header the proxy routes to one instance by (`a` or `b`).
pub const PIN: &str = "x-stagepass-instance";

pub struct Cluster {
    /// The deployment as its users reach it: `url` is the proxy's HTTPS
    /// address; `state` has its database and its LiveKit API (through the
    /// private way). Serves nothing itself.
    pub app: TestApp,
    /// The running app instances, by name (a, b).
    instances: std::sync::Mutex<Vec<(&'static str, Instance)>>,
    pub nodes: Vec<Node>,
    /// Caddy's root certificate (PEM).
    pub ca: PathBuf,
    /// Logs and configuration of every process: target/test-services/cluster-{pid}/.
    pub dir: PathBuf,
    redis_port: u16,
    procs: Procs,
}

/// One livekit-server node.
pub struct Node {
    /// Its `region` in its configuration: node-a, node-b.
    pub name: &'static str,
    /// Its node id (`ND_…`, new at every start), from its log.
    pub id: String,
    pid: u32,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let services = services::get().await;
        let dir = target_dir().join(format!("cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("caddy.d")).unwrap();
        let procs = Procs::start();

        let redis_port = free_port();
        let mut redis = Command::new(services::find_binary("redis-server", "REDIS_SERVER_BIN"));
        redis
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        procs.spawn(redis, &dir.join("redis.log"));

        // Caddy first: the nodes need its authority's certificate.
        let (app_port, media_port, turn_port, private_port) =
            (free_port(), free_port(), free_port(), free_port());
        let (a_port, b_port) = (free_port(), free_port());
        let node_ports = [free_port(), free_port()];
        let url = format!("https://localhost:{app_port}");
        let ca = dir.join("caddy/pki/authorities/local/root.crt");
        std::fs::write(dir.join("caddy.d/instances.caddy"), pins(a_port, b_port)).unwrap();
        let caddyfile = dir.join("Caddyfile");
        std::fs::write(&caddyfile, caddyfile_text(&dir, private_port, node_ports)).unwrap();
        let upstreams = |ports: &[u16]| {
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut caddy = Command::new(services::find_binary("caddy", "CADDY_BIN"));
        caddy
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", dir.join("caddy-config"))
            .env("XDG_DATA_HOME", dir.join("caddy-data"))
            .env("STAGEPASS_DOMAIN", format!("localhost:{app_port}"))
            .env("LIVEKIT_DOMAIN", format!("localhost:{media_port}"))
            .env("TURN_DOMAIN", format!("localhost:{turn_port}"))
            .env("STAGEPASS_UPSTREAMS", upstreams(&[a_port, b_port]))
            .env("LIVEKIT_UPSTREAMS", upstreams(&node_ports))
            .env("STAGEPASS_CADDY_D", dir.join("caddy.d"));
        procs.spawn(caddy, &dir.join("caddy.log"));
        wait_for(&dir.join("caddy.log"), "Caddy's root certificate", || {
            ca.is_file()
        });
        let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .build()
            .unwrap();
        wait_until(&dir.join("caddy.log"), "Caddy to serve HTTPS", || {
            let client = client.clone();
            let url = url.clone();
            async move { client.get(format!("{url}/readyz")).send().await.is_ok() }
        })
        .await;

        let mut nodes = Vec::new();
        for (name, port) in ["node-a", "node-b"].into_iter().zip(node_ports) {
            nodes.push(start_node(&procs, &dir, name, port, redis_port, &url, &ca).await);
        }

        let database_url = services::create_database(services).await;
        let mut env = super::settings(services, database_url, &url);
        env.remove("LIVEKIT_ROOM_PREFIX"); // the cluster's LiveKit is its own
        for (k, v) in [
            ("LIVEKIT_URL", format!("http://127.0.0.1:{private_port}")),
            (
                "LIVEKIT_PUBLIC_URL",
                format!("wss://localhost:{media_port}"),
            ),
            ("LIVEKIT_INGRESS", "false".into()),
            ("TRUST_PROXY_HEADERS", "true".into()),
            // Reconcile every 2 s (not every minute), and retry outgoing
            // webhooks fast, so that two instances doing both are seen doing
            // each once within the test.
            ("LIVEKIT_RECONCILE_SECONDS", "2".into()),
            // A stream whose room's node died ends after this when nobody
            // comes back to it: 45 s (not 2 minutes), longer than the test
            // gives the host to rejoin (REJOIN in cluster.rs).
            ("LIVEKIT_DEPARTURE_TIMEOUT_SECONDS", "45".into()),
            ("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "true".into()),
            ("WEBHOOKS_BACKOFF_BASE_MS", "200".into()),
        ] {
            env.insert(k.to_owned(), v);
        }
        let a = Instance::behind_proxy(&env, a_port, &dir.join("app-a.log")).await;
        let b = Instance::behind_proxy(&env, b_port, &dir.join("app-b.log")).await;
        let app = TestApp::handle(&url, env, root).await;
        let cluster = Cluster {
            app,
            instances: std::sync::Mutex::new(vec![("a", a), ("b", b)]),
            nodes,
            ca,
            dir,
            redis_port,
            procs,
        };
        for which in ["a", "b"] {
            let who = cluster.app.anonymous().with_header((PIN, which));
            wait_until(
                &cluster.dir.join("caddy.log"),
                "the proxy to reach both instances",
                || {
                    let who = who.clone();
                    async move { who.get("/readyz").await.status.is_success() }
                },
            )
            .await;
        }
        cluster
    }

    /// The node that hosts `room`, as LiveKit's cluster records it in Redis.
    pub fn node_of(&self, room: &str) -> Option<&Node> {
        let out = Command::new(services::find_binary("redis-cli", "REDIS_CLI_BIN"))
            .args([
                "-p",
                &self.redis_port.to_string(),
                "HGET",
                "room_node_map",
                room,
            ])
            .output()
            .expect("redis-cli runs");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Kills the node named `name` as a crash would (SIGKILL).
    pub fn kill_node(&self, name: &str) {
        let node = self.nodes.iter().find(|n| n.name == name).unwrap();
        self.procs.kill(node.pid);
    }

    /// Kills app instance `which` (a or b) as a crash would (SIGKILL).
    pub async fn kill_instance(&self, which: &str) {
        let instance = {
            let mut instances = self.instances.lock().unwrap();
            let at = instances
                .iter()
                .position(|(name, _)| *name == which)
                .expect("the instance runs");
            instances.remove(at).1
        };
        instance.kill().await;
    }

    /// Whether instance `which` has the metric `name` at all (a counter
    /// appears once it was counted, even by zero).
    pub async fn has_metric(&self, which: &str, name: &str) -> bool {
        let text = self.metrics_text(which).await;
        text.lines()
            .any(|l| l.split(['{', ' ']).next() == Some(name))
    }

    /// The sum of the metric `name` (all its label sets) on instance `which`,
    /// asked at the instance's own address (not through the proxy).
    pub async fn metric(&self, which: &str, name: &str) -> f64 {
        self.metric_with(which, name, &[]).await
    }

    /// Like `metric`, for the label sets that contain each of `labels`
    /// (e.g. `method="POST"`).
    pub async fn metric_with(&self, which: &str, name: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics_text(which).await, name, labels)
    }

    /// Instance `which`'s /metrics, asked at its own address.
    async fn metrics_text(&self, which: &str) -> String {
        let url = {
            let instances = self.instances.lock().unwrap();
            let (_, instance) = instances
                .iter()
                .find(|(n, _)| *n == which)
                .expect("the instance runs");
            instance.url.clone()
        };
        reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The sum of the samples of `name` whose labels contain each of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The kit's Caddyfile with the test's global options instead of its own
/// (no ACME, no change to the machine's trust store, loopback ports, state
/// in `dir`), and the app's private way to LiveKit's API.
fn caddyfile_text(dir: &Path, private_port: u16, node_ports: [u16; 2]) -> String {
    let kit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/Caddyfile"))
        .expect("reading deploy/Caddyfile");
    // The kit's global options: the first block that opens with a line "{".
    let open = kit
        .find("\n{\n")
        .expect("deploy/Caddyfile has global options");
    let close = open + kit[open..].find("\n}\n").expect("its global options end");
    let sites = &kit[close + 3..];
    format!(
        "{{\n\tadmin off\n\tskip_install_trust\n\tdefault_bind 127.0.0.1\n\thttp_port {http}\n\thttps_port {https}\n\tstorage file_system {storage}\n}}\n\
         {sites}\n\
                  # The app's private way to LiveKit's API (see tests/app/util/cluster.rs),\n\
         # as the kit's LiveKit site balances it.\n\
         http://127.0.0.1:{private_port} {{\n\
         \treverse_proxy 127.0.0.1:{n1} 127.0.0.1:{n2} {{\n\
         \t\thealth_uri /\n\t\thealth_interval 5s\n\t\tfail_duration 30s\n\t\tlb_try_duration 5s\n\
         \t}}\n}}\n",
        http = free_port(),
        https = free_port(),
        storage = dir.join("caddy").display(),
        n1 = node_ports[0],
        n2 = node_ports[1],
    )
}

/// The routes by `X-Stagepass-Instance`, in the kit's import folder.
fn pins(a: u16, b: u16) -> String {
    [("a", a), ("b", b)]
        .into_iter()
        .map(|(name, port)| {
            format!(
                "@instance_{name} header X-Stagepass-Instance {name}\n\
                 reverse_proxy @instance_{name} 127.0.0.1:{port} {{\n\
                 \ttransport http {{\n\t\tversions h2c\n\t}}\n\tflush_interval -1\n}}\n"
            )
        })
        .collect()
}

async fn start_node(
    procs: &Procs,
    dir: &Path,
    name: &'static str,
    port: u16,
    redis_port: u16,
    app_url: &str,
    ca: &Path,
) -> Node {
    // As deploy/livekit.yaml, on loopback ports. `region` names the node;
    // rooms go to the node with the fewest (`sort_by: rooms`), and who is in
    // a room is asked of its node (`api`), as in the kit.
    let config = format!(
        "port: {port}\n\
         bind_addresses: [\"127.0.0.1\"]\n\
         region: {name}\n\
         redis:\n  address: 127.0.0.1:{redis_port}\n\
         rtc:\n  tcp_port: {tcp}\n  udp_port: {udp}\n  use_external_ip: false\n  node_ip: 127.0.0.1\n\
         node_selector:\n  kind: any\n  sort_by: rooms\n\
         api:\n  enable_psrpc_for_get_list_participants: true\n\
         keys:\n  {LIVEKIT_KEY}: {LIVEKIT_SECRET}\n\
         webhook:\n  api_key: {LIVEKIT_KEY}\n  urls:\n    - {app_url}/webhooks/livekit\n\
         logging:\n  level: info\n",
        tcp = free_port(),
        udp = free_port(),
    );
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(services::find_binary(
        "livekit-server",
        "LIVEKIT_SERVER_BIN",
    ));
    cmd.arg("--config").arg(&file).env("SSL_CERT_FILE", ca);
    let pid = procs.spawn(cmd, &log);
    let mut id = String::new();
    wait_for(&log, &format!("livekit-server {name} to start"), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.contains("starting LiveKit server")) else {
            return false;
        };
        let Some(rest) = line.split("\"nodeID\": \"").nth(1) else {
            return false;
        };
        id = rest.split('"').next().unwrap_or("").to_owned();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Node { name, id, pid }
}

/// Waits up to 30 s for `ready`; then fails with the tail of `log`.
fn wait_for(log: &Path, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{}", failed(log, what));
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn wait_until<F, Fut>(log: &Path, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "{}", failed(log, what));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failed(log: &Path, what: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<_> = text.lines().rev().take(20).collect();
    let tail: Vec<_> = tail.into_iter().rev().collect();
    format!(
        "waited 30 s for {what}. The log ({}):\n{}",
        log.display(),
        tail.join("\n")
    )
}

/// The cluster's processes: spawned, and killed, by one thread, which is
/// their PR_SET_PDEATHSIG parent; it kills them all when `Procs` is dropped.
struct Procs {
    orders: mpsc::Sender<Order>,
}

enum Order {
    Spawn(Box<Command>, PathBuf, mpsc::Sender<u32>),
    Kill(u32, mpsc::Sender<()>),
}

impl Procs {
    fn start() -> Procs {
        let (orders, inbox) = mpsc::channel::<Order>();
        std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || {
                let mut children = Vec::new();
                for order in inbox {
                    match order {
                        Order::Spawn(cmd, log, reply) => {
                            let child = spawn_tied(*cmd, &log);
                            let _ = reply.send(child.id());
                            children.push(child);
                        }
                        Order::Kill(pid, reply) => {
                            if let Some(child) = children.iter_mut().find(|c| c.id() == pid) {
                                let _ = child.kill();
                                let _ = child.wait();
                            }
                            let _ = reply.send(());
                        }
                    }
                }
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            })
            .unwrap();
        Procs { orders }
    }

    fn spawn(&self, cmd: Command, log: &Path) -> u32 {
        let (tx, rx) = mpsc::channel();
        self.orders
            .send(Order::Spawn(Box::new(cmd), log.to_owned(), tx))
            .unwrap();
        rx.recv().expect("the cluster's thread spawns it")
    }

    fn kill(&self, pid: u32) {
        let (tx, rx) = mpsc::channel();
        self.orders.send(Order::Kill(pid, tx)).unwrap();
        rx.recv().expect("the cluster's thread kills it");
    }
}
