//! A Postgres cluster of one test's own, for tests that stop the database:
//! the run's shared Postgres serves every other test at the same time and
//! must never stop. Debian's server binaries (where `scripts/setup` installs
//! them, /usr/lib/postgresql/<version>/bin), `initdb` into a scratch
//! directory, one `postgres` process on a free port, run as the `postgres`
//! user when the tests run as root (the server refuses root).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// (uid, gid) to run the server as, when we are root.
    user: Option<(u32, u32)>,
    server: Option<Child>,
}

const ROLE: &str = "stagepass";

impl PrivatePostgres {
    /// A fresh cluster, started, with an empty database `stagepass`.
    pub async fn start() -> PrivatePostgres {
        let bin = server_bin_dir();
        let dir = std::env::temp_dir().join(format!("stagepass-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(postgres_user);
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut pg = PrivatePostgres {
            port: super::services::free_port(),
            bin,
            dir,
            user,
            server: None,
        };
        let data = pg.dir.join("data");
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_server().await;
        let mut conn = pg
            .connect("postgres")
            .await
            .expect("the new cluster answers");
        diesel::sql_query("CREATE DATABASE stagepass")
            .execute(&mut conn)
            .await
            .unwrap();
        pg
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    async fn connect(&self, database: &str) -> Result<AsyncPgConnection, String> {
        AsyncPgConnection::establish(&self.url(database))
            .await
            .map_err(|e| e.to_string())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Starts the server (again) on the same port and waits until it takes
    /// connections. It dies with the test's thread (PR_SET_PDEATHSIG), so a
    /// failed test leaves no server behind.
    pub async fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.server = Some(cmd.spawn().expect("starting postgres"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.connect("postgres").await {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the private Postgres did not start: {e}\n{}",
                    self.log()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: every
    /// backend quits at once, open connections drop, no checkpoint), as a
    /// crashed or fenced-off database would, and waits until it is gone.
    pub fn stop_immediately(&mut self) {
        let out = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w"])
            .output()
            .expect("running pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut server) = self.server.take() {
            server.wait().unwrap();
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest server version's binaries.
fn server_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|_| {
            panic!(
                "no PostgreSQL server under {}: run scripts/setup",
                root.display()
            )
        })
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("a PostgreSQL server with initdb: run scripts/setup")
}

/// The `postgres` system user, which the Debian package creates.
fn postgres_user() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage or null; it is
    // read at once, before any other call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the tests run as root, and Postgres refuses root: there is no `postgres` user to run it as (scripts/setup installs it)"
    );
    // SAFETY: checked non-null above.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}
