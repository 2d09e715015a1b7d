//! Every setting of stagepass, read once from the environment at start-up.
//!
//! `Config::from_env` collects *all* problems before failing, so an operator
//! fixes a broken `.env` in one pass; each message names the variable and what
//! is wrong with it. Secrets are `SecretString`s: `Debug` never prints them.
//! Nothing else in the crate reads environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Development credentials of `livekit-server --dev`; refused for public deployments.
pub const DEV_LIVEKIT_KEY: &str = "devkey";
pub const DEV_LIVEKIT_SECRET: &str = "secret";

#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// The URL users reach the app at; decides cookie `Secure`, CSRF origin checks, links.
    pub public_url: Url,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    /// Sessions end after this long without a request...
    pub session_idle_timeout: Duration,
    /// ...and after this long in any case.
    pub session_absolute_timeout: Duration,
    /// Trust `X-Forwarded-For` for the client address (only behind a proxy you run).
    pub trust_proxy_headers: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
    pub log_format: LogFormat,
    /// The folder served at /static (the checkout's `static/`, with the
    /// browser assets `scripts/setup` copies into `static/vendor/`).
    pub static_dir: std::path::PathBuf,
    pub livekit: LiveKitConfig,
    pub s3: S3Config,
    pub payments: PaymentsConfig,
    pub webhooks: OutgoingWebhooksConfig,
    pub limits: LimitsConfig,
    /// Who may create channels (`CREATORS`).
    pub creators: Creators,
}

/// `CREATORS`: anyone signed in creates channels (`open`), or only users an
/// instance admin approved (`approval`; they apply at /creators/apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creators {
    Open,
    Approval,
}

/// At most `max` of something within `window` (counted in Postgres, see `crate::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// Flood limits: what a stranger, an address or an account may do how often.
/// Every unauthenticated POST and every cheap-to-repeat expensive one has one
/// (README, "Limits").
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Failed sign-ins counted over this window, by the limits below.
    pub sign_in_window: Duration,
    /// For one account from one address (a guesser).
    pub sign_in_failures_per_account_and_address: u32,
    /// From one address over all accounts (credential stuffing).
    pub sign_in_failures_per_address: u32,
    /// For one account from anywhere (guessing spread over many addresses).
    /// Browsers that signed in to the account before are not held by it.
    pub sign_in_failures_per_account: u32,
    /// A known browser with this many failures of its own is known no longer.
    pub sign_in_failures_per_device: u32,
    /// Wrong current passwords on the account page, per account (in the sign-in window).
    pub password_change_failures: u32,
    /// Sign-up attempts (accounts created or emails found taken) per address,
    pub sign_ups_per_address: Limit,
    /// and across the whole instance (a flood spread over many addresses).
    pub sign_ups_per_instance: Limit,
    /// Failed code redemptions per account, and per address over all accounts.
    pub redeem_failures_per_account: Limit,
    pub redeem_failures_per_address: Limit,
    /// Purchases started per account (each is an order and a call to Stripe,
    /// whose own rate limit is the whole site's).
    pub checkouts_per_account: Limit,
    /// Channels created per account.
    pub channels_per_account: Limit,
    /// Guests' viewer tokens per address (every reconnect asks for one).
    pub guest_tokens_per_address: Limit,
    /// Open chat event streams (SSE) of one account to one stream, and in all,
    /// on one app instance.
    pub chat_streams_per_user_and_stream: usize,
    pub chat_streams_per_user: usize,
}

/// Channels' outgoing webhooks (the delivery worker).
#[derive(Debug, Clone)]
pub struct OutgoingWebhooksConfig {
    /// Deliver to URLs whose host is loopback, private or link-local. Off by
    /// default: owners type these URLs, and the server must not become their
    /// way into the operator's own network (SSRF). Tests and `make run` turn it on.
    pub allow_private_addresses: bool,
    /// The first retry waits this long; later ones wait multiples of it
    /// (3×, 12×, 60×, 360×…: 10 s, 30 s, 2 min, 10 min, 1 h… by default).
    pub backoff_base: Duration,
    /// Attempts before a delivery is given up (status failed).
    pub max_attempts: i32,
}

