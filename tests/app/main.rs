//! The one integration test binary: every test serves the real app against
//! real Postgres, livekit-server and s3s-fs (see util/services.rs).

mod util;

mod access;
mod accounts;
mod enforcement;
mod browser;
mod channels;
mod chat;
mod checkout;
mod codes;
mod grants;
mod live;
mod migrations;
mod moderation;
mod passes;
mod services;
mod shell;
mod studio;
