//! The one integration test binary: every test serves the real app against
//! real Postgres, livekit-server and s3s-fs (see util/services.rs).

mod util;

mod access;
mod accounts;
mod analytics;
mod authz_matrix;
mod browser;
mod channels;
mod chat;
mod checkout;
mod cluster;
mod codes;
mod enforcement;
mod exposure;
mod faults;
mod grants;
mod ingress;
mod journey;
mod latency;
mod live;
mod migrations;
mod moderation;
mod notifications;
mod operators;
mod outgoing_webhooks;
mod pages;
mod passes;
mod player;
mod previews;
mod recorder;
mod recordings;
mod services;
mod shell;
mod standin;
mod studio;

// Discover, follow, thumbnails, channel settings.
mod channel_settings;
mod discover;
mod follow;
mod guests;
mod thumbnails;
