//! Accounts: sign up, sign in, sign out, the account page, sessions, CSRF and
//! sign-in throttling — as a user (and an attacker) would meet them.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::schema::{sessions, users};

use crate::util::{Browser, PASSWORD, TestApp};

async fn user_count(app: &TestApp, email: &str) -> i64 {
    diesel::sql_query("SELECT 1 FROM users WHERE lower(email) = lower($1)")
        .bind::<diesel::sql_types::Text, _>(email)
        .execute(&mut app.conn().await)
        .await
        .unwrap() as i64
}

#[tokio::test]
async fn sign_up_leaves_you_signed_in_with_an_argon2id_hash() {
    let app = TestApp::spawn().await;
    let ann = app.signed_up("Ann@Example.com", "Ann Lee").await;

    let home = ann.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.text_of("[data-testid=nav-account]"), "Ann Lee");
    assert!(
        home.text_of("#alerts")
            .contains("Welcome to stagepass, Ann Lee!")
    );

    let (email, hash): (String, String) = users::table
        .select((users::email, users::password_hash))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(email, "ann@example.com");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test]
async fn duplicate_email_in_any_case_is_refused_next_to_the_field() {
    let app = TestApp::spawn().await;
    app.signed_up("ann@example.com", "Ann").await;

    let other = app.anonymous();
    let page = other
        .submit(
            "/signup",
            "#signup-form",
            &[
                ("email", "ANN@Example.COM"),
                ("display_name", "Impostor"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text_of("#email-error").contains("already exists"),
        "{}",
        page.text
    );
    assert_eq!(page.attr("#email", "aria-invalid").as_deref(), Some("true"));
    // What was typed is kept, the password is not echoed back.
    assert_eq!(
        page.attr("#display_name", "value").as_deref(),
        Some("Impostor")
    );
    assert_eq!(page.attr("#password", "value"), None);
    assert_eq!(user_count(&app, "ann@example.com").await, 1);
}

#[tokio::test]
async fn form_errors_come_back_as_a_fragment_to_htmx() {
    let app = TestApp::spawn().await;
    let browser = app.anonymous();
    let page = browser
        .post_htmx(
            "/signup",
            &[
                ("email", "nope"),
                ("display_name", ""),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!page.text.contains("<html"), "a fragment, not a page");
    assert!(page.has("form#signup-form"));
    assert_eq!(
        page.text_of("#email-error"),
        "Enter an email address like name@example.com."
    );
    assert_eq!(
        page.text_of("#display_name-error"),
        "Enter the name others will see."
    );
    assert_eq!(
        page.text_of("#password-error"),
        "Use at least 10 characters."
    );
    assert_eq!(page.header("vary").as_deref(), Some("HX-Request"));
    assert_eq!(user_count(&app, "nope").await, 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_generic_error() {
    let app = TestApp::spawn().await;
    app.signed_up("bo@example.com", "Bo").await;

    let stranger = app.anonymous();
    let wrong = stranger
        .submit(
            "/signin",
            "#signin-form",
            &[
                ("email", "bo@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    let unknown = stranger
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "nobody@example.com"), ("password", PASSWORD)],
        )
        .await;
    for page in [&wrong, &unknown] {
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            page.text_of(".form-error"),
            "That email and password don't match an account. Check them and try again."
        );
    }
    assert!(!stranger.get("/").await.has("[data-testid=nav-account]"));
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let cy = app.signed_up("cy@example.com", "Cy").await;
    let cookie = cy.session_cookie().expect("a session cookie");
    assert_eq!(cy.get("/account").await.status, StatusCode::OK);

    let out = cy.submit("/", "form[action='/signout']", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let rows: i64 = sessions::table
        .filter(sessions::id.eq(&cookie))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the session row is deleted");

    // Someone who kept a copy of the old cookie gets nothing from it.
    let thief = app.anonymous();
    thief.jar.add_cookie_str(
        &format!("{}={cookie}", stagepass::router::SESSION_COOKIE),
        &app.url.parse().unwrap(),
    );
    let page = thief.get("/account").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location().as_deref(), Some("/signin?next=%2Faccount"));
}

#[tokio::test]
async fn the_user_loaded_with_the_session_is_current_and_never_stored_in_it() {
    let app = TestApp::spawn().await;
    let cy = app.signed_up("cy@example.com", "Cy").await;
    let cookie = cy.session_cookie().expect("a session cookie");

    // The rename saves the session (a flash); the next page shows the new name,
    // read with the session in the same query.
    let saved = cy
        .submit(
            "/account",
            "#profile-form",
            &[("display_name", "Cy Renamed")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let page = cy.get("/account").await;
    assert_eq!(page.text_of("[data-testid=nav-account]"), "Cy Renamed");

    // The row holds the session's own keys, never a copy of the account.
    let data: serde_json::Value = sessions::table
        .filter(sessions::id.eq(&cookie))
        .select(sessions::data)
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(keys.contains(&"user_id"), "{keys:?}");
    assert!(!keys.contains(&"_user"), "{keys:?}");
    assert!(!data.to_string().contains("cy@example.com"), "{data}");
}

#[tokio::test]
async fn protected_page_sends_anonymous_users_to_sign_in_and_back() {
    let app = TestApp::spawn().await;
    app.signed_up("di@example.com", "Di").await;

    let di = app.anonymous();
    let page = di.get("/account").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let to = page.location().unwrap();
    assert_eq!(to, "/signin?next=%2Faccount");

    let signed_in = di
        .submit(
            &to,
            "#signin-form",
            &[("email", "DI@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location().as_deref(), Some("/account"));
    let account = di.follow(&signed_in).await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.text.contains("di@example.com"));

    // htmx requests are told where to go with HX-Redirect instead.
    let htmx = app.anonymous().get_htmx("/account").await;
    assert_eq!(
        htmx.header("hx-redirect").as_deref(),
        Some("/signin?next=%2Faccount")
    );

    // `next` never leads off-site.
    let evil = app.anonymous();
    let page = evil
        .submit(
            "/signin?next=//evil.example",
            "#signin-form",
            &[("email", "di@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.location().as_deref(), Some("/"));
}

#[tokio::test]
async fn post_without_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let ed = app.signed_up("ed@example.com", "Ed").await;

    let no_token = ed
        .post_raw("/account/profile", &[("display_name", "Hacked")])
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(
        no_token
            .text_of(".alert")
            .contains("Reload the page and try again")
    );

    let wrong_token = ed
        .post_raw(
            "/account/profile",
            &[("display_name", "Hacked"), ("csrf_token", "0000")],
        )
        .await;
    assert_eq!(wrong_token.status, StatusCode::FORBIDDEN);

    // A valid token sent from another site is still refused.
    let token = ed.csrf_token().await;
    let cross_site = Browser::read(
        ed.client
            .post(ed.url("/account/profile"))
            .header("Origin", "https://evil.example")
            .form(&[("display_name", "Hacked"), ("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    let fetch_site = Browser::read(
        ed.client
            .post(ed.url("/account/profile"))
            .header("Sec-Fetch-Site", "cross-site")
            .header("X-CSRF-Token", token.as_str())
            .form(&[("display_name", "Hacked")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(fetch_site.status, StatusCode::FORBIDDEN);

    let name: String = users::table
        .select(users::display_name)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(name, "Ed");

    // The same change with the token goes through (so the refusals above mean something).
    let ok = ed
        .post_htmx("/account/profile", &[("display_name", "Edward")])
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let name: String = users::table
        .select(users::display_name)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(name, "Edward");
}

#[tokio::test]
async fn session_id_changes_at_sign_in() {
    let app = TestApp::spawn().await;
    app.signed_up("fay@example.com", "Fay").await;

    let fay = app.anonymous();
    fay.get("/signin").await;
    let before = fay
        .session_cookie()
        .expect("the sign-in page starts a session for its CSRF token");
    let page = fay
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "fay@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let after = fay.session_cookie().unwrap();
    assert_ne!(before, after);

    let old: i64 = sessions::table
        .filter(sessions::id.eq(&before))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(old, 0, "the pre-sign-in session is gone (no fixation)");
}

#[tokio::test]
async fn sign_in_is_throttled_after_repeated_failures() {
    let app = TestApp::spawn().await;
    app.signed_up("gus@example.com", "Gus").await;
    let attacker = app.anonymous();
    for _ in 0..app
        .state
        .config
        .limits
        .sign_in_failures_per_account_and_address
    {
        let page = attacker
            .submit(
                "/signin",
                "#signin-form",
                &[
                    ("email", "gus@example.com"),
                    ("password", "guess-guess-guess"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Even the right password is refused now, with a clear reason.
    let page = attacker
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "GUS@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of(".form-error")
            .contains("Too many failed sign-in attempts")
    );
    assert!(!attacker.get("/").await.has("[data-testid=nav-account]"));
}

#[tokio::test]
async fn password_change_signs_out_other_devices_and_the_new_password_works() {
    let app = TestApp::spawn().await;
    let laptop = app.signed_up("hal@example.com", "Hal").await;
    let phone = app.anonymous();
    phone
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "hal@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(phone.get("/account").await.status, StatusCode::OK);

    let wrong = laptop
        .submit(
            "/account",
            "#password-form",
            &[
                ("current_password", "not it at all"),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong.text_of("#current_password-error"),
        "That is not your current password."
    );

    let before = laptop.session_cookie().unwrap();
    let ok = laptop
        .submit(
            "/account",
            "#password-form",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_ne!(
        laptop.session_cookie().unwrap(),
        before,
        "session id cycled"
    );
    let account = laptop.follow(&ok).await;
    assert!(
        account
            .text_of("#alerts")
            .contains("other devices were signed out")
    );

    assert_eq!(
        phone.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "the phone was signed out"
    );
    let again = app.anonymous();
    let page = again
        .submit(
            "/signin",
            "#signin-form",
            &[
                ("email", "hal@example.com"),
                ("password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_stranger_guessing_does_not_lock_the_owner_out_but_a_spread_out_attack_does() {
    let app = TestApp::spawn().await;
    app.signed_up("kit@example.com", "Kit").await;
    let record = |email: String, ip: String| {
        let app = &app;
        async move {
            stagepass::db::users::record_sign_in_attempt(
                &mut *app.conn().await,
                &email,
                &ip,
                None,
                false,
            )
            .await
            .unwrap()
        }
    };
    // Someone elsewhere tried Kit's account until they were stopped.
    for _ in 0..app
        .state
        .config
        .limits
        .sign_in_failures_per_account_and_address
    {
        record("kit@example.com".into(), "203.0.113.9".into()).await;
    }
    let sign_in = || async {
        app.anonymous()
            .submit(
                "/signin",
                "#signin-form",
                &[("email", "kit@example.com"), ("password", PASSWORD)],
            )
            .await
    };
    assert_eq!(
        sign_in().await.status,
        StatusCode::SEE_OTHER,
        "Kit, from her own address, still signs in"
    );

    // Guessing at Kit's account from many addresses hits the account-wide limit.
    for i in 0..app.state.config.limits.sign_in_failures_per_account {
        record("kit@example.com".into(), format!("198.51.100.{}", i % 250)).await;
    }
    let page = sign_in().await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of(".form-error")
            .contains("Too many failed sign-in attempts")
    );
}

#[tokio::test]
async fn sign_in_is_throttled_per_address_too() {
    let app = TestApp::spawn().await;
    app.signed_up("ida@example.com", "Ida").await;
    // Failures spread over many accounts from one address (a credential-stuffing run).
    for i in 0..app.state.config.limits.sign_in_failures_per_address {
        stagepass::db::users::record_sign_in_attempt(
            &mut *app.conn().await,
            &format!("victim{i}@example.com"),
            "127.0.0.1",
            None,
            false,
        )
        .await
        .unwrap();
    }
    let page = app
        .anonymous()
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "ida@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.text_of(".form-error").contains("wait 15 minutes"));
}

#[tokio::test]
async fn reading_pages_renews_the_session_at_most_once_an_hour_without_a_write_per_view() {
    let app = TestApp::spawn().await;
    let lu = app.signed_up("lu@example.com", "Lu").await;
    let cookie = lu.session_cookie().unwrap();
    let expires = || async {
        sessions::table
            .find(&cookie)
            .select(sessions::expires_at)
            .first::<chrono::DateTime<chrono::Utc>>(&mut app.conn().await)
            .await
            .unwrap()
    };
    assert_eq!(lu.get("/account").await.status, StatusCode::OK);
    let first = expires().await;
    assert_eq!(lu.get("/account").await.status, StatusCode::OK);
    assert_eq!(lu.get("/").await.status, StatusCode::OK);
    assert_eq!(
        expires().await,
        first,
        "page views within the hour write nothing"
    );

    // As if the last renewal was over an hour ago: the next view renews it.
    diesel::sql_query(
        "UPDATE sessions SET data = jsonb_set(data, '{touched}', to_jsonb(extract(epoch FROM now())::bigint - 3601)) WHERE id = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&cookie)
    .execute(&mut app.conn().await)
    .await
    .unwrap();
    assert_eq!(lu.get("/account").await.status, StatusCode::OK);
    assert!(expires().await > first, "the idle timeout was pushed out");
}

#[tokio::test]
async fn idle_sessions_expire_and_are_cleaned_up() {
    use tower_sessions::session_store::ExpiredDeletion;
    let app = TestApp::spawn().await;
    let jo = app.signed_up("jo@example.com", "Jo").await;
    let cookie = jo.session_cookie().unwrap();
    // As if the idle timeout had passed since the last request.
    diesel::update(sessions::table.filter(sessions::id.eq(&cookie)))
        .set(sessions::expires_at.eq(chrono::Utc::now() - chrono::Duration::minutes(1)))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        jo.get("/account").await.status,
        StatusCode::SEE_OTHER,
        "an expired session is never loaded"
    );

    stagepass::auth::session_store::PgSessionStore::new(app.db().clone())
        .delete_expired()
        .await
        .unwrap();
    let left: i64 = sessions::table
        .filter(sessions::id.eq(&cookie))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(left, 0, "the cleanup task deletes expired rows");
}

#[tokio::test]
async fn sessions_end_after_the_absolute_timeout_even_when_active() {
    let app = TestApp::spawn_with(|env| {
        env.insert("SESSION_IDLE_TIMEOUT_MINUTES".into(), "60".into());
        env.insert("SESSION_ABSOLUTE_TIMEOUT_MINUTES".into(), "120".into());
    })
    .await;
    let kim = app.signed_up("kim@example.com", "Kim").await;
    assert_eq!(kim.get("/account").await.status, StatusCode::OK);
    let cookie = kim.session_cookie().unwrap();
    // Signed in three hours ago, active ever since.
    diesel::sql_query("UPDATE sessions SET data = jsonb_set(data, '{signed_in_at}', to_jsonb(extract(epoch FROM now() - interval '3 hours')::bigint)) WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(&cookie)
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(kim.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_printed_demo_accounts_can_sign_in() {
    let app = TestApp::spawn().await;
    let accounts = stagepass::demo::load(&mut *app.conn().await).await.unwrap();
    // Loading twice is harmless.
    stagepass::demo::load(&mut *app.conn().await).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let open_streams = async || -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM streams WHERE status <> 'ended'")
            .get_result::<Count>(&mut *app.conn().await)
            .await
            .unwrap()
            .n
    };
    assert_eq!(open_streams().await, 1);
    // A run that ended the demo stream leaves the next one a stream to go live with.
    diesel::sql_query(
        "UPDATE streams SET status = 'ended', started_at = now() - interval '1 hour', ended_at = now()",
    )
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
    stagepass::demo::load(&mut *app.conn().await).await.unwrap();
    assert_eq!(open_streams().await, 1);
    let printed = stagepass::demo::describe(accounts, &app.state.config);
    assert!(printed.contains("viewer@example.com"), "{printed}");
    assert!(printed.contains(stagepass::demo::DEMO_PASSWORD));

    let viewer = app.anonymous();
    let page = viewer
        .submit(
            "/signin",
            "#signin-form",
            &[
                ("email", "viewer@example.com"),
                ("password", stagepass::demo::DEMO_PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        viewer.get("/").await.text_of("[data-testid=nav-account]"),
        "Val Viewer"
    );

    // The viewer's pass is active, judged by SQL at this moment.
    let active: i64 = diesel::sql_query(
        "SELECT 1 FROM access_grants g JOIN users u ON u.id = g.user_id \
         WHERE u.email = 'viewer@example.com' AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at",
    )
    .execute(&mut app.conn().await)
    .await
    .unwrap() as i64;
    assert_eq!(active, 1);

    // ...and they follow the demo channel.
    let following = viewer.get("/following").await;
    assert!(following.text.contains("Casey Live"), "{}", following.text);
}

/// Signs in through the form, from whatever browser (and its device cookie).
async fn sign_in(browser: &Browser, email: &str, password: &str) -> crate::util::Page {
    browser
        .submit(
            "/signin",
            "#signin-form",
            &[("email", email), ("password", password)],
        )
        .await
}

/// A stranger's failed sign-ins to `email`: 5 from each of 20 addresses,
/// 100 in all (as counted, without the argon2 work of sending them).
async fn spread_out_attack(app: &TestApp, email: &str) {
    for i in 0..20 {
        for _ in 0..5 {
            stagepass::db::users::record_sign_in_attempt(
                &mut *app.conn().await,
                email,
                &format!("203.0.113.{i}"),
                None,
                false,
            )
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn failures_spread_over_many_addresses_do_not_lock_the_owner_out_of_a_browser_they_used() {
    let app = TestApp::spawn().await;
    // The owner signed up in this browser (it is now known to the account)
    // and signed out again.
    let owner = app.signed_up("olga@example.com", "Olga").await;
    let out = owner.post_htmx("/signout", &[]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(!owner.get("/").await.has("[data-testid=nav-account]"));

    // A stranger: 5 wrong passwords from each of 20 addresses, 100 in all.
    spread_out_attack(&app, "olga@example.com").await;

    // A browser the account has never seen is held, and told why and for how long.
    let page = sign_in(&app.anonymous(), "olga@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let error = page.text_of(".form-error");
    assert!(error.contains("from many places"), "{error}");
    assert!(
        error.contains("wait 15 minutes before trying again"),
        "{error}"
    );
    let retry: u64 = page.header("retry-after").unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "Retry-After: {retry}");

    // The owner's own browser signs in with the right password.
    let page = sign_in(&owner, "olga@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert!(owner.get("/").await.has("[data-testid=nav-account]"));

    // Its own failures count, though: past the per-device limit it is a
    // stranger again, and the account-wide limit holds it too.
    owner.post_htmx("/signout", &[]).await;
    for _ in 0..app.state.config.limits.sign_in_failures_per_device {
        let page = sign_in(&owner, "olga@example.com", "not the password").await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let page = sign_in(&owner, "olga@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of(".form-error")
            .contains("Too many failed sign-in attempts")
    );
}

/// Whether `browser`'s device cookie is known to the account `email`.
async fn knows_device(app: &TestApp, email: &str, browser: &Browser) -> bool {
    let token = browser
        .cookie(stagepass::auth::device::COOKIE)
        .expect("a device cookie");
    diesel::sql_query(
        "SELECT 1 FROM known_devices d JOIN users u ON u.id = d.user_id \
         WHERE lower(u.email) = lower($1) \
           AND d.token_hash = encode(sha256(convert_to($2, 'UTF8')), 'hex')",
    )
    .bind::<diesel::sql_types::Text, _>(email)
    .bind::<diesel::sql_types::Text, _>(token)
    .execute(&mut app.conn().await)
    .await
    .unwrap()
        == 1
}

#[tokio::test]
async fn every_sign_in_reissues_the_device_cookie_and_a_password_change_forgets_other_browsers() {
    let app = TestApp::spawn().await;
    let device = stagepass::auth::device::COOKIE;
    let laptop = app.signed_up("ivy@example.com", "Ivy").await;
    let first = laptop.cookie(device).unwrap();
    assert!(knows_device(&app, "ivy@example.com", &laptop).await);

    // Signing in again: a new cookie, and the old one is retired.
    laptop.post_htmx("/signout", &[]).await;
    let page = sign_in(&laptop, "ivy@example.com", PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_ne!(laptop.cookie(device).unwrap(), first);
    assert!(knows_device(&app, "ivy@example.com", &laptop).await);
    let copy = app.anonymous();
    copy.jar.add_cookie_str(
        &format!("{device}={first}; Path=/"),
        &app.url.parse().unwrap(),
    );
    assert!(!knows_device(&app, "ivy@example.com", &copy).await);

    // A second browser signs in; then the laptop changes the password.
    let phone = app.anonymous();
    sign_in(&phone, "ivy@example.com", PASSWORD).await;
    assert!(knows_device(&app, "ivy@example.com", &phone).await);
    let changed = laptop
        .submit(
            "/account",
            "#password-form",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    assert!(knows_device(&app, "ivy@example.com", &laptop).await);
    assert!(!knows_device(&app, "ivy@example.com", &phone).await);

    // Under a spread-out attack, only the laptop still gets in: the phone
    // and the copied cookie are strangers to the account again.
    spread_out_attack(&app, "ivy@example.com").await;
    for stranger in [&phone, &copy] {
        let page = sign_in(stranger, "ivy@example.com", "a brand new passphrase").await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.text);
    }
    laptop.post_htmx("/signout", &[]).await;
    let page = sign_in(&laptop, "ivy@example.com", "a brand new passphrase").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
}

#[tokio::test]
async fn sign_up_is_limited_per_address_and_a_refusal_creates_nothing() {
    let app = TestApp::spawn_with(|env| {
        env.insert("SIGNUP_MAX_PER_ADDRESS".into(), "4".into());
    })
    .await;
    let sign_up = |browser: Browser, email: String| async move {
        browser
            .submit(
                "/signup",
                "#signup-form",
                &[
                    ("email", email.as_str()),
                    ("display_name", "Flood"),
                    ("password", PASSWORD),
                ],
            )
            .await
    };
    // A form that cannot create an account is not counted, and does not say
    // whether its email has one: fixing a short password costs nothing.
    app.signed_up("taken@example.com", "Taken").await;
    for _ in 0..5 {
        let page = app
            .anonymous()
            .submit(
                "/signup",
                "#signup-form",
                &[
                    ("email", "taken@example.com"),
                    ("display_name", "Flood"),
                    ("password", "short"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.text_of("#password-error").contains("at least"));
        assert!(!page.has("#email-error"), "{}", page.text);
    }
    for i in 0..3 {
        let page = sign_up(app.anonymous(), format!("flood{i}@example.com")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    }
    let page = sign_up(app.anonymous(), "flood3@example.com".into()).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let error = page.text_of("#signup-form .form-error");
    assert!(
        error.contains("Too many sign-ups from your network"),
        "{error}"
    );
    assert!(
        error.contains("Wait 60 minutes before trying again"),
        "{error}"
    );
    assert!(page.header("retry-after").is_some());
    assert_eq!(user_count(&app, "flood3@example.com").await, 0);

    // With htmx, the form comes back with the reason above its fields.
    let page = app
        .anonymous()
        .post_htmx(
            "/signup",
            &[
                ("email", "flood4@example.com"),
                ("display_name", "Flood"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.text_of("#signup-form .form-error")
            .contains("Too many sign-ups from your network")
    );
    assert_eq!(user_count(&app, "flood4@example.com").await, 0);
}

#[tokio::test]
async fn guessing_the_current_password_on_the_account_page_is_limited() {
    let app = TestApp::spawn_with(|env| {
        env.insert("PASSWORD_CHANGE_MAX_FAILURES".into(), "2".into());
    })
    .await;
    let thief = app.signed_up("pat@example.com", "Pat").await;
    let change = |current: &'static str| {
        let thief = thief.clone();
        async move {
            thief
                .submit(
                    "/account",
                    "#password-form",
                    &[
                        ("current_password", current),
                        ("new_password", "a brand new passphrase"),
                    ],
                )
                .await
        }
    };
    for _ in 0..2 {
        let page = change("a wrong guess").await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Now even the right one waits, and nothing changes.
    let page = change(PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let error = page.text_of("#current_password-error");
    assert!(
        error.starts_with("Too many wrong current passwords"),
        "{error}"
    );
    assert!(error.contains("before trying again"), "{error}");
    let page = sign_in(&app.anonymous(), "pat@example.com", PASSWORD).await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "the password is unchanged"
    );
}

#[tokio::test]
async fn wrong_passwords_sent_at_once_count_against_each_other() {
    let app = TestApp::spawn().await;
    app.signed_up("pia@example.com", "Pia").await;
    let limit = app
        .state
        .config
        .limits
        .sign_in_failures_per_account_and_address as usize;
    // Three times the limit, all at once from one address: only `limit` of
    // them get their password checked, the rest are refused (before, each
    // was checked against the count as it stood before any of them).
    let guessers: Vec<Browser> = (0..limit * 3).map(|_| app.anonymous()).collect();
    let answers = futures_util::future::join_all(
        guessers
            .iter()
            .map(|b| sign_in(b, "pia@example.com", "not the password")),
    )
    .await;
    let checked = answers
        .iter()
        .filter(|p| p.status == StatusCode::UNPROCESSABLE_ENTITY)
        .count();
    let refused = answers
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (limit, limit * 2));
}

#[tokio::test]
async fn current_password_guesses_sent_at_once_count_against_each_other_and_a_right_one_does_not_count()
 {
    let app = TestApp::spawn_with(|env| {
        env.insert("PASSWORD_CHANGE_MAX_FAILURES".into(), "2".into());
    })
    .await;
    let thief = app.signed_up("pat@example.com", "Pat").await;
    let change = |current: &'static str, new: &'static str| {
        let thief = thief.clone();
        async move {
            thief
                .submit(
                    "/account",
                    "#password-form",
                    &[("current_password", current), ("new_password", new)],
                )
                .await
        }
    };
    // The right current password with a new one too short: refused for the
    // new one, and no failure counted.
    let page = change(PASSWORD, "short").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!page.has("#current_password-error"), "{}", page.text);
    assert!(page.has("#new_password-error"), "{}", page.text);
    // Six guesses at once: two are checked, four wait.
    let answers = futures_util::future::join_all(
        (0..6).map(|_| change("a wrong guess", "a brand new passphrase")),
    )
    .await;
    let statuses: Vec<StatusCode> = answers.iter().map(|p| p.status).collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (2, 4), "{statuses:?}");
}
