//! Who may touch which resource, decided in one place. Each function loads a
//! resource by the ids in the URL and asks `access` what the signed-in user
//! is to it; handlers call one of these and never compare roles themselves.
//!
//! The answers are always in the same order: 404 when the resource does not
//! exist, or when the user may not know it does (an unannounced draft, a
//! grant of a channel they are not on the team of); then 403 with a reason
//! that says who may do this (`Area`). A malformed id in the URL is a 404
//! like an unknown one (`Ids`).
//!
//! This module must not decide anything `access.rs` decides (the access
//! rule, the draft rule, roles): it loads, asks and answers.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncPgConnection;
use serde::de::DeserializeOwned;

use crate::access::{self, Access};
use crate::auth::CurrentUser;
use crate::db::channels::{self, Channel, Role};
use crate::db::grants::{self, ChannelGrant};
use crate::db::passes::{self, Pass};
use crate::db::streams::Stream;
use crate::db::users::User;
use crate::db::webhooks::{self, Endpoint};
use crate::db::{GrantId, PassId, StreamId, UserId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The ids in the URL, typed: `Ids(id): Ids<StreamId>`, or a tuple for
/// several. Anything that does not parse is a 404, like an unknown id (a
/// raw `Path` would answer 400 with serde's message).
pub struct Ids<T>(pub T);

impl<S, T> FromRequestParts<S> for Ids<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Ids(ids)),
            Err(_) => Err(AppError::NotFound),
        }
    }
}

/// The stream of a `/studio/streams/{id}/…` route, for its owner: the
/// handler needs nothing else to know it may go on. Anonymous visitors are
/// sent to sign in; then 404, then 403 (`Area::Streams`, or the area `A`).
pub struct OwnedStream<A = area::Streams> {
    pub user: User,
    pub stream: Stream,
    pub channel: Channel,
    area: PhantomData<A>,
}

impl<A: InArea> FromRequestParts<AppState> for OwnedStream<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, id) = signed_in_with_id(parts, state).await?;
        let mut conn = connection(state).await?;
        let (stream, channel) = owned_stream(&mut conn, user.id, id, A::AREA)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(OwnedStream {
            user,
            stream,
            channel,
            area: PhantomData,
        })
    }
}

/// The stream of a `/studio/streams/{id}/…` route, for its team (the owner
/// and the moderators), with what the rule says of the user (`may_publish`:
/// the owner). Sign in, then 404, then 403 (`Area::ModerateStream`, or the
/// area `A`).
pub struct TeamStream<A = area::ModerateStream> {
    pub user: User,
    pub stream: Stream,
    pub channel: Channel,
    pub access: Access,
    area: PhantomData<A>,
}

impl<A: InArea> FromRequestParts<AppState> for TeamStream<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, id) = signed_in_with_id(parts, state).await?;
        let mut conn = connection(state).await?;
        let (stream, channel, access) = team_stream(&mut conn, user.id, id, A::AREA)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(TeamStream {
            user,
            stream,
            channel,
            access,
            area: PhantomData,
        })
    }
}

/// The pass of a `/studio/passes/{id}/…` route, with its channel, for the
/// channel's owner. Sign in, then 404, then 403 (the area `A`).
pub struct OwnedPass<A> {
    pub user: User,
    pub pass: Pass,
    pub channel: Channel,
    area: PhantomData<A>,
}

impl<A: InArea> FromRequestParts<AppState> for OwnedPass<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, id) = signed_in_with_id(parts, state).await?;
        let mut conn = connection(state).await?;
        let (pass, channel) = owned_pass(&mut conn, user.id, id, A::AREA)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(OwnedPass {
            user,
            pass,
            channel,
            area: PhantomData,
        })
    }
}

/// The channel of a `/studio/channels/{handle}/…` route, for its owner:
/// `OwnedChannel<area::Webhooks>` names, in the handler's signature, what a
/// moderator is refused (the 403's sentence). Sign in, then 404, then 403.
pub struct OwnedChannel<A> {
    pub user: User,
    pub channel: Channel,
    area: PhantomData<A>,
}

