//! Another instance of the deployment under test: the real `stagepass serve`
//! binary in a process of its own, on the same database and services as a
//! `TestApp`, so that a test can kill it (SIGKILL) and watch the survivor.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::TestApp;

pub struct Instance {
    pub url: String,
    child: Child,
}

impl Instance {
    /// Starts `stagepass serve` with `app`'s settings on a port of its own,
    /// and waits until it answers.
    pub async fn start(app: &TestApp) -> Instance {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_stagepass"));
        command
            .arg("serve")
            .current_dir(super::services::target_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&app.env)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", &url)
            .env("RUST_LOG", "warn,stagepass=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = command.spawn().expect("stagepass serve starts");
        let instance = Instance { url, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", instance.url)).send().await
                && r.status().is_success()
            {
                return instance;
            }
            assert!(
                Instant::now() < deadline,
                "the second instance did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills it as a crash would: SIGKILL, no shutdown of any kind.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}
