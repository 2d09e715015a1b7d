//! Redeeming a code (POST /redeem), within the flood limits; a refused htmx
//! redemption answers with the redeem form (`view::redeem_form`).

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_htmx::{HxReswap, HxRetarget, SwapOption};
use serde::Deserialize;

use crate::auth::{self, MaybeUser};
use crate::db;
use crate::db::codes;
use crate::db::passes;
use crate::db::users::User;
use crate::error::AppResult;
use crate::limits::Action;
use crate::state::AppState;
use crate::web::Reply;
use crate::web::client::client_ip;
use crate::web::view::redeem_form::RedeemForm;
use crate::web::view::utc;
use crate::web::{FlashKind, render_with};

// ---------------------------------------------------------------------------
// Redeeming a code.

#[derive(Deserialize, Default)]
pub struct RedeemInput {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub return_to: String,
    /// The page with the form: a refused code is explained there.
    #[serde(default)]
    pub back_to: String,
}

/// Where to go after redeeming: a local path of ours, else "My passes".
fn return_path(raw: &str) -> String {
    let raw = raw.trim();
    let local = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.starts_with("/\\")
        && raw.chars().all(|c| c.is_ascii_graphic());
    if local {
        raw.to_owned()
    } else {
        "/passes".to_owned()
    }
}

/// A refused redemption: for htmx, the form again with the error next to the
/// code field, swapped in place of the page's `#redeem-form` whatever its own
/// hx-target says; for a plain form, a flash on the page it came from.
async fn refuse_redemption(
    reply: &Reply,
    status: StatusCode,
    (return_to, back_to): (&str, &str),
    code: &str,
    message: &str,
) -> AppResult<Response> {
    if reply.htmx.fragment {
        let form = RedeemForm {
            csrf_token: auth::csrf::token(&reply.session).await?,
            return_to: return_to.to_owned(),
            back_to: back_to.to_owned(),
            code: code.chars().take(64).collect(),
            error: Some(message.to_owned()),
        };
        let page = render_with(status, &form)?;
        return Ok((
            HxRetarget("#redeem-form".to_owned()),
            HxReswap(SwapOption::OuterHtml),
            page,
        )
            .into_response());
    }
    reply.flash(FlashKind::Error, message).await?;
    Ok(reply.redirect(back_to))
}

pub async fn redeem(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    MaybeUser(user): MaybeUser,
    reply: Reply,
    Form(input): Form<RedeemInput>,
) -> AppResult<Response> {
    let return_to = return_path(&input.return_to);
    // Forms from before `back_to` existed come back to where they go on.
    let back_to = if input.back_to.trim().is_empty() {
        return_to.clone()
    } else {
        return_path(&input.back_to)
    };
    let Some(user) = user else {
        // Back to the page with the form after signing in, not to this POST-only URL.
        reply
            .flash(FlashKind::Info, "Sign in to redeem your code.")
            .await?;
        let next: String = url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect();
        return Ok(reply.redirect(&format!("/signin?next={next}")));
    };
    let ip = client_ip(&state, &headers, peer);
    match try_redeem(&state, &user, &ip, &input.code).await? {
        Ok(done) => {
            reply
                .redirect_with(
                    FlashKind::Success,
                    format!(
                        "Code redeemed: {} until {}.",
                        done.pass.name,
                        utc(&done.grant.expires_at)
                    ),
                    &return_to,
                )
                .await
        }
        Err((status, message)) => {
            refuse_redemption(
                &reply,
                status,
                (&return_to, &back_to),
                input.code.trim(),
                &message,
            )
            .await
        }
    }
}

/// Redeems what `user` typed at `ip`, within the rate limits (failures per
/// account, in the audit log, and per address over all accounts, in
/// `crate::limits`); a refusal comes with its status and its words.
async fn try_redeem(
    state: &AppState,
    user: &User,
    ip: &str,
    typed: &str,
) -> AppResult<Result<codes::Redeemed, (StatusCode, Cow<'static, str>)>> {
    let code = codes::normalize(typed);
    if code.is_empty() {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter the code you were given.".into(),
        )));
    }
    let cfg = &state.config.limits;
    let mut conn = state.db.get().await?;
    let per_account = cfg.redeem_failures_per_account;
    if codes::recent_failures(&mut conn, user.id, per_account.window).await?
        >= i64::from(per_account.max)
    {
        let wait =
            codes::failures_retry_after(&mut conn, user.id, per_account.max, per_account.window)
                .await?;
        return Ok(Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many attempts with codes that didn't work. Wait {}, then try again.",
                crate::limits::wait_in_words(wait)
            )
            .into(),
        )));
    }
    let per_address = cfg.redeem_failures_per_address;
    // Counted as a guess before the code is tried (and forgiven when it was
    // none): guesses sent at once count against each other.
    let counted = match crate::limits::take(&mut conn, Action::RedeemFailed, ip, per_address)
        .await?
    {
        Ok(counted) => counted,
        Err(refused) => {
            return Ok(Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many attempts from your network with codes that didn't work. Wait {}, then try again.",
                        refused.wait()
                    )
                    .into(),
                )));
        }
    };
    let refused = match codes::redeem(&mut conn, user.id, &code).await? {
        Ok(done) => {
            crate::limits::forgive(&mut conn, counted).await?;
            return Ok(Ok(done));
        }
        Err(refused) => refused,
    };
    let channel = match refused.pass {
        Some(p) => passes::find(&mut conn, p).await?.map(|p| p.channel_id),
        None => None,
    };
    db::audit::record(
        &mut conn,
        Some(user.id),
        channel,
        codes::FAILED_ACTION,
        None,
        serde_json::json!({
            "reason": refused.reason.as_str(),
            "pass_id": refused.pass,
        }),
    )
    .await?;
    // Per address, only guesses count: a used-up or expired code is no
    // attack, and a crowd behind one address may race for the same code.
    if refused.reason != codes::Refusal::Unknown {
        crate::limits::forgive(&mut conn, counted).await?;
    }
    let status = match refused.reason {
        codes::Refusal::Banned => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(Err((status, refused.reason.message().into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_a_local_path_only() {
        assert_eq!(return_path("/s/4/pass"), "/s/4/pass");
        assert_eq!(return_path("/c/ann/passes?x=1"), "/c/ann/passes?x=1");
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "s/4",
            "/a b",
            "/a\r\nb",
        ] {
            assert_eq!(return_path(bad), "/passes", "{bad:?}");
        }
    }
}