impl<A: InArea> FromRequestParts<AppState> for OwnedChannel<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, handle) = signed_in_with_param(parts, state, "handle").await?;
        let mut conn = connection(state).await?;
        let channel = owned_channel(&mut conn, user.id, &handle, A::AREA)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(OwnedChannel {
            user,
            channel,
            area: PhantomData,
        })
    }
}

/// The channel of a `/…/channels/{handle}/…` route, for its team (the owner
/// and the moderators), with the user's role. Sign in, then 404, then 403.
pub struct TeamChannel<A> {
    pub user: User,
    pub channel: Channel,
    pub role: Role,
    area: PhantomData<A>,
}

impl<A: InArea> FromRequestParts<AppState> for TeamChannel<A> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, handle) = signed_in_with_param(parts, state, "handle").await?;
        let mut conn = connection(state).await?;
        let (channel, role) = team_channel(&mut conn, user.id, &handle, A::AREA)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(TeamChannel {
            user,
            channel,
            role,
            area: PhantomData,
        })
    }
}

/// Outgoing webhook endpoint `{id}` of the channel `{handle}`, for the
/// channel's owner: 404 for an endpoint of another channel (`owned_endpoint`).
pub struct OwnedEndpoint {
    pub user: User,
    pub channel: Channel,
    pub endpoint: Endpoint,
}

impl FromRequestParts<AppState> for OwnedEndpoint {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, handle) = signed_in_with_param(parts, state, "handle").await?;
        let id = path_param(parts, state, "id")
            .await?
            .parse()
            .map_err(|_| AppError::NotFound.into_response())?;
        let mut conn = connection(state).await?;
        let (channel, endpoint) = owned_endpoint(&mut conn, user.id, &handle, id)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(OwnedEndpoint {
            user,
            channel,
            endpoint,
        })
    }
}

/// Grant `{id}` as its channel's grant list shows it, with the channel, for
/// the channel's owner (`owned_grant`: 404 outside the team, 403 for its
/// moderators).
pub struct OwnedGrant {
    pub user: User,
    pub grant: ChannelGrant,
    pub channel: Channel,
}

impl FromRequestParts<AppState> for OwnedGrant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let (user, id) = signed_in_with_id(parts, state).await?;
        let mut conn = connection(state).await?;
        let (grant, channel) = owned_grant(&mut conn, user.id, id)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(OwnedGrant {
            user,
            grant,
            channel,
        })
    }
}

/// The `Area` of an extractor, as a type: `area::Settings` and so on.
pub trait InArea: Send + Sync {
    const AREA: Area;
}

/// One marker type per `Area` the extractors refuse in.
pub mod area {
    use super::{Area, InArea};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            pub struct $name;
            impl InArea for $name {
                const AREA: Area = Area::$name;
            }
        )*};
    }

    markers!(
        Streams,
        NewStreams,
        Ingress,
        Passes,
        Codes,
        Grants,
        Team,
        Settings,
        Webhooks,
        AuditLog,
        ModerateStream,
        ModerateChannel,
        Analytics,
    );
}

/// A pooled connection for an extractor; its failure is the error page.
async fn connection(state: &AppState) -> Result<crate::db::DbConn, Response> {
    state
        .db
        .get()
        .await
        .map_err(|e| AppError::from(e).into_response())
}

/// The signed-in user and the route's `{id}`, typed (404 if it is none).
async fn signed_in_with_id<T: std::str::FromStr>(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(User, T), Response> {
    let (user, id) = signed_in_with_param(parts, state, "id").await?;
    let id = id.parse().map_err(|_| AppError::NotFound.into_response())?;
    Ok((user, id))
}

/// The signed-in user (or the way to sign in) and the route's parameter
/// `name` (404 if the route has none).
async fn signed_in_with_param(
    parts: &mut Parts,
    state: &AppState,
    name: &str,
) -> Result<(User, String), Response> {
    let CurrentUser(user) = CurrentUser::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((user, path_param(parts, state, name).await?))
}

/// The route's parameter `name` (404 if the route has none).
async fn path_param(parts: &mut Parts, state: &AppState, name: &str) -> Result<String, Response> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| AppError::NotFound.into_response())?;
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| AppError::NotFound.into_response())
}

