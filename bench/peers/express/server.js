// The Express peer of stagepass's benchmark: `POST /s/:id/token` written the
// way a typical Node.js team would, against the same database and with the
// same rule, so that `make bench` can put the two side by side. What it must
// match is stagepass's behaviour for this one route (src/web/watch.rs `token`,
// src/auth/csrf.rs, src/auth/mod.rs, src/access.rs); see README.md for what it
// deliberately leaves out.
//
// One process, no cluster: stagepass is one process too, and the bench
// compares what each does with the machine from a single server.
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const { Pool } = require('pg');
const { AccessToken } = require('livekit-server-sdk');

// ---- settings: the same variables and defaults as stagepass (src/config.rs) ----

const env = process.env;
const PORT = Number(env.PORT || 8081);
const HOST = '127.0.0.1';
const DATABASE_URL = env.DATABASE_URL || 'postgres://stagepass:stagepass@localhost:5432/stagepass';
const POOL_SIZE = Number(env.DATABASE_POOL_SIZE || 16);
const LIVEKIT_API_KEY = env.LIVEKIT_API_KEY || 'devkey';
const LIVEKIT_API_SECRET = env.LIVEKIT_API_SECRET || 'secret';
// CSRF compares the Origin header with the origin (scheme, host, port) only.
const PUBLIC_ORIGIN = new URL(env.PUBLIC_URL || 'http://localhost:8080').origin;
// stagepass hands clients a ws(s) URL, defaulting to LIVEKIT_URL, and writes
// it the way Rust's `Url` does (with the trailing slash): `href` does the same.
const LIVEKIT_PUBLIC_URL = wsUrl(env.LIVEKIT_PUBLIC_URL || env.LIVEKIT_URL || 'http://localhost:7880');
const SESSION_ABSOLUTE_TIMEOUT_SECONDS =
  Number(env.SESSION_ABSOLUTE_TIMEOUT_MINUTES || 43200) * 60; // 30 days, as stagepass

const SESSION_COOKIE = 'stagepass_session';
const VIEWER_TTL_SECONDS = 10 * 60;
const MAX_INT8 = 9223372036854775807n;