#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    /// Server-to-server API URL (http/https).
    pub url: Url,
    /// URL handed to browsers (ws/wss).
    pub public_url: Url,
    pub api_key: String,
    pub api_secret: SecretString,
    /// Every room this deployment creates starts with it; the reconciler only
    /// touches rooms with it, so several deployments can share one LiveKit.
    pub room_prefix: String,
    /// Layout of recorded (room composite) video: `speaker`, `grid`, `single-speaker`.
    pub recording_layout: String,
    /// Who records: the built-in recorder (default) or LiveKit's Egress service.
    pub recorder: Recorder,
    pub max_participants: u32,
    /// How long a room waits for its first participant before LiveKit closes it.
    pub empty_timeout: Duration,
    /// How long a room stays after the last participant left (a host refreshing
    /// the broadcast page must not end the stream); also how long the
    /// reconciler waits for the host of a room stranded on a dead LiveKit node.
    pub departure_timeout: Duration,
    /// LiveKit's Ingress service runs beside the server (`LIVEKIT_INGRESS`):
    /// only then can OBS stream over RTMP. WHIP needs nothing else.
    pub ingress: bool,
    /// How often the reconciler compares live streams with LiveKit's rooms
    /// (it also runs at start-up): the longest an orphan lives when LiveKit's
    /// webhooks were lost.
    pub reconcile_every: Duration,
}

/// Who records streams (`RECORDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    /// The app joins the room as a hidden participant and writes the host's
    /// tracks, as they arrive, to S3 (`src/recorder/`). Needs nothing else.
    Builtin,
    /// LiveKit's Egress service (RoomComposite, MP4), for operators who run it.
    Egress,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: Option<Url>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub force_path_style: bool,
}

