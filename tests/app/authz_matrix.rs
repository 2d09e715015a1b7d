//! The authorization matrix (issue 12, item 3): every route of `src/router.rs`
//! asked by every persona — anonymous, a stranger, viewers with an active,
//! an expired and a revoked pass, a banned viewer who still holds a pass, a
//! moderator of another channel, the channel's moderator and its owner — on
//! real resources of one channel, each answer compared with the outcome the
//! table below expects.
//!
//! Three more things are checked on the way:
//! - the table and the router name the same routes: a route added without its
//!   row (or a row left behind by a removed route) fails the test, by name;
//! - a refused request changes nothing: the channel's rows (streams, team,
//!   passes, grants, codes, bans, chat, recordings, webhooks, orders) and the
//!   viewer's notifications read the same before and after it;
//! - no body shown to anyone but the owner holds a secret or money: the
//!   ingress stream key, the outgoing webhook's secret, another user's email
//!   address, or the channel's revenue.
//!
//! It must not become a copy of the feature tests: it asks who may, not
//! whether the feature works (those tests say that).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::UserId;
use stagepass::db::channels::Channel;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::uploads::{png, upload_without_js};
use crate::util::{Browser, TestApp, builders};

// ---------------------------------------------------------------------------
// Outcomes and personas.

/// What a persona sees, as a user would tell it apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200: the page, the fragment, or the action done in place.
    Shown,
    /// 204: nothing to show (the bell of someone signed out).
    Empty,
    /// 303 anywhere but sign-in: the action was done (or the page moved on).
    Moved,
    /// 303 to /signin?next=…: sign in first.
    SignIn,
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403 with a reason.
    Forbidden,
    /// 404, as for something that does not exist.
    NotFound,
    /// 409: allowed, but not now (e.g. the stream is not live).
    Conflict,
    /// 422: allowed, but the form needs fixing.
    Invalid,
    /// Anything else (only ever in a failure message).
    Other(u16),
}
use Outcome::*;

impl Outcome {
    /// `location`: the `Location` of a 303, or the `HX-Redirect` of an htmx answer.
    fn of(status: StatusCode, location: Option<&str>) -> Outcome {
        match status.as_u16() {
            200 if location.is_some_and(|l| l.starts_with("/signin")) => SignIn,
            200 if location.is_some() => Moved,
            200 => Shown,
            204 => Empty,
            303 if location.is_some_and(|l| l.starts_with("/signin")) => SignIn,
            303 => Moved,
            400 => BadRequest,
            401 => Unauthorized,
            403 => Forbidden,
            404 => NotFound,
            409 => Conflict,
            422 => Invalid,
            n => Other(n),
        }
    }

    /// A refusal: the request must have changed nothing.
    fn refused(self) -> bool {
        matches!(
            self,
            SignIn | BadRequest | Unauthorized | Forbidden | NotFound
        )
    }
}

/// The table's columns (0: anonymous).
const STRANGER: usize = 1;
const VIEWER: usize = 2;
const EXPIRED: usize = 3;
const REVOKED: usize = 4;
const BANNED: usize = 5;
const OTHER_MOD: usize = 6;
const MODERATOR: usize = 7;
const OWNER: usize = 8;
const PERSONAS: usize = 9;

/// The personas' names (in failure messages) and emails (none when anonymous).
const WHO: [(&str, Option<&str>); PERSONAS] = [
    ("anonymous", None),
    ("stranger", Some("stranger@example.com")),
    ("viewer", Some("viewer@example.com")),
    ("expired viewer", Some("expired@example.com")),
    ("revoked viewer", Some("revoked@example.com")),
    ("banned viewer", Some("banned@example.com")),
    ("moderator of another channel", Some("othermod@example.com")),
    ("moderator", Some("moderator@example.com")),
    ("owner", Some("owner@example.com")),
];

/// Who paid the channel its revenue: a buyer who is none of the personas, so
/// that what they paid is money no persona but the owner may see.
const PATRON: &str = "patron@example.com";
/// What the patron paid (the pass's price then; it costs 9.00 now, so 13.37
/// appears nowhere but in the channel's revenue and the patron's own order).
const REVENUE: &str = "13.37";

// ---------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// What the route's path parameters name. `{handle}` is always the channel,
/// `{identity}` the viewer's LiveKit identity; `{id}` is the pass-only stream
/// unless the row says otherwise.
#[derive(Clone, Copy, Debug)]
enum On {
    Stream,
    /// `{id}`: a pass-only stream that is live (a real LiveKit room).
    Live,
    /// `{id}`: the channel's pass (on sale, 9.00).
    Pass,
    /// `{id}`: the channel's outgoing webhook endpoint.
    Webhook,
    /// A resource made for this one request, so that an allowed request may
    /// use it up and a refused one is seen to leave it alone.
    Fresh(Fresh),
}

#[derive(Clone, Copy, Debug)]
enum Fresh {
    /// `{id}`: an announced pass-only draft.
    Stream,
    /// `{id}`: a pass-only stream the owner took live.
    LiveStream,
    /// `{id}`: the same, with an RTMP ingress created by the owner.
    StreamWithIngress,
    /// `{id}`: a channel pass on sale.
    Pass,
    /// `{id}`: an active grant of a user who is none of the personas.
    Grant,
    /// `{id}`: a complete recording of the stream.
    Recording,
    /// `{id}`: an unread notification of the viewer's.
    Notification,
    /// `{id}`: an outgoing webhook endpoint of the channel.
    Webhook,
    /// `{order}`: the viewer's pending order for the pass.
    Order,
    /// `{message}`: the viewer's chat message in the stream.
    Message,
    /// `{ban}`: a ban of a user who is none of the personas.
    Ban,
    /// `{user_id}`: a moderator of the channel who is none of the personas.
    Moderator,
}