function wsUrl(v) {
  const u = new URL(v);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

// ---- queries ---------------------------------------------------------------------
//
// Named statements: pg prepares each once per connection and then only binds,
// as stagepass does with its facts query (planning it costs more than running it).

// The session with its signed-in user in one round trip, as stagepass's
// session store loads them (the user's columns are NULL when there is none).
const SESSION_Q = {
  name: 'session',
  text: 'SELECT s.data, u.id AS user_id, u.display_name FROM sessions s ' +
        'LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.expires_at > now()',
};

// The stream and every fact the rule needs about (user, its channel, it), in one
// round trip: the conditions are src/access.rs's `sql` fragments verbatim, with
// $1 the stream and $2 the user (NULL when signed out: then every fact is
// false or NULL and the rule says "sign in"). The grant's end follows
// back-to-back grants like stagepass's (a pass bought again extends). Time
// bounds are compared with the database's now(), never in JS.
const STREAM_FACTS_Q = {
  name: 'stream_facts',
  text: `
    SELECT s.status, s.access, s.room_name,
           (s.status = 'draft' AND s.scheduled_at IS NULL) AS unannounced,
           (SELECT m.role FROM channel_members m
              WHERE m.channel_id = s.channel_id AND m.user_id = $2::int8) AS role,
           EXISTS (SELECT 1 FROM channels o
                     WHERE o.id = s.channel_id AND o.owner_id = $2::int8) AS owner,
           EXISTS (SELECT 1 FROM bans b
                     WHERE b.channel_id = s.channel_id AND b.user_id = $2::int8 AND b.kind = 'ban'
                       AND b.lifted_at IS NULL AND (b.until IS NULL OR now() < b.until)) AS banned,
           chain.until AS grant_until,
           -- Only matters without an active grant ("pass ended" vs "get a pass").
           CASE WHEN chain.until IS NULL THEN EXISTS (
             SELECT 1 FROM access_grants g
               WHERE g.user_id = $2::int8 AND g.channel_id = s.channel_id
                 AND (g.stream_id IS NULL OR g.stream_id = s.id)
                 AND (g.revoked_at IS NOT NULL OR g.expires_at <= now()))
           ELSE false END AS had_grant
      FROM streams s
      CROSS JOIN LATERAL (
        WITH RECURSIVE chain(until) AS (
          SELECT max(g.expires_at) FROM access_grants g
            WHERE g.user_id = $2::int8 AND g.channel_id = s.channel_id
              AND (g.stream_id IS NULL OR g.stream_id = s.id)
              AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at
          UNION
          SELECT g.expires_at FROM access_grants g JOIN chain
            ON g.user_id = $2::int8 AND g.channel_id = s.channel_id
              AND (g.stream_id IS NULL OR g.stream_id = s.id) AND g.revoked_at IS NULL
              AND g.starts_at <= chain.until AND g.expires_at > chain.until)
        SELECT max(until) AS until FROM chain OFFSET 0) chain
     WHERE s.id = $1::int8`,
};

const pool = new Pool({ connectionString: DATABASE_URL, max: POOL_SIZE });
// An idle client losing its connection must not take the process down.
pool.on('error', (err) => console.error('pg pool:', err.message));

// ---- the rule (src/access.rs `decide`), on the facts above --------------------------

const REASONS = {
  signIn: 'Sign in to watch this stream.',
  passRequired: 'This stream is for access pass holders. Get a pass to watch.',
  passEnded: 'Your pass has ended. Renew it to keep watching.',
  banned: 'You have been banned from this channel.',
};

// -> { kind: 'publish' | 'moderate' | 'watch' | 'denied', until?: Date, reason?: string }
function decide(user, f) {
  if (!user) return { kind: 'denied', reason: REASONS.signIn };
  if (f.owner || f.role === 'owner') return { kind: 'publish' };
  if (f.role === 'moderator') return { kind: 'moderate' };
  if (f.banned) return { kind: 'denied', reason: REASONS.banned };
  if (f.grant_until) return { kind: 'watch', until: f.grant_until };
  if (f.access === 'public') return { kind: 'watch', until: null };
  return { kind: 'denied', reason: f.had_grant ? REASONS.passEnded : REASONS.passRequired };
}

// ---- request helpers ------------------------------------------------------------------

// No cookie-parser: one cookie is all this route reads.
function sessionId(req) {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return null;
}

function sameToken(given, expected) {
  if (typeof given !== 'string' || typeof expected !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  // timingSafeEqual throws on different lengths; only the length leaks, as with
  // stagepass's `ct_eq`.
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function refuse(res, status, error) {
  return res.status(status).json({ error });
}

const CSRF_REFUSED =
  'This form has expired or was sent from another site. Reload the page and try again.';

// ---- the app -----------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');

app.get('/healthz', (req, res) => res.type('text/plain').send('ok'));

app.post('/s/:id/token', async (req, res, next) => {
  try {
    // CSRF, in stagepass's order: the browser's own headers first (no database),
    // then the session's token.
    const site = req.get('sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      return refuse(res, 403, CSRF_REFUSED);
    }
    const origin = req.get('origin');
    if (origin !== undefined && origin !== PUBLIC_ORIGIN) return refuse(res, 403, CSRF_REFUSED);

    const sid = sessionId(req);
    const session = sid ? (await pool.query({ ...SESSION_Q, values: [sid] })).rows[0] : undefined;
    const data = session ? session.data : {};
    if (!sameToken(req.get('x-csrf-token'), data.csrf_token)) return refuse(res, 403, CSRF_REFUSED);

    // Signed in: a user id in the session, signed in less than the absolute
    // timeout ago (a missing signed_in_at counts as long ago), account present.
    let user = null;
    if (Number.isSafeInteger(data.user_id) && session.user_id !== null && String(data.user_id) === session.user_id) {
      const age = Math.floor(Date.now() / 1000) - (Number.isSafeInteger(data.signed_in_at) ? data.signed_in_at : 0);
      if (age <= SESSION_ABSOLUTE_TIMEOUT_SECONDS) {
        user = { id: session.user_id, display_name: session.display_name };
      }
    }

    // A stream id is a positive int8; anything else names no stream.
    const id = req.params.id;
    if (!/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > MAX_INT8) return refuse(res, 404, 'Not found.');
    const facts = (await pool.query({ ...STREAM_FACTS_Q, values: [id, user ? user.id : null] })).rows[0];
    if (!facts) return refuse(res, 404, 'Not found.');
    const access = decide(user, facts);
    // An unannounced draft exists for its team only: to anyone else it is a
    // missing stream (404, not a 403 that tells it exists).
    if (facts.unannounced && access.kind !== 'publish' && access.kind !== 'moderate') {
      return refuse(res, 404, 'Not found.');
    }
    if (access.kind === 'denied') return refuse(res, 403, access.reason);

    let ttl = VIEWER_TTL_SECONDS;
    if (access.until) {
      // Whole seconds, like stagepass's token TTL. Less than one left counts as
      // ended: the SDK reads a TTL of 0 as "none given" and would mint 6 hours.
      const left = Math.floor((access.until.getTime() - Date.now()) / 1000);
      if (left < 1) return refuse(res, 403, 'Your pass has ended.');
      ttl = Math.min(ttl, left);
    }
    if (facts.status !== 'live') return refuse(res, 409, 'This stream is not live.');

    const identity = String(user.id);
    const at = new AccessToken(LIVEKIT_API_KEY, LIVEKIT_API_SECRET, {
      identity,
      name: user.display_name,
      ttl,
    });
    // Watch only: every permission explicit, as stagepass's `subscribe_only`.
    at.addGrant({
      room: facts.room_name,
      roomJoin: true,
      canSubscribe: true,
      canPublish: false,
      canPublishData: false,
      canUpdateOwnMetadata: false,
    });
    res.json({ token: await at.toJwt(), url: LIVEKIT_PUBLIC_URL, identity });
  } catch (err) {
    next(err);
  }
});

// Errors: logged, and a JSON 500 (never Express's HTML page with the stack).
app.use((err, req, res, next) => {
  console.error(err);
  if (res.headersSent) return next(err);
  res.status(500).json({ error: 'Something went wrong.' });
});

const server = app.listen(PORT, HOST, () => {
  console.log(`express peer listening on http://${HOST}:${PORT} (pool ${POOL_SIZE})`);
});

// The bench stops its servers with SIGTERM: close cleanly.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => pool.end().then(() => process.exit(0)));
    // Keep-alive connections from the load generator would hold close() open.
    server.closeAllConnections();
  });
}