/// How viewers pay: Stripe Checkout, or the development provider that takes no money.
#[derive(Debug, Clone)]
pub enum PaymentsConfig {
    /// Completes purchases on a confirmation page of our own; for `make run`.
    Dev,
    Stripe(StripeConfig),
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or stripe-mock in tests.
    pub api_base: Url,
    pub secret_key: SecretString,
    /// Signs the events Stripe sends to /webhooks/stripe (`whsec_…`).
    pub webhook_secret: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// All the problems found in the environment, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads in development).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`, so tests can pass their own values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Reader {
            get: &get,
            errors: Vec::new(),
        };

        let bind = env.parse("BIND_ADDR", "127.0.0.1:8080", |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "must be an address like 127.0.0.1:8080".into())
        });
        let public_url = env.parse("PUBLIC_URL", "http://localhost:8080", http_url);
        let database_url = env.secret(
            "DATABASE_URL",
            "postgres://stagepass:stagepass@localhost:5432/stagepass",
        );
        let database_pool_size =
            env.parse("DATABASE_POOL_SIZE", "16", |v| match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("must be a whole number from 1 to 1000".into()),
            });
        let session_idle_timeout = env.parse("SESSION_IDLE_TIMEOUT_MINUTES", "10080", minutes);
        let session_absolute_timeout =
            env.parse("SESSION_ABSOLUTE_TIMEOUT_MINUTES", "43200", minutes);
        let trust_proxy_headers = env.parse("TRUST_PROXY_HEADERS", "false", boolean);
        let metrics_token = env.secret("METRICS_TOKEN", "");
        let metrics_token = (!metrics_token.expose_secret().is_empty()).then_some(metrics_token);
        let log_format = env.parse("LOG_FORMAT", "text", |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be `text` or `json`".into()),
        });
        // Checked by `serve` (`Config::check_static_dir`), not here: `migrate`
        // and `admin` need no static files.
        let static_dir = std::path::PathBuf::from(
            env.string("STATIC_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/static")),
        );

        let livekit_url = env.parse("LIVEKIT_URL", "http://localhost:7880", http_url);
        let livekit_public_url = env.parse("LIVEKIT_PUBLIC_URL", livekit_url.as_str(), ws_url);
        let livekit_key = env.string("LIVEKIT_API_KEY", DEV_LIVEKIT_KEY);
        let livekit_secret = env.secret("LIVEKIT_API_SECRET", DEV_LIVEKIT_SECRET);
        let room_prefix = env.parse("LIVEKIT_ROOM_PREFIX", "sp-", |v| {
            let ok = (1..=20).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(v.to_owned())
            } else {
                Err("must be 1-20 of a-z A-Z 0-9 - _".into())
            }
        });
        let max_participants = env.parse("LIVEKIT_MAX_PARTICIPANTS", "500", |v| {
            match v.parse::<u32>() {
                Ok(n) if n >= 2 => Ok(n),
                _ => Err("must be a whole number of at least 2 (the host and one viewer)".into()),
            }
        });
        let empty_timeout = env.parse("LIVEKIT_EMPTY_TIMEOUT_SECONDS", "600", seconds);
        let departure_timeout = env.parse("LIVEKIT_DEPARTURE_TIMEOUT_SECONDS", "120", seconds);
        let livekit_ingress = env.parse("LIVEKIT_INGRESS", "false", boolean);
        let reconcile_every = env.parse("LIVEKIT_RECONCILE_SECONDS", "60", seconds);

        let s3_endpoint = env.parse("S3_ENDPOINT", "", |v| {
            if v.is_empty() {
                Ok(None)
            } else {
                http_url(v).map(Some)
            }
        });
        let recording_layout = env.string("RECORDING_LAYOUT", "speaker");
        let recorder = env.parse("RECORDER", "builtin", |v| match v {
            "builtin" => Ok(Recorder::Builtin),
            "egress" => Ok(Recorder::Egress),
            _ => Err("must be `builtin` (the app records) or `egress` (LiveKit Egress)".into()),
        });
        let s3_region = env.string("S3_REGION", "us-east-1");
        let s3_bucket = env.parse("S3_BUCKET", "stagepass", |v| {
            let ok = (3..=63).contains(&v.len())
                && v.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if ok {
                Ok(v.to_owned())
            } else {
                Err("must be a valid S3 bucket name (3-63 of a-z 0-9 . -)".into())
            }
        });
        let s3_key = env.string("S3_ACCESS_KEY_ID", "stagepass");
        let s3_secret = env.secret("S3_SECRET_ACCESS_KEY", "stagepass-dev-secret");
        let s3_path_style = env.parse("S3_FORCE_PATH_STYLE", "true", boolean);

        let provider = env.parse("PAYMENTS_PROVIDER", "dev", |v| match v {
            "dev" | "stripe" => Ok(v.to_owned()),
            _ => Err(format!("must be `dev` or `stripe`, got {v:?}")),
        });
        let stripe_api_base = env.parse("STRIPE_API_BASE", "https://api.stripe.com", http_url);
        let stripe_secret_key = env.secret("STRIPE_SECRET_KEY", "");
        let stripe_webhook_secret = env.secret("STRIPE_WEBHOOK_SECRET", "");
        let dev_payments_allow_public = env.parse("DEV_PAYMENTS_ALLOW_PUBLIC", "false", boolean);
        let payments = if provider == "stripe" {
            for (name, value) in [
                ("STRIPE_SECRET_KEY", &stripe_secret_key),
                ("STRIPE_WEBHOOK_SECRET", &stripe_webhook_secret),
            ] {
                if value.expose_secret().trim().is_empty() {
                    env.errors
                        .push(format!("{name}: required when PAYMENTS_PROVIDER is stripe"));
                }
            }
            PaymentsConfig::Stripe(StripeConfig {
                api_base: stripe_api_base,
                secret_key: stripe_secret_key,
                webhook_secret: stripe_webhook_secret,
            })
        } else {
            // The dev provider hands out passes for free: never by accident in public.
            if !is_local(&public_url) && !dev_payments_allow_public {
                env.errors.push(
                    "PAYMENTS_PROVIDER: the dev provider (the default) gives passes away for free and \
                     may only be used when PUBLIC_URL is localhost; set PAYMENTS_PROVIDER=stripe, or \
                     DEV_PAYMENTS_ALLOW_PUBLIC=true for a public demo"
                        .into(),
                );
            }
            PaymentsConfig::Dev
        };

        // Outgoing webhooks.
        let webhooks_allow_private =
            env.parse("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", "false", boolean);
        let webhooks_backoff_base = env.parse("WEBHOOKS_BACKOFF_BASE_MS", "10000", |v| {
            match v.parse::<u64>() {
                Ok(n) if (50..=3_600_000).contains(&n) => Ok(Duration::from_millis(n)),
                _ => Err(format!(
                    "must be a whole number of milliseconds from 50 to 3600000, got {v:?}"
                )),
            }
        });
        let webhooks_max_attempts =
            env.parse("WEBHOOKS_MAX_ATTEMPTS", "8", |v| match v.parse::<i32>() {
                Ok(n) if (1..=20).contains(&n) => Ok(n),
                _ => Err(format!("must be a whole number from 1 to 20, got {v:?}")),
            });

        // Flood limits.
        let count = |v: &str| match v.parse::<u32>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err(format!(
                "must be a whole number from 1 to 1000000, got {v:?}"
            )),
        };
        let window = |v: &str| match v.parse::<u64>() {
            Ok(n) if (1..=1440).contains(&n) => Ok(Duration::from_secs(n * 60)),
            _ => Err(format!(
                "must be a whole number of minutes from 1 to 1440, got {v:?}"
            )),
        };
        let sign_in_window = env.parse("SIGNIN_WINDOW_MINUTES", "15", window);
        let sign_in_failures_per_account_and_address =
            env.parse("SIGNIN_MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS", "5", count);
        let sign_in_failures_per_address =
            env.parse("SIGNIN_MAX_FAILURES_PER_ADDRESS", "30", count);
        let sign_in_failures_per_account =
            env.parse("SIGNIN_MAX_FAILURES_PER_ACCOUNT", "100", count);
        let sign_in_failures_per_device = env.parse("SIGNIN_MAX_FAILURES_PER_DEVICE", "5", count);
        let password_change_failures = env.parse("PASSWORD_CHANGE_MAX_FAILURES", "5", count);
        let sign_ups_per_address = Limit {
            max: env.parse("SIGNUP_MAX_PER_ADDRESS", "5", count),
            window: env.parse("SIGNUP_WINDOW_MINUTES", "60", window),
        };
        let sign_ups_per_instance = Limit {
            max: env.parse("SIGNUP_MAX_PER_INSTANCE", "500", count),
            window: sign_ups_per_address.window,
        };
        let creators = env.parse("CREATORS", "open", |v| match v {
            "open" => Ok(Creators::Open),
            "approval" => Ok(Creators::Approval),
            _ => Err(format!("must be `open` or `approval`, got {v:?}")),
        });
        let redeem_window = env.parse("REDEEM_WINDOW_MINUTES", "10", window);
        let redeem_failures_per_account = Limit {
            max: env.parse("REDEEM_MAX_FAILURES_PER_ACCOUNT", "10", count),
            window: redeem_window,
        };
        let redeem_failures_per_address = Limit {
            max: env.parse("REDEEM_MAX_FAILURES_PER_ADDRESS", "30", count),
            window: redeem_window,
        };
        let checkouts_per_account = Limit {
            max: env.parse("CHECKOUT_MAX_PER_ACCOUNT", "20", count),
            window: env.parse("CHECKOUT_WINDOW_MINUTES", "60", window),
        };
        let guest_tokens_per_address = Limit {
            max: env.parse("GUEST_TOKENS_MAX_PER_ADDRESS", "60", count),
            window: env.parse("GUEST_TOKENS_WINDOW_MINUTES", "10", window),
        };
        let channels_per_account = Limit {
            max: env.parse("CHANNELS_MAX_PER_ACCOUNT_PER_DAY", "5", count),
            window: Duration::from_secs(24 * 3600),
        };
        let streams = |v: &str| match v.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(format!("must be a whole number from 1 to 10000, got {v:?}")),
        };
        let chat_streams_per_user_and_stream =
            env.parse("CHAT_STREAMS_PER_USER_AND_STREAM", "5", streams);
        let chat_streams_per_user = env.parse("CHAT_STREAMS_PER_USER", "20", streams);
        if chat_streams_per_user_and_stream > chat_streams_per_user {
            env.errors.push(
                "CHAT_STREAMS_PER_USER_AND_STREAM: must not be more than CHAT_STREAMS_PER_USER"
                    .into(),
            );
        }

        if session_idle_timeout > session_absolute_timeout {
            env.errors.push(
                "SESSION_IDLE_TIMEOUT_MINUTES: must not be longer than SESSION_ABSOLUTE_TIMEOUT_MINUTES".into(),
            );
        }
        // The dev credentials are public knowledge: anyone could mint tokens for our rooms.
        if !is_local(&public_url) && livekit_secret.expose_secret() == DEV_LIVEKIT_SECRET {
            env.errors.push(
                "LIVEKIT_API_SECRET: the development secret may only be used when PUBLIC_URL is localhost".into(),
            );
        }

        if !env.errors.is_empty() {
            return Err(ConfigError(env.errors));
        }
        Ok(Config {
            bind,
            public_url,
            database_url,
            database_pool_size,
            session_idle_timeout,
            session_absolute_timeout,
            trust_proxy_headers,
            metrics_token,
            log_format,
            static_dir,
            livekit: LiveKitConfig {
                url: livekit_url,
                public_url: livekit_public_url,
                api_key: livekit_key,
                api_secret: livekit_secret,
                room_prefix,
                recording_layout,
                recorder,
                max_participants,
                empty_timeout,
                departure_timeout,
                ingress: livekit_ingress,
                reconcile_every,
            },
            s3: S3Config {
                endpoint: s3_endpoint,
                region: s3_region,
                bucket: s3_bucket,
                access_key_id: s3_key,
                secret_access_key: s3_secret,
                force_path_style: s3_path_style,
            },
            payments,
            webhooks: OutgoingWebhooksConfig {
                allow_private_addresses: webhooks_allow_private,
                backoff_base: webhooks_backoff_base,
                max_attempts: webhooks_max_attempts,
            },
            limits: LimitsConfig {
                sign_in_window,
                sign_in_failures_per_account_and_address,
                sign_in_failures_per_address,
                sign_in_failures_per_account,
                sign_in_failures_per_device,
                password_change_failures,
                sign_ups_per_address,
                sign_ups_per_instance,
                redeem_failures_per_account,
                redeem_failures_per_address,
                checkouts_per_account,
                channels_per_account,
                guest_tokens_per_address,
                chat_streams_per_user_and_stream,
                chat_streams_per_user,
            },
            creators,
        })
    }

    /// Whether cookies must carry `Secure` (the app is served over https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    /// `STATIC_DIR` is a folder (what `serve` needs before it starts).
    pub fn check_static_dir(&self) -> Result<(), ConfigError> {
        if self.static_dir.is_dir() {
            Ok(())
        } else {
            Err(ConfigError(vec![format!(
                "STATIC_DIR: {} is not a folder: point it at the checkout's static/ folder (with static/vendor/ from `scripts/setup`)",
                self.static_dir.display()
            )]))
        }
    }

    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    pub fn is_local(&self) -> bool {
        is_local(&self.public_url)
    }
}