enum Body {
    None,
    /// A urlencoded form, the CSRF token added. Values may name `{stream}`,
    /// `{handle}`, `{code}`, `{name}` (the persona's display name) and
    /// `{target_id}` / `{target_email}` (a user made for this request).
    Form(&'static [(&'static str, &'static str)]),
    /// The same, sent as htmx sends it (the token in its header): for the
    /// routes that answer a plain form with a 303 whatever happened.
    Htmx(&'static [(&'static str, &'static str)]),
    /// A multipart upload of a small PNG under this field, the CSRF token added.
    Image(&'static str),
    /// A webhook delivery without its signature (no CSRF token: webhooks are exempt).
    Unsigned,
}

struct Row {
    method: Method,
    path: &'static str,
    on: On,
    body: Body,
    expect: [Outcome; PERSONAS],
}

fn get(path: &'static str, on: On, expect: [Outcome; PERSONAS]) -> Row {
    Row {
        method: Method::Get,
        path,
        on,
        body: Body::None,
        expect,
    }
}

fn post(
    path: &'static str,
    on: On,
    form: &'static [(&'static str, &'static str)],
    expect: [Outcome; PERSONAS],
) -> Row {
    Row {
        method: Method::Post,
        path,
        on,
        body: Body::Form(form),
        expect,
    }
}

fn post_htmx(
    path: &'static str,
    on: On,
    form: &'static [(&'static str, &'static str)],
    expect: [Outcome; PERSONAS],
) -> Row {
    Row {
        method: Method::Post,
        path,
        on,
        body: Body::Htmx(form),
        expect,
    }
}

fn upload(path: &'static str, on: On, field: &'static str, expect: [Outcome; PERSONAS]) -> Row {
    Row {
        method: Method::Post,
        path,
        on,
        body: Body::Image(field),
        expect,
    }
}

fn unsigned(path: &'static str, expect: [Outcome; PERSONAS]) -> Row {
    Row {
        method: Method::Post,
        path,
        on: On::Stream,
        body: Body::Unsigned,
        expect,
    }
}

use On::Fresh as F;

/// Every route, in the order asked (the rows that change the personas
/// themselves, redeeming a code and signing out, come last).
#[rustfmt::skip]
fn matrix() -> Vec<Row> {
    const S: On = On::Stream;
    const L: On = On::Live;
    vec![
        //                                                           anonymous  stranger   viewer     expired    revoked    banned     other mod  moderator  owner
        // Operators'.
        get("/healthz", S,                                          [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/favicon.ico", S,                                      [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/readyz", S,                                           [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/metrics", S,                                          [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        // Accounts.
        get("/", S,                                                 [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/signup", S,                                           [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/signup", S, &[],                                     [Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid]),
        get("/signin", S,                                           [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/signin", S, &[],                                     [Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid]),
        get("/account", S,                                          [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/account/profile", S, &[("display_name", "{name}")],  [SignIn,    Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved]),
        post("/account/password", S, &[],                           [SignIn,    Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid]),
        // Channels and their team.
        get("/c/{handle}", S,                                       [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/studio/channels/new", S,                              [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/studio/channels", S, &[],                            [SignIn,    Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid]),
        get("/studio/channels/{handle}/team", S,                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/team", S,
             &[("email", "{target_email}")],                        [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/channels/{handle}/team/{user_id}/remove",
             F(Fresh::Moderator), &[],                              [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        // The studio.
        get("/studio", S,                                           [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/studio/channels/{handle}/streams/new", S,             [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/streams", S,
             &[("title", "Another one"), ("access", "pass")],       [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/studio/streams/{id}", S,                              [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/streams/{id}", F(Fresh::Stream),
             &[("title", "Renamed"), ("access", "pass"),
               ("scheduled_at", "2031-01-01T18:00")],               [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/delete", F(Fresh::Stream), &[],  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/live", F(Fresh::Stream), &[],    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/end", F(Fresh::LiveStream), &[], [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/studio/streams/{id}/broadcast", S,                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/streams/{id}/token", L, &[],                  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        get("/studio/streams/{id}/stats", S,                        [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        // Recordings and replays.
        get("/studio/streams/{id}/recording", S,                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/streams/{id}/recording/start", S, &[],        [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/recording/stop", S, &[],         [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/recording/settings", S,
             &[("record_on_live", "on")],                           [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/recording/retention", S,
             &[("days", "30")],                                     [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/recordings/{id}/delete", F(Fresh::Recording),
             &[],                                                   [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/s/{id}/replays", S,                                   [Forbidden, Forbidden, Shown,     Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        // OBS ingress.
        post("/studio/streams/{id}/ingress", F(Fresh::Stream),
             &[("kind", "rtmp")],                                   [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/ingress/reset",
             F(Fresh::StreamWithIngress), &[],                      [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/ingress/delete",
             F(Fresh::StreamWithIngress), &[],                      [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        // Watching.
        get("/s/{id}", S,                                           [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/s/{id}/token", L, &[],                               [Forbidden, Forbidden, Shown,     Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/s/{id}/status", S,                                    [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/s/{id}/time-left", S,                                 [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/s/{id}/live-stats", S,                                [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        // Passes.
        get("/studio/channels/{handle}/passes", S,                  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/passes", S,
             &[("name", "Weekend"), ("price", "4"), ("currency", "USD"), ("scope", "channel"),
               ("duration", "2"), ("duration_unit", "days")],       [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/studio/passes/{id}", On::Pass,                        [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/passes/{id}", F(Fresh::Pass),
             &[("name", "Renamed"), ("price", "5"), ("currency", "USD"), ("scope", "channel"),
               ("duration", "1"), ("duration_unit", "days")],       [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/passes/{id}/archive", F(Fresh::Pass), &[],    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/s/{id}/pass", S,                                      [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/c/{handle}/passes", S,                                [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/passes", S,                                           [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        // Checkout: an order is its buyer's (the viewer's) alone.
        post("/passes/{id}/buy", On::Pass, &[("stream_id", "{stream}")],
                                                                    [SignIn,    Moved,     Moved,     Moved,     Moved,     Forbidden, Moved,     Moved,     Moved]),
        get("/checkout/dev/{order}", F(Fresh::Order),               [SignIn,    NotFound,  Shown,     NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        post("/checkout/dev/{order}/confirm", F(Fresh::Order), &[], [SignIn,    NotFound,  Moved,     NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        get("/checkout/{order}/return", F(Fresh::Order),            [SignIn,    NotFound,  Shown,     NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        // Grants and codes.
        get("/studio/channels/{handle}/grants", S,                  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/grants", S,
             &[("email", "{target_email}"), ("amount", "1"), ("unit", "days")],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/grants/{id}/extend", F(Fresh::Grant),
             &[("amount", "1"), ("unit", "days")],                  [SignIn,    NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  Forbidden, Moved]),
        post("/studio/grants/{id}/revoke", F(Fresh::Grant),
             &[("reason", "matrix")],                               [SignIn,    NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  Forbidden, Moved]),
        get("/studio/passes/{id}/codes", On::Pass,                  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/passes/{id}/codes", On::Pass,
             &[("count", "1"), ("uses", "1")],                      [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/studio/passes/{id}/codes.csv", On::Pass,              [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        // Chat.
        get("/s/{id}/chat", S,                                      [Forbidden, Forbidden, Shown,     Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        post_htmx("/s/{id}/chat", S, &[("body", "hello from the matrix")],
                                                                    [Forbidden, Forbidden, Shown,     Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/s/{id}/chat/events", S,                               [Forbidden,    Forbidden, Shown,     Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        post("/s/{id}/chat/{message}/delete", F(Fresh::Message), &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        post("/studio/streams/{id}/chat-settings", S,
             &[("enabled", "on"), ("slow_mode_seconds", "0"), ("delay_seconds", "0"),
               ("max_length", "500")],                              [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        // Moderation.
        get("/studio/streams/{id}/moderate", S,                     [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/studio/streams/{id}/participants", L,                 [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        post("/studio/streams/{id}/participants/{identity}/mute", L, &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        post("/studio/streams/{id}/participants/{identity}/remove", L, &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        post("/studio/channels/{handle}/bans", S,
             &[("user_id", "{target_id}"), ("reason", "matrix"), ("length", "permanent"),
               ("stream", "{stream}")],                             [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        post("/studio/channels/{handle}/bans/{ban}/lift", F(Fresh::Ban),
             &[("stream", "{stream}")],                             [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        post("/studio/channels/{handle}/timeouts", S,
             &[("user_id", "{target_id}"), ("minutes", "10"), ("stream", "{stream}")],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved,     Moved]),
        get("/studio/channels/{handle}/audit", S,                   [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        get("/moderation", S,                                       [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        // Analytics: the team's; money only on the owner's.
        get("/studio/streams/{id}/analytics", S,                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/studio/streams/{id}/analytics.csv", S,                [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/studio/channels/{handle}/analytics", S,               [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        get("/studio/channels/{handle}/analytics.csv", S,           [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown,     Shown]),
        // Notifications: each user's own.
        get("/notifications", S,                                    [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/notifications/bell", S,                               [Empty,      Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/notifications/read-all", S, &[],                     [SignIn,    Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved]),
        post("/notifications/{id}/open", F(Fresh::Notification), &[],
                                                                    [SignIn,    NotFound,  Moved,     NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        post("/notifications/{id}/read", F(Fresh::Notification), &[],
                                                                    [SignIn,    NotFound,  Moved,     NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        // Outgoing webhooks: the owner's alone.
        get("/studio/channels/{handle}/webhooks", S,                [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/webhooks", S,
             &[("url", "http://127.0.0.1:9/another"), ("secret_choice", "generate")],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/channels/{handle}/webhooks/{id}/test", On::Webhook, &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/channels/{handle}/webhooks/{id}/secret", On::Webhook, &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/webhooks/{id}/delete", F(Fresh::Webhook), &[],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        // Following, images, channel settings (the images are read before
        // the owner's rows remove them).
        get("/following", S,                                        [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/c/{handle}/follow", S, &[("next", "/c/{handle}")],   [SignIn,    Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Forbidden]),
        post("/c/{handle}/unfollow", S, &[("next", "/c/{handle}")], [SignIn,    Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved]),
        get("/c/{handle}/avatar", S,                                [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        get("/s/{id}/thumbnail", S,                                 [Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        upload("/studio/streams/{id}/thumbnail", S, "thumbnail",    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/streams/{id}/thumbnail/delete", S, &[],       [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        get("/studio/channels/{handle}/settings", S,                [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Shown]),
        post("/studio/channels/{handle}/settings", S,
             &[("title", "Matrix channel"), ("description", "Where every door is tried.")],
                                                                    [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        upload("/studio/channels/{handle}/avatar", S, "avatar",     [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        post("/studio/channels/{handle}/avatar/delete", S, &[],     [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Moved]),
        // Creator applications (CREATORS=open here: the form is refused for
        // its empty fields) and the operator's console: none of the personas
        // is an instance admin, so every route of it is 403 to them all.
        get("/creators/apply", S,                                   [SignIn,    Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown,     Shown]),
        post("/creators/apply", S, &[],                             [SignIn,    Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid,   Invalid]),
        get("/admin", S,                                            [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        get("/admin/applications", S,                               [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/applications/{id}/approve", S, &[],            [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/applications/{id}/reject", S, &[("reason", "no")], [SignIn, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        get("/admin/users", S,                                      [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/users/{id}/suspend", S, &[("reason", "spam")], [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/users/{id}/restore", S, &[],                  [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        get("/admin/channels", S,                                   [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/channels/{id}/hide", S, &[("reason", "spam")], [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        post("/admin/channels/{id}/restore", S, &[],                [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        get("/admin/audit", S,                                      [SignIn,    Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        // Signed webhooks: no session makes an unsigned delivery count (Stripe's
        // is not there at all with the dev payments this app runs with).
        unsigned("/webhooks/stripe",                                [NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound,  NotFound]),
        unsigned("/webhooks/livekit",                               [Unauthorized,Unauthorized,Unauthorized,Unauthorized,Unauthorized,Unauthorized,Unauthorized,Unauthorized,Unauthorized]),
        // Last: these change who the personas are.
        post_htmx("/redeem", S, &[("code", "{code}")],                   [SignIn,    Moved,     Moved,     Moved,     Moved,     Forbidden, Moved,     Moved,     Moved]),
        post("/signout", S, &[],                                    [Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved,     Moved]),
    ]
}

// ---------------------------------------------------------------------------
// The router's routes, read from its source.

/// Every (method, path) of `src/router.rs`.
fn routes_in_router() -> BTreeSet<(String, String)> {
    routes_in(include_str!("../../src/router.rs"))
}

/// Every (method, path) of a router's source: each `.route("PATH", …)` and
/// the method routers named in it (`get(…)`, `.post(…)`, …).
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        // The call's arguments: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a .route( call closes");
        let args = &call[..end];
        let path = args
            .split('"')
            .nth(1)
            .expect("a route's first argument is its path");
        let methods = &args[args.find(',').expect("a route has a method router")..];
        for method in ["get", "post", "put", "patch", "delete"] {
            let mut from = 0;
            while let Some(i) = methods[from..].find(&format!("{method}(")) {
                let i = from + i;
                // `get(` itself, not the end of a handler's name (`…::budget(`).
                let before = methods[..i].chars().next_back();
                if before.is_some_and(|c| matches!(c, ' ' | '\n' | ',' | '.' | '(')) {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
                from = i + method.len();
            }
        }
        rest = &call[end..];
    }
    routes
}

/// Whether the table and the router name the same routes: if not, which
/// routes lack a row and which rows name no route.
fn out_of_step(router: &BTreeSet<(String, String)>, rows: &[Row]) -> Option<String> {
    let table: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.name().to_owned(), r.path.to_owned()))
        .collect();
    let twice: Vec<String> = table
        .iter()
        .filter(|(m, p)| {
            rows.iter()
                .filter(|r| r.method.name() == m && r.path == p)
                .count()
                > 1
        })
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let unlisted: Vec<String> = router
        .difference(&table)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let gone: Vec<String> = table
        .difference(router)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    (!unlisted.is_empty() || !gone.is_empty() || !twice.is_empty()).then(|| {
        format!(
            "the authorization matrix is out of step with src/router.rs:\n\
             routes without a row (add one to matrix() in tests/app/authz_matrix.rs): {unlisted:#?}\n\
             rows for routes the router no longer has: {gone:#?}\n\
             routes with more than one row: {twice:#?}"
        )
    })
}

#[test]
fn the_matrix_has_a_row_for_every_route_and_no_other() {
    if let Some(message) = out_of_step(&routes_in_router(), &matrix()) {
        panic!("{message}");
    }
}

#[test]
fn a_route_added_without_its_row_is_named() {
    let mut router = routes_in_router();
    router.insert(("POST".into(), "/studio/streams/{id}/clip".into()));
    router.remove(&("GET".into(), "/healthz".into()));
    let message = out_of_step(&router, &matrix()).expect("out of step");
    let (unlisted, gone) = message.split_once("rows for routes").unwrap();
    assert!(
        unlisted.contains("POST /studio/streams/{id}/clip"),
        "{message}"
    );
    assert!(gone.contains("GET /healthz"), "{message}");
}

#[test]
fn the_router_parser_finds_every_kind_of_route() {
    let routes = routes_in_router();
    let has = |m: &str, p: &str| routes.contains(&(m.to_owned(), p.to_owned()));
    // One method, two on one path, a layered one, and the operators'.
    assert!(has("POST", "/signout"));
    assert!(has("GET", "/studio/channels/{handle}/team"));
    assert!(has("POST", "/studio/channels/{handle}/team"));
    assert!(has("POST", "/studio/streams/{id}/thumbnail"));
    assert!(has("GET", "/healthz") && has("GET", "/metrics"));
    assert!(!has("GET", "/signout"));
    assert!(routes.len() > 90, "{routes:?}");
    // A new route in the router's own shapes.
    let added = routes_in(
        r#".route("/a/{id}", get(a::show).post(a::save))
           .route(
               "/b",
               post(crate::web::b::upload).layer(DefaultBodyLimit::max(crate::web::b::budget(1))),
           )"#,
    );
    let expected: BTreeSet<(String, String)> =
        [("GET", "/a/{id}"), ("POST", "/a/{id}"), ("POST", "/b")]
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .into();
    assert_eq!(added, expected);
}

// ---------------------------------------------------------------------------
// The world the personas ask about.

struct World {
    app: TestApp,
    browsers: Vec<Browser>,
    tokens: Vec<String>,
    names: Vec<String>,
    ids: Vec<Option<UserId>>,
    channel: Channel,
    stream: Stream,
    live: Stream,
    pass: i64,
    webhook: i64,
    code: String,
    /// Stream keys and webhook secrets: no one but the owner may be shown one.
    secrets: Vec<String>,
    made: AtomicU32,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Textual {
    #[diesel(sql_type = Text)]
    text: String,
}

impl World {
    async fn build() -> World {
        let app = TestApp::spawn_with(|env| {
            // The channel's webhook points at a closed local port.
            env.insert("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES".into(), "true".into());
        })
        .await;
        let mut browsers = vec![app.anonymous()];
        let mut ids = vec![None];
        let mut names = vec![String::new()];
        for (name, email) in &WHO[STRANGER..] {
            let display = format!("Matrix {name}");
            let (browser, id) = builders::user(&app, email.unwrap(), &display).await;
            browsers.push(browser);
            ids.push(Some(id));
            names.push(display);
        }
        let id = |p: usize| ids[p].unwrap();
        let channel = builders::channel(&app, id(OWNER), "matrix").await;
        builders::moderator(&app, channel.id, id(MODERATOR)).await;
        let elsewhere_owner = Self::user_row(&app, "elsewhere.owner@example.com").await;
        let other = builders::channel(&app, UserId(elsewhere_owner), "elsewhere").await;
        builders::moderator(&app, other.id, id(OTHER_MOD)).await;

        let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
        builders::announce(&app, stream.id).await;
        builders::grant(&app, id(VIEWER), channel.id, None, "-1 hour", "30 days").await;
        builders::grant(&app, id(EXPIRED), channel.id, None, "-2 days", "-1 day").await;
        let revoked =
            builders::grant(&app, id(REVOKED), channel.id, None, "-1 hour", "30 days").await;
        builders::revoke(&app, revoked).await;
        builders::grant(&app, id(BANNED), channel.id, None, "-1 hour", "30 days").await;
        builders::ban(&app, channel.id, id(BANNED)).await;
        // Their passes include replays: what stops the expired, revoked and
        // banned viewers is the grant's state or the ban, not the pass.
        Self::sql(&app, "UPDATE access_grants SET includes_replays = true").await;

        // Revenue: the patron buys the pass at 13.37 through the dev checkout,
        // then its price changes, so the amount is only in what was paid.
        let pass = Self::query_id(
            &app,
            &format!(
                "INSERT INTO access_passes (channel_id, name, price_cents, currency, scope, \
                 duration_seconds, includes_replays) VALUES ({}, 'Season', 1337, 'USD', 'channel', \
                 2592000, true) RETURNING id",
                channel.id
            ),
        )
        .await;
        let (patron, _) = builders::user(&app, PATRON, "Patron").await;
        let token = patron.csrf_token().await;
        let bought = patron
            .post_raw(
                &format!("/passes/{pass}/buy"),
                &[
                    ("csrf_token", &token),
                    ("stream_id", &stream.id.to_string()),
                ],
            )
            .await;
        let checkout = bought.location().expect("buying leads to the checkout");
        let paid = patron.submit(&checkout, "#dev-confirm-form", &[]).await;
        assert_eq!(paid.status, StatusCode::SEE_OTHER, "{}", paid.text);
        Self::sql(
            &app,
            &format!("UPDATE access_passes SET price_cents = 900 WHERE id = {pass}"),
        )
        .await;
        let revenue = Self::text(
            &app,
            "SELECT string_agg(status || ' ' || amount_cents, ',') AS text FROM orders",
        )
        .await;
        assert_eq!(revenue, "paid 1337");

        let owner = &browsers[OWNER];
        let owner_token = owner.csrf_token().await;
        // A second stream, live, for the routes that need a room.
        let live = builders::stream(&app, &channel, AccessKind::Pass).await;
        builders::announce(&app, live.id).await;
        let went = owner
            .post_raw(
                &format!("/studio/streams/{}/live", live.id),
                &[("csrf_token", &owner_token)],
            )
            .await;
        assert_eq!(went.status, StatusCode::SEE_OTHER, "{}", went.text);
        assert_eq!(
            went.location(),
            Some(format!("/studio/streams/{}/broadcast", live.id))
        );
        // The stream key, made the way the owner makes it.
        let made = owner
            .post_raw(
                &format!("/studio/streams/{}/ingress", stream.id),
                &[("csrf_token", &owner_token), ("kind", "rtmp")],
            )
            .await;
        assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
        let key = Self::text(
            &app,
            &format!(
                "SELECT ingress_stream_key AS text FROM streams WHERE id = {}",
                stream.id
            ),
        )
        .await;
        // The outgoing webhook and its secret.
        let added = owner
            .post_raw(
                "/studio/channels/matrix/webhooks",
                &[
                    ("csrf_token", &owner_token),
                    ("url", "http://127.0.0.1:9/matrix"),
                    ("secret_choice", "generate"),
                ],
            )
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text);
        let webhook = Self::query_id(&app, "SELECT id FROM webhook_endpoints").await;
        let secret = Self::text(
            &app,
            &format!("SELECT secret AS text FROM webhook_endpoints WHERE id = {webhook}"),
        )
        .await;
        // A redeem code for everyone, used at the end.
        let codes = owner
            .post_raw(
                &format!("/studio/passes/{pass}/codes"),
                &[("csrf_token", &owner_token), ("count", "1"), ("uses", "20")],
            )
            .await;
        assert!(
            codes.status.is_success() || codes.status.is_redirection(),
            "{}",
            codes.text
        );
        let code = Self::text(&app, "SELECT code AS text FROM redeem_codes").await;
        // Something in the chat, a replay, the images.
        let said = browsers[VIEWER]
            .post_htmx(&format!("/s/{}/chat", stream.id), &[("body", "first")])
            .await;
        assert!(said.status.is_success(), "{}", said.text);
        Self::recording(&app, stream.id.0).await;
        for (path, field) in [
            (
                format!("/studio/streams/{}/thumbnail", stream.id),
                "thumbnail",
            ),
            ("/studio/channels/matrix/avatar".to_owned(), "avatar"),
        ] {
            let up = upload_without_js(
                owner,
                &path,
                (field, "picture.png", "image/png", &png(64, 64)),
                &owner_token,
            )
            .await;
            assert_eq!(up.status, StatusCode::SEE_OTHER, "{path}: {}", up.text);
        }

        let mut tokens = Vec::new();
        for browser in &browsers {
            tokens.push(browser.csrf_token().await);
        }
        World {
            app,
            browsers,
            tokens,
            names,
            ids,
            channel,
            stream,
            live,
            pass,
            webhook,
            code,
            secrets: vec![key, secret],
            made: AtomicU32::new(0),
        }
    }

    async fn sql(app: &TestApp, sql: &str) {
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            sql_query(statement)
                .execute(&mut *app.conn().await)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    async fn query_id(app: &TestApp, sql: &str) -> i64 {
        sql_query(sql)
            .get_result::<Id>(&mut *app.conn().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .id
    }

    async fn text(app: &TestApp, sql: &str) -> String {
        sql_query(sql)
            .get_result::<Textual>(&mut *app.conn().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .text
    }

    /// A user who is none of the personas (no password: never signs in).
    async fn user_row(app: &TestApp, email: &str) -> i64 {
        Self::query_id(
            app,
            &format!(
                "INSERT INTO users (email, display_name, password_hash) \
                 VALUES ('{email}', 'Someone', 'not-a-hash') RETURNING id"
            ),
        )
        .await
    }

    async fn recording(app: &TestApp, stream: i64) -> i64 {
        Self::query_id(
            app,
            &format!(
                "INSERT INTO recordings (stream_id, egress_id, status, object_key, duration_ms, \
                 size_bytes, started_at, ended_at) VALUES ({stream}, 'EG_' || gen_random_uuid(), \
                 'complete', 'recordings/matrix.mp4', 60000, 1000, now() - interval '1 hour', now()) \
                 RETURNING id"
            ),
        )
        .await
    }

    async fn someone(&self) -> (i64, String) {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let email = format!("someone{n}@example.com");
        (Self::user_row(&self.app, &email).await, email)
    }

    /// Makes the resource of `fresh`: its id, and the SQL that reads its row.
    async fn make(&self, fresh: Fresh) -> (i64, String) {
        let app = &self.app;
        let channel = self.channel.id.0;
        let stream = self.stream.id.0;
        let row = |table: &str, id: i64| {
            format!(
                "SELECT coalesce((SELECT row_to_json(t)::text FROM {table} t WHERE id = {id}), 'gone') AS text"
            )
        };
        match fresh {
            Fresh::Stream | Fresh::StreamWithIngress | Fresh::LiveStream => {
                let made = builders::stream(app, &self.channel, AccessKind::Pass).await;
                builders::announce(app, made.id).await;
                let by_owner = match fresh {
                    Fresh::StreamWithIngress => Some(("ingress", vec![("kind", "rtmp")])),
                    Fresh::LiveStream => Some(("live", vec![])),
                    _ => None,
                };
                if let Some((action, mut fields)) = by_owner {
                    fields.push(("csrf_token", &self.tokens[OWNER]));
                    let page = self.browsers[OWNER]
                        .post_raw(&format!("/studio/streams/{}/{action}", made.id), &fields)
                        .await;
                    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
                }
                (made.id.0, row("streams", made.id.0))
            }
            Fresh::Pass => {
                let id = Self::query_id(
                    app,
                    &format!(
                        "INSERT INTO access_passes (channel_id, name, price_cents, currency, scope, \
                         duration_seconds, includes_replays) VALUES ({channel}, 'Day', 500, 'USD', \
                         'channel', 86400, true) RETURNING id"
                    ),
                )
                .await;
                (id, row("access_passes", id))
            }
            Fresh::Grant => {
                let (user, _) = self.someone().await;
                let id =
                    builders::grant(app, UserId(user), self.channel.id, None, "-1 hour", "1 day")
                        .await;
                (id, row("access_grants", id))
            }
            Fresh::Recording => {
                let id = Self::recording(app, stream).await;
                (id, row("recordings", id))
            }
            Fresh::Notification => {
                // One notification per (user, stream, kind): each about a stream of its own.
                let about = builders::stream(app, &self.channel, AccessKind::Pass).await;
                builders::announce(app, about.id).await;
                let stream = about.id.0;
                let id = Self::query_id(
                    app,
                    &format!(
                        "INSERT INTO notifications (user_id, kind, channel_id, stream_id) \
                         VALUES ({}, 'scheduled', {channel}, {stream}) RETURNING id",
                        self.ids[VIEWER].unwrap()
                    ),
                )
                .await;
                (id, row("notifications", id))
            }
            Fresh::Webhook => {
                let id = Self::query_id(
                    app,
                    &format!(
                        "INSERT INTO webhook_endpoints (channel_id, url, secret) VALUES \
                         ({channel}, 'http://127.0.0.1:9/fresh', 'fresh-secret-{}') RETURNING id",
                        uuid::Uuid::new_v4().simple()
                    ),
                )
                .await;
                (id, row("webhook_endpoints", id))
            }
            Fresh::Order => {
                let id = Self::query_id(
                    app,
                    &format!(
                        "INSERT INTO orders (user_id, pass_id, amount_cents, currency, provider, status) \
                         VALUES ({}, {}, 900, 'USD', 'dev', 'pending') RETURNING id",
                        self.ids[VIEWER].unwrap(),
                        self.pass
                    ),
                )
                .await;
                (id, row("orders", id))
            }
            Fresh::Message => {
                let id = Self::query_id(
                    app,
                    &format!(
                        "WITH s AS (UPDATE streams SET chat_seq = chat_seq + 1 WHERE id = {stream} \
                         RETURNING chat_seq) INSERT INTO chat_messages (stream_id, author_id, body, seq) \
                         SELECT {stream}, {}, 'delete me', chat_seq FROM s RETURNING id",
                        self.ids[VIEWER].unwrap()
                    ),
                )
                .await;
                (id, row("chat_messages", id))
            }
            Fresh::Ban => {
                let (user, _) = self.someone().await;
                let id = Self::query_id(
                    app,
                    &format!(
                        "INSERT INTO bans (channel_id, user_id, kind, reason) \
                         VALUES ({channel}, {user}, 'ban', 'matrix') RETURNING id"
                    ),
                )
                .await;
                (id, row("bans", id))
            }
            Fresh::Moderator => {
                let (user, _) = self.someone().await;
                builders::moderator(app, self.channel.id, UserId(user)).await;
                let read = format!(
                    "SELECT coalesce((SELECT row_to_json(t)::text FROM channel_members t \
                     WHERE channel_id = {channel} AND user_id = {user}), 'gone') AS text"
                );
                (user, read)
            }
        }
    }

    /// Everything of the channel a request could change, as text.
    async fn state(&self) -> String {
        let c = self.channel.id.0;
        let viewer = self.ids[VIEWER].unwrap();
        let all = |table: &str, filter: &str| {
            format!(
                "(SELECT coalesce(json_agg(t ORDER BY row_to_json(t)::text)::text, '[]') FROM {table} t WHERE {filter})"
            )
        };
        let sql = format!(
            "SELECT concat_ws(E'\\n', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}) AS text",
            all("channels", &format!("id = {c}")),
            all("streams", &format!("channel_id = {c}")),
            all("channel_members", &format!("channel_id = {c}")),
            all("access_passes", &format!("channel_id = {c}")),
            all("access_grants", &format!("channel_id = {c}")),
            all(
                "redeem_codes",
                &format!("pass_id IN (SELECT id FROM access_passes WHERE channel_id = {c})")
            ),
            all("bans", &format!("channel_id = {c}")),
            all(
                "chat_messages",
                &format!("stream_id IN (SELECT id FROM streams WHERE channel_id = {c})")
            ),
            all(
                "recordings",
                &format!("stream_id IN (SELECT id FROM streams WHERE channel_id = {c})")
            ),
            all("webhook_endpoints", &format!("channel_id = {c}")),
            all(
                "orders",
                &format!("pass_id IN (SELECT id FROM access_passes WHERE channel_id = {c})")
            ),
            all("notifications", &format!("user_id = {viewer}")),
        );
        Self::text(&self.app, &sql).await
    }
}

// ---------------------------------------------------------------------------
// Asking.

/// One persona's answer to one row, and what the request changed.
struct Cell {
    path: String,
    outcome: Outcome,
    body: Option<String>,
    /// Whether the channel's rows (`World::state`) differ after a POST.
    channel_changed: bool,
    /// Whether the row's own resource differs (None: it has none to read).
    resource_changed: Option<bool>,
}

struct Answer {
    outcome: Outcome,
    /// The body as text (None for an event stream, which never ends).
    body: Option<String>,
}

impl World {
    async fn ask(&self, who: usize, row: &Row, path: &str, form: &[(String, String)]) -> Answer {
        let browser = &self.browsers[who];
        let url = browser.url(path);
        let request = match (&row.body, row.method) {
            (Body::None, Method::Get) => browser.client.get(&url),
            (Body::Htmx(_), _) => browser
                .client
                .post(&url)
                .header("HX-Request", "true")
                .header("X-CSRF-Token", &self.tokens[who])
                .form(form),
            (Body::Form(_), _) | (Body::None, Method::Post) => {
                let mut fields = vec![("csrf_token".to_owned(), self.tokens[who].clone())];
                fields.extend(form.iter().cloned());
                browser.client.post(&url).form(&fields)
            }
            (Body::Unsigned, _) => browser
                .client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(r#"{"id":"evt_matrix","type":"checkout.session.completed","event":"room_finished"}"#),
            (Body::Image(field), _) => {
                let page = upload_without_js(
                    browser,
                    path,
                    (field, "picture.png", "image/png", &png(32, 32)),
                    &self.tokens[who],
                )
                .await;
                return Answer {
                    outcome: Outcome::of(page.status, page.location().as_deref()),
                    body: Some(page.text),
                };
            }
        };
        let response = tokio::time::timeout(Duration::from_secs(30), request.send())
            .await
            .unwrap_or_else(|_| panic!("{path} answered within 30 s"))
            .unwrap();
        let location = ["location", "hx-redirect"].iter().find_map(|name| {
            response
                .headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let outcome = Outcome::of(response.status(), location.as_deref());
        let streaming = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if streaming {
            None
        } else {
            Some(String::from_utf8_lossy(&response.bytes().await.unwrap()).into_owned())
        };
        Answer { outcome, body }
    }

    /// Asks `row` as `who`, with its resources made and its path filled in,
    /// and reads what the request changed.
    async fn ask_cell(&self, row: &Row, who: usize) -> Cell {
        let fresh = match row.on {
            On::Fresh(kind) => Some((kind, self.make(kind).await)),
            On::Pass => Some((Fresh::Pass, (self.pass, String::new()))),
            On::Webhook => Some((Fresh::Webhook, (self.webhook, String::new()))),
            On::Live => Some((Fresh::Stream, (self.live.id.0, String::new()))),
            On::Stream => None,
        };
        let fields: &[(&str, &str)] = match &row.body {
            Body::Form(fields) | Body::Htmx(fields) => fields,
            _ => &[],
        };
        let target = if fields.iter().any(|(_, v)| v.starts_with("{target")) {
            self.someone().await
        } else {
            (0, String::new())
        };
        let path = self.fill(
            row.path,
            who,
            fresh.as_ref().map(|(k, (id, _))| (*k, *id)),
            &target,
        );
        let form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), self.fill(v, who, None, &target)))
            .collect();
        let read = fresh
            .as_ref()
            .map(|(_, (_, read))| read.as_str())
            .filter(|r| !r.is_empty());
        let mutation = row.method == Method::Post;
        let channel_before = if mutation {
            Some(self.state().await)
        } else {
            None
        };
        let resource_before = match read {
            Some(read) => Some(Self::text(&self.app, read).await),
            None => None,
        };

        let answer = self.ask(who, row, &path, &form).await;

        let channel_changed = match channel_before {
            Some(before) => before != self.state().await,
            None => false,
        };
        let resource_changed = match (resource_before, read) {
            (Some(before), Some(read)) => Some(before != Self::text(&self.app, read).await),
            _ => None,
        };
        Cell {
            path,
            outcome: answer.outcome,
            body: answer.body,
            channel_changed,
            resource_changed,
        }
    }

    fn fill(
        &self,
        template: &str,
        who: usize,
        fresh: Option<(Fresh, i64)>,
        target: &(i64, String),
    ) -> String {
        let mut out = template.to_owned();
        if let Some((kind, id)) = fresh {
            let placeholder = match kind {
                Fresh::Order => "{order}",
                Fresh::Message => "{message}",
                Fresh::Ban => "{ban}",
                Fresh::Moderator => "{user_id}",
                _ => "{id}",
            };
            out = out.replace(placeholder, &id.to_string());
        }
        out.replace("{handle}", &self.channel.handle)
            .replace("{identity}", &self.ids[VIEWER].unwrap().to_string())
            .replace("{stream}", &self.stream.id.to_string())
            .replace("{code}", &self.code)
            .replace("{name}", &self.names[who])
            .replace("{target_id}", &target.0.to_string())
            .replace("{target_email}", &target.1)
            .replace("{id}", &self.stream.id.to_string())
    }

    /// What `who` must never be shown.
    fn must_not_show(&self, who: usize) -> Vec<String> {
        if who == OWNER {
            return Vec::new();
        }
        let mut hidden = self.secrets.clone();
        hidden.push(REVENUE.to_owned());
        hidden.push(PATRON.to_owned());
        for (p, (_, email)) in WHO.iter().enumerate() {
            if let Some(email) = email
                && p != who
            {
                hidden.push((*email).to_owned());
            }
        }
        hidden
    }
}

#[tokio::test]
async fn every_route_answers_every_persona_as_the_table_says() {
    let started = Instant::now();
    let rows = matrix();

    if let Some(message) = out_of_step(&routes_in_router(), &rows) {
        panic!("{message}");
    }

    let world = World::build().await;
    let built = started.elapsed();
    let mut wrong = Vec::new();
    let mut leaks = Vec::new();
    let mut actual_rows = Vec::new();
    // What the owner may see and must see somewhere: else the scan of the
    // others' bodies for it proves nothing (a key or an amount shown in
    // another form would pass unnoticed).
    let watched: BTreeSet<String> = world
        .secrets
        .iter()
        .cloned()
        .chain([REVENUE, PATRON].map(str::to_owned))
        .chain([VIEWER, EXPIRED, REVOKED, BANNED].map(|p| WHO[p].1.unwrap().to_owned()))
        .collect();
    let mut seen_by_owner = BTreeSet::new();
    for row in &rows {
        let method = row.method.name();
        let mut actual = Vec::new();
        for (who, (name, _)) in WHO.iter().enumerate() {
            let cell = world.ask_cell(row, who).await;
            let path = &cell.path;
            let expected = row.expect[who];
            actual.push(cell.outcome);
            if cell.outcome != expected {
                let excerpt: String = cell
                    .body
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect();
                wrong.push(format!(
                    "{method} {path} as {name}: expected {expected:?}, got {:?}\n    {excerpt}",
                    cell.outcome
                ));
            }
            if let Some(body) = &cell.body {
                if who == OWNER {
                    seen_by_owner.extend(
                        watched
                            .iter()
                            .filter(|w| body.contains(w.as_str()))
                            .cloned(),
                    );
                }
                for secret in world.must_not_show(who) {
                    if body.contains(&secret) {
                        leaks.push(format!("{method} {path} showed {name} {secret:?}"));
                    }
                }
            }
            // A refused request changes nothing; an allowed one uses up its fresh resource.
            let refused = cell.outcome.refused();
            if refused && cell.channel_changed {
                wrong.push(format!(
                    "{method} {path} as {name} was refused ({:?}) but changed the channel",
                    cell.outcome
                ));
            }
            match cell.resource_changed {
                Some(true) if refused => wrong.push(format!(
                    "{method} {path} as {name} was refused but changed its resource"
                )),
                Some(false)
                    if !refused && cell.outcome == expected && row.method == Method::Post =>
                {
                    wrong.push(format!(
                        "{method} {path} as {name} was allowed but changed nothing"
                    ))
                }
                _ => {}
            }
        }
        actual_rows.push(format!("{method} {} {:?}", row.path, actual));
    }
    let unseen: Vec<&String> = watched.difference(&seen_by_owner).collect();
    assert!(
        unseen.is_empty(),
        "the owner was never shown {unseen:?}: the others' bodies were searched for it in vain"
    );
    // The rooms the owner opened close with the test.
    let live: Vec<Id> = sql_query("SELECT id FROM streams WHERE status = 'live'")
        .load(&mut *world.app.conn().await)
        .await
        .unwrap();
    for stream in live {
        stagepass::lifecycle::end_stream(
            &world.app.state,
            stagepass::db::StreamId(stream.id),
            None,
        )
        .await
        .unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "authorization matrix: {} routes x {PERSONAS} personas in {elapsed:.1?} (set-up {built:.1?})",
        rows.len()
    );
    assert!(
        wrong.is_empty() && leaks.is_empty(),
        "{} answers differ from the table, {} bodies show what they must not:\n{}\n{}\n\nwhat each row got:\n{}",
        wrong.len(),
        leaks.len(),
        wrong.join("\n"),
        leaks.join("\n"),
        actual_rows.join("\n")
    );
}
