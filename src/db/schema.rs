// @generated automatically by Diesel CLI.

diesel::table! {
    access_grants (id) {
        id -> Int8,
        user_id -> Int8,
        channel_id -> Int8,
        stream_id -> Nullable<Int8>,
        pass_id -> Nullable<Int8>,
        source -> Text,
        includes_replays -> Bool,
        starts_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    access_passes (id) {
        id -> Int8,
        channel_id -> Int8,
        stream_id -> Nullable<Int8>,
        name -> Text,
        price_cents -> Int8,
        currency -> Text,
        scope -> Text,
        duration_seconds -> Nullable<Int4>,
        window_starts_at -> Nullable<Timestamptz>,
        window_ends_at -> Nullable<Timestamptz>,
        includes_replays -> Bool,
        archived_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        actor_id -> Nullable<Int8>,
        channel_id -> Nullable<Int8>,
        action -> Text,
        subject -> Nullable<Text>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    bans (id) {
        id -> Int8,
        channel_id -> Int8,
        user_id -> Int8,
        kind -> Text,
        until -> Nullable<Timestamptz>,
        reason -> Nullable<Text>,
        banned_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        lifted_at -> Nullable<Timestamptz>,
        lifted_by -> Nullable<Int8>,
    }
}

diesel::table! {
    channel_links (id) {
        id -> Int8,
        channel_id -> Int8,
        position -> Int4,
        label -> Text,
        url -> Text,
    }
}

diesel::table! {
    channel_members (channel_id, user_id) {
        channel_id -> Int8,
        user_id -> Int8,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    channels (id) {
        id -> Int8,
        handle -> Text,
        title -> Text,
        description -> Text,
        owner_id -> Int8,
        recording_retention_days -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        avatar_key -> Nullable<Text>,
        hidden_at -> Nullable<Timestamptz>,
        hidden_reason -> Nullable<Text>,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> Int8,
        stream_id -> Int8,
        author_id -> Int8,
        body -> Text,
        visible_at -> Timestamptz,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        deleted_by -> Nullable<Int8>,
        seq -> Nullable<Int8>,
        deleted_seq -> Nullable<Int8>,
    }
}

diesel::table! {
    creator_applications (id) {
        id -> Int8,
        user_id -> Int8,
        channel_name -> Text,
        about -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        decided_by -> Nullable<Int8>,
        decided_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    follows (user_id, channel_id) {
        user_id -> Int8,
        channel_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    funnel_events (id) {
        id -> Int8,
        channel_id -> Int8,
        stream_id -> Nullable<Int8>,
        step -> Text,
        visitor -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    known_devices (token_hash, user_id) {
        token_hash -> Text,
        user_id -> Int8,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
    }
}

diesel::table! {
    livekit_events (event_id) {
        event_id -> Text,
        event -> Text,
        payload -> Jsonb,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Int8,
        user_id -> Int8,
        kind -> Text,
        channel_id -> Nullable<Int8>,
        stream_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
        application_id -> Nullable<Int8>,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Int8,
        pass_id -> Int8,
        amount_cents -> Int8,
        currency -> Text,
        provider -> Text,
        provider_ref -> Nullable<Text>,
        provider_payment_ref -> Nullable<Text>,
        status -> Text,
        grant_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        stream_id -> Nullable<Int8>,
        paid_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    presence (id) {
        id -> Int8,
        stream_id -> Int8,
        room_name -> Text,
        user_id -> Nullable<Int8>,
        identity -> Text,
        participant_sid -> Text,
        joined_at -> Timestamptz,
        left_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    recordings (id) {
        id -> Int8,
        stream_id -> Int8,
        egress_id -> Text,
        status -> Text,
        object_key -> Nullable<Text>,
        duration_ms -> Nullable<Int8>,
        size_bytes -> Nullable<Int8>,
        error -> Nullable<Text>,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        backend -> Text,
        lease_owner -> Nullable<Uuid>,
        lease_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    previews (id) {
        id -> Int8,
        stream_id -> Int8,
        user_id -> Nullable<Int8>,
        identity -> Text,
        address -> Text,
        started_at -> Timestamptz,
        ends_at -> Timestamptz,
    }
}

diesel::table! {
    rate_limit_events (id) {
        id -> Int8,
        action -> Text,
        subject -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    recording_parts (id) {
        id -> Int8,
        recording_id -> Int8,
        part_no -> Int4,
        object_key -> Text,
        upload_id -> Nullable<Text>,
        status -> Text,
        duration_ms -> Nullable<Int8>,
        size_bytes -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    redeem_codes (id) {
        id -> Int8,
        pass_id -> Int8,
        code -> Text,
        max_uses -> Int4,
        uses -> Int4,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    redemptions (id) {
        id -> Int8,
        code_id -> Int8,
        user_id -> Int8,
        grant_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        data -> Jsonb,
        expires_at -> Timestamptz,
        user_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sign_in_attempts (id) {
        id -> Int8,
        email -> Text,
        ip -> Text,
        succeeded -> Bool,
        created_at -> Timestamptz,
        device_hash -> Nullable<Text>,
    }
}

diesel::table! {
    streams (id) {
        id -> Int8,
        channel_id -> Int8,
        title -> Text,
        description -> Text,
        access -> Text,
        status -> Text,
        scheduled_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        room_name -> Text,
        chat_enabled -> Bool,
        chat_slow_mode_seconds -> Int4,
        chat_delay_seconds -> Int4,
        chat_max_length -> Int4,
        ingress_id -> Nullable<Text>,
        ingress_kind -> Nullable<Text>,
        ingress_url -> Nullable<Text>,
        ingress_stream_key -> Nullable<Text>,
        record_on_live -> Bool,
        peak_viewers -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        chat_seq -> Int8,
        thumbnail_key -> Nullable<Text>,
        ingress_generation -> Int4,
        chat_followers_min_seconds -> Nullable<Int4>,
        preview_seconds -> Nullable<Int4>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        is_admin -> Bool,
        suspended_at -> Nullable<Timestamptz>,
        suspended_reason -> Nullable<Text>,
        creator_approved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Int8,
        attempt -> Int4,
        started_at -> Timestamptz,
        duration_ms -> Int4,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        endpoint_id -> Int8,
        event_id -> Text,
        event -> Text,
        subject -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        last_status -> Nullable<Int4>,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Int8,
        channel_id -> Int8,
        url -> Text,
        secret -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(access_grants -> access_passes (pass_id));
diesel::joinable!(access_grants -> channels (channel_id));
diesel::joinable!(access_grants -> streams (stream_id));
diesel::joinable!(access_grants -> users (user_id));
diesel::joinable!(access_passes -> channels (channel_id));
diesel::joinable!(access_passes -> streams (stream_id));
diesel::joinable!(audit_log -> channels (channel_id));
diesel::joinable!(audit_log -> users (actor_id));
diesel::joinable!(bans -> channels (channel_id));
diesel::joinable!(channel_links -> channels (channel_id));
diesel::joinable!(channel_members -> channels (channel_id));
diesel::joinable!(channel_members -> users (user_id));
diesel::joinable!(channels -> users (owner_id));
diesel::joinable!(chat_messages -> streams (stream_id));
diesel::joinable!(follows -> channels (channel_id));
diesel::joinable!(follows -> users (user_id));
diesel::joinable!(funnel_events -> channels (channel_id));
diesel::joinable!(funnel_events -> streams (stream_id));
diesel::joinable!(known_devices -> users (user_id));
diesel::joinable!(notifications -> channels (channel_id));
diesel::joinable!(notifications -> creator_applications (application_id));
diesel::joinable!(notifications -> streams (stream_id));
diesel::joinable!(notifications -> users (user_id));
diesel::joinable!(orders -> access_grants (grant_id));
diesel::joinable!(orders -> access_passes (pass_id));
diesel::joinable!(orders -> streams (stream_id));
diesel::joinable!(orders -> users (user_id));
diesel::joinable!(presence -> streams (stream_id));
diesel::joinable!(presence -> users (user_id));
diesel::joinable!(previews -> streams (stream_id));
diesel::joinable!(previews -> users (user_id));
diesel::joinable!(recording_parts -> recordings (recording_id));
diesel::joinable!(recordings -> streams (stream_id));
diesel::joinable!(redeem_codes -> access_passes (pass_id));
diesel::joinable!(redemptions -> access_grants (grant_id));
diesel::joinable!(redemptions -> redeem_codes (code_id));
diesel::joinable!(redemptions -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(streams -> channels (channel_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_endpoints -> channels (channel_id));

diesel::allow_tables_to_appear_in_same_query!(
    access_grants,
    access_passes,
    audit_log,
    bans,
    channel_links,
    channel_members,
    channels,
    chat_messages,
    creator_applications,
    follows,
    funnel_events,
    known_devices,
    livekit_events,
    notifications,
    orders,
    presence,
    previews,
    rate_limit_events,
    recording_parts,
    recordings,
    redeem_codes,
    redemptions,
    sessions,
    sign_in_attempts,
    streams,
    users,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
);
