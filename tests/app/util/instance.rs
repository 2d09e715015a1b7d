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
        Self::spawn(&app.env, None, false).await
    }

    /// Starts `stagepass serve` with these settings (environment variable
    /// names) on `port` (a free one if None) and waits until it is ready.
    /// LiveKit's webhooks reach it like every app under test.
    pub async fn start_with(env: &HashMap<String, String>, port: Option<u16>) -> Instance {
        Self::spawn(env, port, true).await
    }

    async fn spawn(env: &HashMap<String, String>, port: Option<u16>, webhooks: bool) -> Instance {
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
            .env("PUBLIC_URL", &url)
            .env("RUST_LOG", "warn,stagepass=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
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
        if webhooks {
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
