//! The `stagepass` command: serve the app, migrate the database, load demo
//! data, make or unmake instance admins.

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use stagepass::config::Config;
use stagepass::{AppState, db, demo, telemetry};

/// jemalloc (the default feature): after a peak of uploads or sign-ins,
/// glibc's malloc kept the freed memory in its heaps (5x the idle RSS after
/// make bench's soak), jemalloc returns it to the system within seconds.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "stagepass",
    version,
    about = "Live streaming for creators who sell access.",
    long_about = "stagepass: live streaming for creators who sell access.\n\n\
    Every setting comes from environment variables (a .env file in the working \
    directory is read first); see the README for the full list and defaults."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations, then serve the web app on BIND_ADDR until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit (serve also does this at start-up).
    Migrate,
    /// Load demo data (a creator with a channel and a scheduled stream, a viewer with an
    /// active pass, a moderator) and print how to sign in as each. Safe to run again.
    Demo,
    /// Instance admins (the /admin console): who may run this instance's users and channels.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make the account with this email an instance admin (it must have signed up).
    Grant { email: String },
    /// Take the account's admin rights away.
    Revoke { email: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Development convenience: a missing .env is fine, a broken one is not.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        anyhow::bail!("reading .env: {e}");
    }
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stagepass: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init_tracing(config.log_format);
    let pool = db::pool(
        config.database_url.expose_secret(),
        config.database_pool_size,
    )?;

    match cli.command {
        Command::Migrate => {
            let applied = db::migrate(&pool).await?;
            println!(
                "migrations applied: {}",
                if applied.is_empty() {
                    "none pending".into()
                } else {
                    applied.join(", ")
                }
            );
        }
        Command::Demo => {
            db::migrate(&pool).await?;
            let mut conn = pool.get().await.context("connecting to the database")?;
            let accounts = demo::load(&mut conn).await?;
            println!("{}", demo::describe(accounts, &config));
        }
        Command::Admin { command } => {
            db::migrate(&pool).await?;
            let mut conn = pool.get().await.context("connecting to the database")?;
            let (email, admin) = match &command {
                AdminCommand::Grant { email } => (email, true),
                AdminCommand::Revoke { email } => (email, false),
            };
            match db::users::set_admin(&mut conn, email, admin).await? {
                Some(user) => {
                    db::audit::record(
                        &mut conn,
                        None,
                        None,
                        if admin {
                            "admin.granted"
                        } else {
                            "admin.revoked"
                        },
                        Some(&user.id.to_string()),
                        serde_json::json!({ "email": user.email, "by": "command line" }),
                    )
                    .await?;
                    if admin {
                        println!(
                            "{} is an instance admin: the console is at {}admin",
                            user.email, config.public_url
                        );
                    } else {
                        println!("{} is no longer an instance admin", user.email);
                    }
                }
                None => {
                    eprintln!(
                        "stagepass: no account has the email {email:?}; sign up first, then run this again"
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Serve => {
            if let Err(e) = config.check_static_dir() {
                eprintln!("stagepass: {e}");
                std::process::exit(2);
            }
            let applied = db::migrate(&pool).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
            let listener = tokio::net::TcpListener::bind(config.bind)
                .await
                .with_context(|| format!("BIND_ADDR: cannot listen on {}", config.bind))?;
            tracing::info!(addr = %config.bind, url = %config.public_url, "stagepass is serving");
            let state = AppState::new(config, pool);
            stagepass::serve(listener, state, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