/// A signed-in instance admin, for the `/admin` console. Anonymous visitors
/// are sent to sign in; everyone else gets 403, on every route of it. Admin
/// is an instance role (`users.is_admin`), not a channel's: the access rule
/// has nothing to say about it.
pub struct InstanceAdmin(pub User);

impl FromRequestParts<AppState> for InstanceAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !user.is_admin {
            return Err(
                AppError::forbidden("This console is for the instance's admins only.")
                    .into_response(),
            );
        }
        Ok(InstanceAdmin(user))
    }
}

/// The channel of a `/c/{handle}/…` route as anyone may see it: 404 when
/// there is none, or when it is hidden and they are not on its team. What the visitor may do there is the handler's to ask.
pub struct PublicChannel(pub Channel);

impl FromRequestParts<AppState> for PublicChannel {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let handle = path_param(parts, state, "handle").await?;
        let mut conn = connection(state).await?;
        let channel = match channels::find_by_handle(&mut conn, &handle).await {
            Ok(Some(channel)) => channel,
            Ok(None) => return Err(AppError::NotFound.into_response()),
            Err(e) => return Err(AppError::from(e).into_response()),
        };
        // A hidden channel exists for its team only.
        let hidden = channels::is_hidden(&mut conn, channel.id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        if hidden {
            drop(conn);
            let crate::auth::MaybeUser(user) =
                crate::auth::MaybeUser::from_request_parts(parts, state)
                    .await
                    .map_err(IntoResponse::into_response)?;
            let role = match user {
                Some(user) => {
                    let mut conn = connection(state).await?;
                    access::channel_role(&mut conn, user.id, channel.id)
                        .await
                        .map_err(|e| AppError::from(e).into_response())?
                }
                None => None,
            };
            if role.is_none() {
                return Err(AppError::NotFound.into_response());
            }
        }
        Ok(PublicChannel(channel))
    }
}

/// What the refused user tried to manage: the 403 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Streams,
    NewStreams,
    Ingress,
    Passes,
    Grants,
    Codes,
    Team,
    Settings,
    Webhooks,
    AuditLog,
    ChatSettings,
    /// The team's: moderating a stream, or its channel (bans, timeouts).
    ModerateStream,
    ModerateChannel,
    /// The team's: deleting chat messages.
    ChatMessages,
    /// The team's: a stream's or a channel's analytics.
    Analytics,
}

impl Area {
    /// The 403's sentence.
    pub fn refusal(self) -> &'static str {
        match self {
            Area::Streams => "Only the owner of this channel can manage its streams.",
            Area::NewStreams => "Only the owner of this channel can create its streams.",
            Area::Ingress => "Only the owner of this channel can manage its OBS ingress.",
            Area::Passes => "Only the owner of this channel can manage its passes.",
            Area::Grants => "Only the owner of this channel can manage its grants.",
            Area::Codes => "Only the owner of this channel can manage its redeem codes.",
            Area::Team => "Only the owner of this channel can manage its team.",
            Area::Settings => {
                "Only the owner of this channel can change its settings. \
                 Moderators can moderate streams and chat."
            }
            Area::Webhooks => {
                "Only the owner of this channel can see and change its webhooks: \
                 they carry signing secrets."
            }
            Area::AuditLog => "Only the owner of this channel can read its audit log.",
            Area::ChatSettings => "Only the channel's owner can change the chat settings.",
            Area::ModerateStream => {
                "Only the channel's owner and moderators can moderate this stream."
            }
            Area::ModerateChannel => {
                "Only the channel's owner and moderators can moderate this channel."
            }
            Area::ChatMessages => {
                "Only the channel's moderators and owner can delete chat messages."
            }
            Area::Analytics => "Only the channel's owner and moderators can see its analytics.",
        }
    }
}