fn is_local(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

struct Reader<'a, F: Fn(&str) -> Option<String>> {
    get: &'a F,
    errors: Vec<String>,
}

impl<F: Fn(&str) -> Option<String>> Reader<'_, F> {
    fn raw(&self, name: &str, default: &str) -> String {
        (self.get)(name)
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        self.raw(name, default).trim().to_owned()
    }

    /// Parses the variable; a bad value is recorded and the default stands in,
    /// so every problem is found in one pass (and `from_lookup` then fails).
    fn parse<T>(&mut self, name: &str, default: &str, f: impl Fn(&str) -> Result<T, String>) -> T {
        let value = self.raw(name, default);
        f(value.trim()).unwrap_or_else(|e| {
            self.errors.push(format!("{name}: {e}"));
            f(default).expect("every default setting is valid")
        })
    }

    fn secret(&mut self, name: &str, default: &str) -> SecretString {
        SecretString::from(
            (self.get)(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned()),
        )
    }
}

fn http_url(v: &str) -> Result<Url, String> {
    match Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        _ => Err(format!(
            "must be an http(s) URL like http://localhost:8080, got {v:?}"
        )),
    }
}

/// Accepts http(s) or ws(s) and answers the ws(s) form browsers connect to.
fn ws_url(v: &str) -> Result<Url, String> {
    let mut u = Url::parse(v).map_err(|_| format!("must be a ws(s) or http(s) URL, got {v:?}"))?;
    let scheme = match u.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(format!("must be a ws(s) or http(s) URL, got {v:?}")),
    };
    u.set_scheme(scheme)
        .map_err(|_| format!("cannot use {v:?} as a ws(s) URL"))?;
    Ok(u)
}

