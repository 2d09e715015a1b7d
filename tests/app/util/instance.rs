//! Another instance of the deployment under test: the real `stagepass serve`
//! binary in a process of its own, on the same database and services as a
//! `TestApp` (or on settings of the test's own), so that a test can kill it
//! (SIGKILL) and watch the survivor, or start it again where it served.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::TestApp;

pub struct Instance {
    pub url: String,
    pub port: u16,
    child: Child,
}

impl Instance {
    /// Starts `stagepass serve` with `app`'s settings on a port of its own,
    /// and waits until it answers.
    /// LiveKit's webhooks keep going to `app` alone (one copy per
    /// deployment, as a load balancer would hand each to one instance).
    pub async fn start(app: &TestApp) -> Instance {
        Self::spawn(&app.env, None, Reached::Directly { webhooks: false }).await
    }

    /// Starts `stagepass serve` with these settings (environment variable
    /// names) on `port` (a free one if None) and waits until it is ready.
    /// LiveKit's webhooks reach it like every app under test.
    pub async fn start_with(env: &HashMap<String, String>, port: Option<u16>) -> Instance {
        Self::spawn(env, port, Reached::Directly { webhooks: true }).await
    }

    /// Starts `stagepass serve` with these settings on `port`, as one of the
    /// instances behind a proxy: `env`'s PUBLIC_URL is the proxy's, and
    /// LiveKit's webhooks come through the proxy too (not the run's relay).
    /// Its log goes to `log`.
    pub async fn behind_proxy(
        env: &HashMap<String, String>,
        port: u16,
        log: &std::path::Path,
    ) -> Instance {
        Self::spawn(env, Some(port), Reached::ThroughProxy(log.to_owned())).await
    }

    async fn spawn(env: &HashMap<String, String>, port: Option<u16>, reached: Reached) -> Instance {
        let port = port.unwrap_or_else(super::services::free_port);
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stagepass"));
        command
            .arg("serve")
            .current_dir(super::services::target_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,stagepass=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match &reached {
            Reached::Directly { .. } => {
                command.env("PUBLIC_URL", &url).stderr(Stdio::inherit());
            }
            Reached::ThroughProxy(log) => {
                let file = std::fs::File::create(log).expect("creating the instance's log");
                command.stdout(file.try_clone().unwrap()).stderr(file);
            }
        }
        let child = command.spawn().expect("stagepass serve starts");
        let instance = Instance { url, port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", instance.url)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the instance on port {port} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Reached::Directly { webhooks: true } = reached {
            super::services::get()
                .await
                .webhook_targets
                .lock()
                .unwrap()
                .push(instance.url.clone());
        }
        instance
    }

    /// Kills it as a crash would: SIGKILL, no shutdown of any kind.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}

/// How clients and LiveKit's webhooks reach an instance.
enum Reached {
    /// At its own address; `webhooks`: the run's relay sends it LiveKit's.
    Directly { webhooks: bool },
    /// Through a proxy (its PUBLIC_URL); its log goes to this file.
    ThroughProxy(std::path::PathBuf),
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(services) = super::services::get_if_started() {
            services
                .webhook_targets
                .lock()
                .unwrap()
                .retain(|u| u != &self.url);
        }
    }
}