/// The channel `handle`, if `user` owns it: 404, then 403.
pub async fn owned_channel(
    conn: &mut AsyncPgConnection,
    user: UserId,
    handle: &str,
    area: Area,
) -> AppResult<Channel> {
    match team_channel(conn, user, handle, area).await? {
        (channel, Role::Owner) => Ok(channel),
        (_, Role::Moderator) => Err(AppError::forbidden(area.refusal())),
    }
}

/// The channel `handle` and `user`'s role on its team: 404, then 403 for
/// anyone not on the team.
pub async fn team_channel(
    conn: &mut AsyncPgConnection,
    user: UserId,
    handle: &str,
    area: Area,
) -> AppResult<(Channel, Role)> {
    let channel = channels::find_by_handle(conn, handle)
        .await?
        .ok_or(AppError::NotFound)?;
    match access::channel_role(conn, user, channel.id).await? {
        Some(role) => Ok((channel, role)),
        None => Err(AppError::forbidden(area.refusal())),
    }
}

/// Stream `id` and its channel, if `user` may publish it (the owner): 404
/// (an unannounced draft outside its team too), then 403.
pub async fn owned_stream(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: StreamId,
    area: Area,
) -> AppResult<(Stream, Channel)> {
    let (stream, channel, access) = team_stream(conn, user, id, area).await?;
    if !access.may_publish() {
        return Err(AppError::forbidden(area.refusal()));
    }
    Ok((stream, channel))
}

/// Stream `id` and its channel, if `user` may moderate it (the owner or a
/// moderator), with what the rule says of them (`may_publish`: the owner).
pub async fn team_stream(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: StreamId,
    area: Area,
) -> AppResult<(Stream, Channel, Access)> {
    let (stream, channel, access) = access::find_stream_with_channel(conn, Some(user), id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !access.may_moderate() {
        return Err(AppError::forbidden(area.refusal()));
    }
    Ok((stream, channel, access))
}

/// Pass `id` and its channel, if `user` owns the channel: 404, then 403
/// (pass pages are public, so a pass's existence is no secret).
pub async fn owned_pass(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: PassId,
    area: Area,
) -> AppResult<(Pass, Channel)> {
    let pass = passes::find(conn, id).await?.ok_or(AppError::NotFound)?;
    if access::channel_role(conn, user, pass.channel_id).await? != Some(Role::Owner) {
        return Err(AppError::forbidden(area.refusal()));
    }
    let channel = channels::find(conn, pass.channel_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((pass, channel))
}

/// Grant `id` as its channel's grant list shows it, if `user` owns the
/// channel. Outside the team a grant is a 404 (nobody else has any business
/// knowing it exists); the channel's moderators know grants exist, and get 403.
pub async fn owned_grant(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: GrantId,
) -> AppResult<(ChannelGrant, Channel)> {
    let grant = grants::find_in_list(conn, id)
        .await?
        .ok_or(AppError::NotFound)?;
    match access::channel_role(conn, user, grant.grant.channel_id).await? {
        Some(Role::Owner) => {}
        Some(Role::Moderator) => return Err(AppError::forbidden(Area::Grants.refusal())),
        None => return Err(AppError::NotFound),
    }
    let channel = channels::find(conn, grant.grant.channel_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((grant, channel))
}

/// Outgoing webhook endpoint `id` of the channel `handle`, if `user` owns
/// it: 404 for an endpoint of another channel.
pub async fn owned_endpoint(
    conn: &mut AsyncPgConnection,
    user: UserId,
    handle: &str,
    id: i64,
) -> AppResult<(Channel, Endpoint)> {
    let channel = owned_channel(conn, user, handle, Area::Webhooks).await?;
    let endpoint = webhooks::find(conn, channel.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((channel, endpoint))
}