fn minutes(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!(
            "must be a whole number of minutes (at least 1), got {v:?}"
        )),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "must be a whole number of seconds from 1 to 86400, got {v:?}"
        )),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("must be true or false, got {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_a_working_local_setup() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.livekit.public_url.as_str(), "ws://localhost:7880/");
        assert!(!c.secure_cookies());
        assert_eq!(c.public_origin(), "http://localhost:8080");
    }

    #[test]
    fn a_static_dir_that_is_not_a_folder_is_named() {
        let c = config(&[("STATIC_DIR", "/nonexistent/static")]).unwrap();
        let err = c.check_static_dir().unwrap_err().to_string();
        assert!(
            err.contains("STATIC_DIR: /nonexistent/static is not a folder"),
            "{err}"
        );
        assert!(config(&[]).unwrap().check_static_dir().is_ok());
    }

    #[test]
    fn every_bad_variable_is_named() {
        let err = config(&[
            ("BIND_ADDR", "nope"),
            ("DATABASE_POOL_SIZE", "0"),
            ("LOG_FORMAT", "xml"),
        ])
        .unwrap_err()
        .to_string();

        assert!(err.contains("BIND_ADDR: must be an address"), "{err}");
        assert!(
            err.contains("DATABASE_POOL_SIZE: must be a whole number"),
            "{err}"
        );
        assert!(
            err.contains("LOG_FORMAT: must be `text` or `json`"),
            "{err}"
        );
    }

    #[test]
    fn dev_livekit_secret_is_refused_in_public() {
        let err = config(&[("PUBLIC_URL", "https://live.example.com")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LIVEKIT_API_SECRET"), "{err}");
        let ok = config(&[
            ("PUBLIC_URL", "https://live.example.com"),
            ("LIVEKIT_API_SECRET", "s3cr3t-value"),
            ("DEV_PAYMENTS_ALLOW_PUBLIC", "true"),
        ])
        .unwrap();
        assert!(ok.secure_cookies());
    }

    #[test]
    fn secrets_never_print() {
        let c = config(&[
            ("LIVEKIT_API_SECRET", "hunter2-livekit"),
            ("DATABASE_URL", "postgres://u:pw-hunter2@h/db"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn outgoing_webhooks_refuse_private_addresses_by_default() {
        let c = config(&[]).unwrap();
        assert!(!c.webhooks.allow_private_addresses);
        assert_eq!(c.webhooks.backoff_base, Duration::from_secs(10));
        assert_eq!(c.webhooks.max_attempts, 8);
        let err = config(&[
            ("WEBHOOKS_BACKOFF_BASE_MS", "5"),
            ("WEBHOOKS_MAX_ATTEMPTS", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("WEBHOOKS_BACKOFF_BASE_MS: must be"), "{err}");
        assert!(err.contains("WEBHOOKS_MAX_ATTEMPTS: must be"), "{err}");
    }

    #[test]
    fn flood_limits_have_defaults_and_are_checked() {
        let c = config(&[]).unwrap();
        assert_eq!(c.limits.sign_in_window, Duration::from_secs(15 * 60));
        assert_eq!(c.limits.sign_in_failures_per_account, 100);
        assert_eq!(
            c.limits.sign_ups_per_address,
            Limit {
                max: 5,
                window: Duration::from_secs(3600)
            }
        );
        assert_eq!(c.limits.sign_ups_per_instance.max, 500);
        assert_eq!(c.creators, Creators::Open);
        assert_eq!(
            config(&[("CREATORS", "approval")]).unwrap().creators,
            Creators::Approval
        );
        assert_eq!(c.limits.redeem_failures_per_account.max, 10);
        assert_eq!(c.limits.chat_streams_per_user_and_stream, 5);
        assert_eq!(c.limits.chat_streams_per_user, 20);
        assert_eq!(c.limits.checkouts_per_account.max, 20);
        assert_eq!(c.limits.channels_per_account.max, 5);
        assert_eq!(c.limits.guest_tokens_per_address.max, 60);
        let err = config(&[
            ("SIGNUP_MAX_PER_ADDRESS", "0"),
            ("REDEEM_WINDOW_MINUTES", "forever"),
            ("CHAT_STREAMS_PER_USER_AND_STREAM", "30"),
            ("CREATORS", "closed"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SIGNUP_MAX_PER_ADDRESS: must be"), "{err}");
        assert!(err.contains("REDEEM_WINDOW_MINUTES: must be"), "{err}");
        assert!(
            err.contains("CREATORS: must be `open` or `approval`"),
            "{err}"
        );
        assert!(
            err.contains("CHAT_STREAMS_PER_USER_AND_STREAM: must not be more"),
            "{err}"
        );
    }

    #[test]
    fn payments_default_to_the_dev_provider_locally() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.payments, PaymentsConfig::Dev));
    }

    #[test]
    fn dev_payments_are_refused_in_public_unless_allowed() {
        let public = [
            ("PUBLIC_URL", "https://live.example.com"),
            ("LIVEKIT_API_SECRET", "s3cr3t-value"),
        ];
        let err = config(&public).unwrap_err().to_string();
        assert!(err.contains("PAYMENTS_PROVIDER: the dev provider"), "{err}");
        assert!(err.contains("DEV_PAYMENTS_ALLOW_PUBLIC=true"), "{err}");

        let allowed =
            config(&[public[0], public[1], ("DEV_PAYMENTS_ALLOW_PUBLIC", "true")]).unwrap();
        assert!(matches!(allowed.payments, PaymentsConfig::Dev));

        let err = config(&[public[0], public[1], ("DEV_PAYMENTS_ALLOW_PUBLIC", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DEV_PAYMENTS_ALLOW_PUBLIC: must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn stripe_needs_its_secrets_and_names_them() {
        let err = config(&[("PAYMENTS_PROVIDER", "stripe")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRIPE_SECRET_KEY: required when PAYMENTS_PROVIDER is stripe"),
            "{err}"
        );
        assert!(
            err.contains("STRIPE_WEBHOOK_SECRET: required when PAYMENTS_PROVIDER is stripe"),
            "{err}"
        );

        let err = config(&[("PAYMENTS_PROVIDER", "paypal")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PAYMENTS_PROVIDER: must be `dev` or `stripe`"),
            "{err}"
        );

        let err = config(&[
            ("PAYMENTS_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_test_1"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
            ("STRIPE_API_BASE", "not a url"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("STRIPE_API_BASE: must be an http(s) URL"),
            "{err}"
        );
    }

    #[test]
    fn stripe_in_public_with_defaults() {
        let c = config(&[
            ("PUBLIC_URL", "https://live.example.com"),
            ("LIVEKIT_API_SECRET", "s3cr3t-value"),
            ("PAYMENTS_PROVIDER", "stripe"),
            ("STRIPE_SECRET_KEY", "sk_live_hunter2"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_hunter2"),
        ])
        .unwrap();
        let PaymentsConfig::Stripe(stripe) = &c.payments else {
            panic!("stripe expected");
        };
        assert_eq!(stripe.api_base.as_str(), "https://api.stripe.com/");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
