"""The Markdown of make bench's report, from the JSON one (bench/bench.py writes both).

Every figure of a phase that is repeated is the median over its runs; the range
over the runs follows in brackets, so a reader sees how much the runs agree.
"""

from __future__ import annotations

import statistics


ONLY_NOTE_KEY = "only_phases"


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _f(x, digits=2, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{unit}"


def _signed(x, digits=2):
    return "n/a" if x is None else f"{x:+,.{digits}f}"


def _spread(xs, digits=2):
    """`median [min–max]` of the runs' values (just the value for one run)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return _f(xs[0], digits)
    return f"{_f(_median(xs), digits)} [{_f(min(xs), digits)}–{_f(max(xs), digits)}]"


def _probe(pr, fps, duration_ms) -> str:
    """ffprobe's summary of a recording's object, with the frames fps × duration expects."""
    if not pr:
        return "not probed (no ffprobe, or no object)"
    v, a = pr.get("video") or {}, pr.get("audio") or {}
    expected = f" (≈ {fps * duration_ms / 1000:,.0f} expected)" if duration_ms else ""
    s = (f"{pr.get('format')}, {_f(pr.get('duration_s'), 1)} s; {v.get('codec_name', 'no video')} "
         f"{v.get('width')}x{v.get('height')}, {_f(v.get('frames'), 0)} frames{expected}; "
         f"{a.get('codec_name', 'no audio')} {a.get('sample_rate', '')} Hz")
    if pr.get("errors"):
        s += f"; ffprobe reported {len(pr['errors'])} error line(s), e.g. `{pr['errors'][0][:120]}`"
    return s


def _verdict(value, goal, lower_is_better=True):
    if value is None:
        return "not measured"
    ok = value < goal if lower_is_better else value > goal
    return "met" if ok else "**missed**"


def _at_most(value, goal):
    if value is None:
        return "not measured"
    return "met" if value <= goal else "**missed**"


def _times(goal) -> str:
    """4 -> `4×`, 1/3 -> `1/3`."""
    if abs(goal - round(goal)) < 1e-9:
        return f"{goal:.0f}×"
    return f"1/{round(1 / goal)}"


def _ratio_verdict(num, den, goal) -> str:
    """Is `num` at least `goal` × `den` (both req/s)? If not, by how many req/s."""
    if num is None or not den:
        return "not measured"
    if num >= goal * den:
        return "met"
    return f"**missed** by {_f(goal * den - num, 0)} req/s ({_times(goal)} is {_f(goal * den, 0)} req/s)"


def _token_figures(tok: dict | None) -> dict:
    """The token phase's medians: each side's most requests a second, the
    database's, and their ratios (of the medians, with each run's own ratio)."""
    runs = (tok or {}).get("runs") or []
    sp = [x["max"]["stagepass"]["ok_per_second"] for x in runs]
    peer = [x["max"]["peer"]["ok_per_second"] for x in runs]
    db = [x["pgbench"]["tps"] for x in runs if x.get("pgbench")]
    f = {"sp": _median(sp), "peer": _median(peer), "db": _median(db)}
    f["over_peer"] = f["sp"] / f["peer"] if f["sp"] is not None and f["peer"] else None
    f["over_db"] = f["sp"] / f["db"] if f["sp"] is not None and f["db"] else None
    f["over_peer_runs"] = [a / b for a, b in zip(sp, peer) if b]
    f["over_db_runs"] = [x["max"]["stagepass"]["ok_per_second"] / x["pgbench"]["tps"]
                         for x in runs if x.get("pgbench") and x["pgbench"]["tps"]]
    at = [x["rates"].get("2000", {}).get("stagepass") for x in runs]
    f["p99_at_2000"] = _median([x["p99_ms"] for x in at if x])
    return f


def _delivered(runs: list) -> str:
    """A fan-out table's "delivered" cell: deliveries of all its runs."""
    return f"{sum(x['delivered'] for x in runs):,} of {sum(x['expected_deliveries'] for x in runs):,}"


def _latency(runs: list, *quantiles: str) -> str:
    """A fan-out table's latency cells (`p50`, `max`, …), each median [range]."""
    return " | ".join(_spread([x["latency"][f"{q}_ms"] for x in runs], 1 if q == "max" else 2)
                      for q in quantiles)


def _watch_figures(wat: dict | None, goals: dict) -> dict:
    wat = wat or {}
    at = (wat.get("runs") or {}).get(str(goals["watch_rps"]), [])
    return {"max": _median([x["ok_per_second"] for x in wat.get("max") or []]),
            "p99": _median([x["p99_ms"] for x in at]),
            "ok": _median([x["ok_per_second"] for x in at])}


def markdown(r: dict, goals: dict) -> str:
    m = r["machine"]
    plan = r["plan"]
    reps = plan["reps"]
    ph = r["phases"]
    out = []
    w = out.append

    w("# stagepass benchmark report")
    w("")
    w(f"Run {r['started_at']}, {r['duration_s'] // 60} min {r['duration_s'] % 60} s"
      + (" — **quick mode (BENCH_QUICK=1): fewer, shorter runs; not for publishing**" if plan["quick"] else "")
      + f". Every phase ran **{reps} time{'s' if reps != 1 else ''}**; a figure is the median over the runs"
      + (", with [min–max] over the runs after it." if reps > 1 else "."))
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("| --- | --- |")
    w(f"| CPU | {m['cpu']} |")
    w(f"| cores | {m['cores']} |")
    w(f"| memory | {m['memory_gib']} GiB |")
    w(f"| OS, kernel | {m['os']}, Linux {m['kernel']} |")
    la = r["load_average"]
    w(f"| load average (1/5/15 min) before | {' / '.join(map(str, la['before']))} |")
    w(f"| load average after | {' / '.join(map(str, la['after']))} |")
    if ONLY_NOTE_KEY in r:
        w(f"| phases run | {r[ONLY_NOTE_KEY]} (BENCH_ONLY) |")
    w(f"| load average (1 min) at each phase's start | "
      + ", ".join(f"{k} {v[0]}" for k, v in la.get("phases", {}).items()) + " |")
    w(f"| stagepass commit | {m['app_commit']} (release build) |")
    w(f"| livekit-server | {m['livekit_server']} |")
    w(f"| PostgreSQL | {m['postgres']} |")
    w(f"| load generators | oha {m['oha']}; stagepass-bench (bench/, Rust); LiveKit Python SDK {m['livekit_python_sdk']}"
      + (f"; {m['pgbench']}" if m.get("pgbench") and "token" in ph else "") + " |")
    peer = r.get("express_peer")
    if peer:
        v = peer["versions"]
        w(f"| Express peer (token endpoint) | Node.js {v['node']}; express {v['express']}, "
          f"livekit-server-sdk {v['livekit-server-sdk']}, pg {v['pg']} (bench/peers/express) |")
    w(f"| rustc | {m['rustc']} |")
    w(f"| open files limit | {m['open_files_limit']} |")
    w("")
    w("Everything — the app, Postgres, livekit-server and the load generators — shares these "
      "cores, so every figure includes the load generator's own cost.")
    w("")

    # ---- goals
    tf = _token_figures(ph.get("token"))
    tok_p99 = tf["p99_at_2000"]
    fan = ph.get("fanout", {}).get("runs", {})
    top_n = str(max(int(k) for k in fan)) if fan else None
    fan_top = fan.get(top_n, []) if top_n else []
    fan_p99 = _median([x["latency"]["p99_ms"] for x in fan_top])
    per_sub = {n: _median([x["rss_per_subscriber_bytes"] for x in runs]) for n, runs in fan.items()}
    per_sub_top = per_sub.get(top_n) if top_n else None
    enf = ph.get("enforcement", {}).get("runs", [])
    enf_p99 = _median([x["latency_s"]["p99"] for x in enf])
    w("## Goals")
    w("")
    w("| goal | measured | |")
    w("| --- | --- | --- |")
    w(f"| token endpoint p99 ≤ {goals['token_p99_ms_at_2000']:.0f} ms at 2,000 req/s | {_f(tok_p99)} ms | "
      f"{_at_most(tok_p99, goals['token_p99_ms_at_2000'])} |")
    w(f"| token max ≥ {_times(goals['token_max_over_peer'])} the peer | "
      f"{_f(tf['over_peer'])}× ({_f(tf['sp'], 0)} vs {_f(tf['peer'], 0)} req/s) | "
      f"{_ratio_verdict(tf['sp'], tf['peer'], goals['token_max_over_peer'])} |")
    w(f"| token max ≥ {_times(goals['token_max_over_db'])} of the database's limit | "
      f"{_f(tf['over_db'])}× ({_f(tf['sp'], 0)} vs {_f(tf['db'], 0)} tokens/s) | "
      f"{_ratio_verdict(tf['sp'], tf['db'], goals['token_max_over_db'])} |")
    wf = _watch_figures(ph.get("watch"), goals)
    # Achieved means answered: 200s at (within 1 % of) the offered rate, not merely requests sent.
    watch_ok = (None if wf["ok"] is None or wf["p99"] is None
                else wf["ok"] >= 0.99 * goals["watch_rps"] and wf["p99"] <= goals["watch_p99_ms"])
    w(f"| watch page {goals['watch_rps']:,} req/s with p99 ≤ {goals['watch_p99_ms']:.0f} ms | "
      f"max {_f(wf['max'], 0)} req/s; at {goals['watch_rps']:,} req/s offered: {_f(wf['ok'], 0)} answered 200/s, "
      f"p99 {_f(wf['p99'])} ms | "
      + ("not measured" if watch_ok is None else "met" if watch_ok else "**missed**") + " |")
    w(f"| chat fan-out p99 < {goals['fanout_p99_ms_at_10000']:.0f} ms to 10,000 subscribers | "
      f"{_f(fan_p99)} ms (N = {top_n}) | "
      f"{_verdict(fan_p99, goals['fanout_p99_ms_at_10000']) if top_n == '10000' else 'not measured at 10,000'} |")
    proxied = ph.get("fanout", {}).get("proxied") or []
    per_proxied = _median([x["rss_per_subscriber_bytes"] for x in proxied
                           if x["rss_per_subscriber_bytes"] is not None]) if proxied else None
    caddy_peak = _median([x["proxy_peak_kib"] for x in proxied if x.get("proxy_peak_kib")]) if proxied else None
    caddy_per = caddy_peak and top_n and caddy_peak * 1024 / int(top_n)
    w(f"| under 8 KiB per SSE subscriber behind the h2c proxy | "
      f"{_f(per_proxied and per_proxied / 1024)} KiB in the app (N = {top_n}); the proxy's own peak: "
      f"{_f(caddy_per and caddy_per / 1024)} KiB per subscriber; direct HTTP/1: "
      f"{_f(per_sub_top and per_sub_top / 1024)} KiB | "
      + (_verdict(per_proxied, goals['sse_bytes_per_subscriber']) if proxied else "not measured") + " |")
    w(f"| enforcement p99 < {goals['enforcement_p99_s']:.0f} s | {_f(enf_p99, 3)} s | "
      f"{_verdict(enf_p99, goals['enforcement_p99_s'])} |")
    rec = ph.get("recording")
    if rec:
        ok = [x for x in rec["runs"] if "failed" not in x]
        cpu = _median([x["cpu_pct_delta"] for x in ok])
        rss = _median([x["rss_kib_delta"] / 1024 for x in ok])
        long = rec.get("long")
        long_peak = long["rss_peak_delta_kib"] / 1024 if long and "rss_peak_delta_kib" in long else None
        worst = max([x for x in (rss, long_peak) if x is not None], default=None)
        w(f"| one built-in recording (640x360 30 fps) under {goals['recording_cpu_pct']:.0f} % of one core | "
          f"{_signed(cpu)} % | {_verdict(cpu, goals['recording_cpu_pct'])} |")
        w(f"| one built-in recording under {goals['recording_rss_mib']:.0f} MiB | {_signed(rss, 1)} MiB over "
          f"{rec['window_s']} s" + (f"; peak {_signed(long_peak, 1)} MiB over a {_f(long['recorded_wall_s'], 0)} s "
                                     "recording" if long_peak is not None else "")
          + f" | {_verdict(worst, goals['recording_rss_mib'])} |")
    glass_lo = ph.get("glass", {}).get("loopback")
    if glass_lo:
        w(f"| glass to glass p95 < {goals['glass_p95_ms']:.0f} ms on loopback | {_f(glass_lo['p95_ms'], 0)} ms | "
          f"{_verdict(glass_lo['p95_ms'], goals['glass_p95_ms'])} |")
    soak = ph.get("soak")
    if soak:
        w(f"| RSS after the soak within {goals['soak_rss_ratio']:.0f}x of idle | "
          f"{_f(soak['after']['median_kib'] / 1024, 1)} MiB after {soak['seconds']} s of load and "
          f"{soak['idle_wait_s']} s idle, {_f(soak['idle']['median_kib'] / 1024, 1)} MiB idle: "
          f"{_f(soak['ratio'])}x | {_verdict(soak['ratio'], goals['soak_rss_ratio'])} |")
    w("")
    w("Where a goal is missed, the README's benchmark findings say what the profile (perf on the release "
      "build under this load) shows limits it, and what has been done about it.")
    w("")

    # ---- HTTP
    if "token" in ph:
        out.extend(_token(ph["token"], r.get("express_peer") or {}, m, plan, goals, tf))
    for key, title in (("watch", "Watch page"),):
        if key not in ph:
            continue
        p = ph[key]
        w(f"## {title}: `{p['method']} {p['url']}`")
        w("")
        w("A signed-in viewer with a channel pass loads the whole watch page (access rule, stream, chat "
          "panel with the last 100 messages, layout). ")
        w(f"First the most the app answers: oha {m['oha']} with no rate limit over {plan['max_connections']} "
          f"keep-alive connections for {plan['http_seconds']} s, once a run. Then oha holds each rate for "
          f"{plan['http_seconds']} s over {plan['oha_connections']} keep-alive "
          "connections (after a warm-up), with `--latency-correction` so that a stall counts against "
          "every request that should have been sent during it (no coordinated omission). "
          "One viewer's session for every request.")
        w("")
        w("| rate (req/s) | achieved (200/s) | p50 (ms) | p90 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | not 200 | app CPU a request (ms) |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        rows = list(p["runs"].items())
        if p.get("max"):
            rows.insert(0, (None, p["max"]))
        for rate, runs in rows:
            bad = [sum(v for c, v in x["status_codes"].items() if c != "200") + sum(x["errors"].values())
                   for x in runs]
            label = f"{int(rate):,}" if rate is not None else f"no limit ({plan['max_connections']} connections)"
            w(f"| {label} | {_spread([x['ok_per_second'] for x in runs], 0)} | "
              f"{_spread([x['p50_ms'] for x in runs])} | {_spread([x['p90_ms'] for x in runs])} | "
              f"{_spread([x['p99_ms'] for x in runs])} | {_spread([x['p99_9_ms'] for x in runs])} | "
              f"{_spread([x['max_ms'] for x in runs], 1)} | {sum(bad)} | "
              f"{_spread([x.get('app_cpu_ms_per_request') for x in runs], 3)} |")
        w("")
        if key == "watch" and p.get("max"):
            w(f"Goal: {goals['watch_rps']:,} req/s with p99 ≤ {goals['watch_p99_ms']:.0f} ms — the most the app "
              f"answers is {_f(wf['max'], 0)} req/s, and at {goals['watch_rps']:,} req/s its p99 is {_f(wf['p99'])} ms: "
              + ("not measured" if watch_ok is None else "**met**" if watch_ok else "**missed**") + ".")
            w("")

    # ---- storm
    if "storm" in ph:
        s = ph.get("storm", {}).get("runs", [])
        w("## Join storm")
        w("")
        w(f"{plan['storm_n']:,} distinct viewers (each with a session and a pass, seeded in the database) each "
          f"ask once for a token, on a connection of their own, at moments spread evenly over "
          f"{plan['storm_within_ms'] / 1000:.0f} s. Latency runs from each viewer's scheduled moment.")
        w("")
        w("| tokens issued | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | all done after (s) | other answers |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        other = sorted({k for x in s for k in x["statuses"] if k != "200"})
        others = ", ".join(f"{k}: {sum(x['statuses'].get(k, 0) for x in s)}" for k in other) or "none"
        w(f"| {_spread([x['ok'] for x in s], 0)} of {plan['storm_n']:,} | {_spread([x['latency']['p50_ms'] for x in s])} | "
          f"{_spread([x['latency']['p90_ms'] for x in s])} | {_spread([x['latency']['p99_ms'] for x in s])} | "
          f"{_spread([x['latency']['max_ms'] for x in s], 1)} | {_spread([x['elapsed_seconds'] for x in s], 1)} | "
          f"{others} |")
        w("")

    # ---- fan-out
    if fan:
        w("## Chat fan-out")
        w("")
        w(f"N viewers (distinct users with passes) hold `GET /s/{{id}}/chat/events` (SSE) open; one more viewer "
          f"posts {plan['fanout_messages']} messages {plan['fanout_interval_ms']} ms apart through the chat form "
          "(the chat allows 5 per 10 s). Latency runs from sending the POST until a subscriber has read the "
          "message off its connection: the post (access rule, limits, insert, NOTIFY), the LISTEN bridge, the "
          "hub, each subscriber's response stream and the socket. Posting starts about "
          f"{(plan.get('fanout_wait_ms', 0) + 2000) / 1000:.0f} s after the last subscriber connected, with the "
          "subscribers' backstop access re-checks (one each per 5 minutes) among the messages. A message not read within "
          "3 s of the last post counts "
          "as not delivered. Each run starts a fresh app process; memory per subscriber = (app RSS with all N "
          "connected − RSS before) / N.")
        w("")
        w("| N | subscribed | connect all (s) | delivered | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | app RSS before → connected (MiB) | per subscriber (KiB) |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for n, runs in fan.items():
            w(f"| {int(n):,} | {_spread([x['subscribed'] for x in runs], 0)} | "
              f"{_spread([x['connect_seconds'] for x in runs], 1)} | "
              f"{_delivered(runs)} | {_latency(runs, 'p50', 'p90', 'p99', 'max')} | "
              f"{_f(_median([x['rss_before_kib'] for x in runs]) / 1024, 1)} → "
              f"{_f(_median([x['rss_connected_kib'] for x in runs]) / 1024, 1)} | "
              f"{_spread([x['rss_per_subscriber_bytes'] / 1024 for x in runs if x['rss_per_subscriber_bytes'] is not None], 2)} |")
        w("")
        pinned = ph["fanout"].get("pinned") or []
        if pinned:
            n = int(pinned[0]["n"])
            w(f"Where p99 comes from: the runs at N = {n:,} again, with the app held to CPU 0 "
              "and the load client to CPU 1 (`taskset`; Postgres and livekit-server run where the scheduler "
              "puts them). The app then has one core, not two, but no longer shares it with the client "
              f"reading {n:,} sockets.")
            w("")
            w("| N | delivered | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |")
            w("| --- | --- | --- | --- | --- | --- |")
            w(f"| {n:,} | {_delivered(pinned)} | {_latency(pinned, 'p50', 'p90', 'p99', 'max')} |")
            w("")
        proxied = ph["fanout"].get("proxied") or []
        if proxied:
            n = proxied[0]["n"]
            w(f"Behind a proxy: the same runs with Caddy {ph['fanout'].get('caddy') or ''} in front "
              "(`reverse_proxy` with `transport http { versions h2c }`): subscribers and sender speak "
              "HTTP/1.1 to Caddy, and Caddy multiplexes their streams over a few HTTP/2 cleartext connections "
              "to the app, as a deployment behind a proxy would. The proxy is one more hop inside the latency, and "
              "shares the same two cores.")
            w("")
            w("| N | subscribed | delivered | p50 (ms) | p99 (ms) | max (ms) | app RSS before → connected (MiB) | app per subscriber (KiB) | Caddy peak RSS (MiB) |")
            w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            w(f"| {int(n):,} | {_spread([x['subscribed'] for x in proxied], 0)} | "
              f"{_delivered(proxied)} | {_latency(proxied, 'p50', 'p99', 'max')} | "
              f"{_f(_median([x['rss_before_kib'] for x in proxied]) / 1024, 1)} → "
              f"{_f(_median([x['rss_connected_kib'] for x in proxied]) / 1024, 1)} | "
              f"{_spread([x['rss_per_subscriber_bytes'] / 1024 for x in proxied if x['rss_per_subscriber_bytes'] is not None], 2)} | "
              f"{_f(_median([x['proxy_peak_kib'] / 1024 for x in proxied if x.get('proxy_peak_kib')]), 1)} |")
            w("")
        idle = ph["fanout"].get("idle_connections")
        if idle and idle.get("rss_per_connection_bytes") is not None:
            w(f"For comparison, {idle['n']:,} idle keep-alive connections that each made one `GET /healthz` "
              f"cost the app {_f(idle['rss_per_connection_bytes'] / 1024)} KiB each (one run, fresh process): "
              "hyper, axum's HTTP server, allocates an 8 KiB read buffer and an 8 KiB write buffer for every "
              "HTTP/1 connection. That is the floor under the memory per SSE subscriber; the rest is the "
              "subscriber's chat reader (its broadcast receiver, timer and queue) inside the response stream.")
            w("")

    # ---- memory
    if "rss_idle_kib" in r:
        w("## App memory")
        w("")
        w("| | RSS (MiB) |")
        w("| --- | --- |")
        w(f"| idle (started, seeded, stream live) | {_f(r['rss_idle_kib'] / 1024, 1)} |")
        for key, title in (("token", "after the token endpoint phase"), ("watch", "after the watch page phase")):
            if key in ph:
                w(f"| {title} | {_f(ph[key]['rss_after_kib'] / 1024, 1)} |")
        if ph.get("token", {}).get("peer_rss_after_kib"):
            w(f"| for comparison: the Express peer after the token endpoint phase | "
              f"{_f(ph['token']['peer_rss_after_kib'] / 1024, 1)} |")
        if top_n:
            w(f"| {int(top_n):,} SSE subscribers connected (fresh process) | "
              f"{_f(_median([x['rss_connected_kib'] for x in fan_top]) / 1024, 1)} |")
        w("")

    # ---- enforcement
    if enf:
        w("## Enforcement")
        w("")
        w(f"{plan['enforce_viewers']} viewers join the live room with LiveKit's Python SDK, with tokens from the "
          "app's token endpoint; once the app has them in presence (participant_joined webhooks), their grants "
          f"are set to end 2 s later, {ph['enforcement']['spacing_ms']} ms apart, by the database's clock. "
          "Latency = from each grant's end until LiveKit's ListParticipants no longer lists the viewer "
          f"(polled every {ph['enforcement']['poll_interval_ms']} ms, so figures can be up to one poll late). "
          "Different viewers in each run"
          + (", while the host's publisher still sends video." if "media" in ph or "recording" in ph else "."))
        w("")
        w("| removed | p50 (s) | p99 (s) | max (s) | client saw its disconnect, p50 (s) |")
        w("| --- | --- | --- | --- | --- |")
        w(f"| {sum(x['removed'] for x in enf)} of {sum(x['viewers'] for x in enf)} | "
          f"{_spread([x['latency_s']['p50'] for x in enf], 3)} | {_spread([x['latency_s']['p99'] for x in enf], 3)} | "
          f"{_spread([x['latency_s']['max'] for x in enf], 3)} | "
          f"{_spread([x['client_disconnected_s']['p50'] for x in enf], 3)} |")
        w("")

    # ---- media
    if "media" in ph:
        md = ph["media"]
        pub = md["publisher"]
        w("## Real media")
        w("")
        w("`lk load-test` (LiveKit's CLI) is not available here — the Go module proxy does not serve "
          "livekit-cli — so LiveKit's Python SDK stands in for it. One publisher (the host, token from "
          f"`POST /studio/streams/{{id}}/token`) sends {pub['width']}x{pub['height']} {pub['codec']} video at "
          f"{pub['fps']} fps (at most {pub['max_bitrate_kbps']} kbps, no simulcast; a textured pattern scrolling "
          f"sideways) and {pub['audio']}. Subscribers join in steps, each with its own viewer token from "
          "`POST /s/{id}/token`, all in one Python process that also decodes their video; each step is "
          f"measured over {plan['media_window_s']} s after they receive video. The ramp stops at the first step "
          f"where fewer than 95 % of subscribers receive 90 % of {pub['fps']} fps. CPU % is of one core "
          "(200 % = the whole machine).")
        w("")
        w(f"**Subscribers reached: {md['subscribers_reached']}** (the largest step that held).")
        w("")
        w("| subscribers | received fps, median (min) | decoded fps, median | received kbps, median (min) | publisher sent fps | livekit-server CPU | subscribers' process CPU | machine CPU |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for st in md["steps"]:
            if "error" in st:
                w(f"| {st['subscribers']} | connecting failed: {st['error']} | | | | | | |")
                continue
            w(f"| {st['subscribers']} | {_f(st['received_fps']['median'], 1)} ({_f(st['received_fps']['min'], 1)}) | "
              f"{_f(st['decoded_fps']['median'], 1)} | {_f(st['received_kbps']['median'], 0)} "
              f"({_f(st['received_kbps']['min'], 0)}) | {st['publisher_sent_fps']} | {st['livekit_cpu_pct']} % | "
              f"{st['subscriber_process_cpu_pct']} % | {st['machine_cpu_pct']} % |")
        w("")

    # ---- glass to glass
    if "glass" in ph:
        g = ph["glass"]
        w("## Glass to glass")
        w("")
        w("The host's publisher stamps each frame with its capture time (the wall clock, as pixel blocks in "
          "its top band); headless Chromium, signed in as a viewer with a pass, plays the stream on the watch "
          "page, and `bench/glass.js` reads the stamp of every frame the player presents "
          "(`requestVideoFrameCallback`'s expected display time minus the stamp). Capture, encoding, LiveKit, "
          "the viewer's jitter buffer, decoding and compositing are all inside the figure; the screen's own "
          "refresh is not. Same machine, same clock.")
        w("")
        if "skipped" in g or "error" in g:
            w(f"Not measured: {g.get('skipped') or g.get('error')}.")
        else:
            w("| network | frames | p50 | p95 | p99 | max | unreadable stamps |")
            w("| --- | --- | --- | --- | --- | --- | --- |")
            for label, key in (("loopback", "loopback"), ("2 % loss, 100 ms RTT (netem)", "impaired")):
                x = g.get(key)
                if not x:
                    continue
                if "skipped" in x:
                    w(f"| {label} | skipped: {x['skipped']} | | | | | |")
                    continue
                w(f"| {label} | {x['samples']} in {x['window_s']} s | {_f(x['p50_ms'], 0)} ms | "
                  f"{_f(x['p95_ms'], 0)} ms | {_f(x['p99_ms'], 0)} ms | {_f(x['max_ms'], 0)} ms | {x['unreadable']} |")
            w("")
            w("For scale: LiveKit claims sub-100 ms; the product's original plans accept < 3 s; LL-HLS is about "
              "2 s; Owncast's HLS 6 s or more.")
        w("")

    # ---- recording
    if "recording" in ph:
        rec = ph["recording"]
        pub = rec["publisher"]
        runs = rec["runs"]
        ok = [x for x in runs if "failed" not in x]
        w("## Built-in recording")
        w("")
        w(f"The host's publisher (as in the real-media phase: {pub['width']}x{pub['height']} {pub['codec']} at "
          f"{pub['fps']} fps, at most {pub['max_bitrate_kbps']} kbps, and {pub['audio']}) is in the live room "
          "with nobody else. Each run starts a fresh app process (so that every recording's memory is measured "
          "from the same start, not on top of what an earlier one left in the allocator), loads the owner's "
          "recording panel once, waits 5 s, and measures the app process over "
          f"{rec['window_s']} s without a recording; then the owner starts one through the app "
          "(`POST /studio/streams/{id}/recording/start`, session cookie and CSRF token, as the broadcast page's "
          "button does); once its row is `active` (the recorder joined the room and wrote its first frame) and "
          f"{rec['warmup_s']} s more have passed, the same {rec['window_s']} s window is measured again; then "
          "`POST …/recording/stop`, and the row is awaited until `complete`. CPU = utime + stime of the app "
          "process (all its threads, from /proc/<pid>/stat) over the window, in % of one core; RSS is sampled "
          "every second (the median of the window). \"After\" is 3 s after the recording completed. The object is "
          "read back from s3s-fs's directory and checked with ffprobe (`-count_frames`: every frame decoded).")
        w("")
        if ok:
            def row(title, key, scale=1.0, digits=2, pick=None):
                get = pick or (lambda x, k: x[k])
                wo = [get(x["without"], key) / scale for x in ok]
                wi = [get(x["with"], key) / scale for x in ok]
                d = [b - a for a, b in zip(wo, wi)]
                af = [get(x["after"], key) / scale for x in ok if "after" in x]
                w(f"| {title} | {_spread(wo, digits)} | {_spread(wi, digits)} | {_spread(d, digits)} | "
                  f"{_spread(af, digits)} |")

            rss = lambda x, k: x["rss_kib"][k]  # noqa: E731
            w("| app process | without a recording | with one recording | difference | after it |")
            w("| --- | --- | --- | --- | --- |")
            row("CPU, % of one core", "app_cpu_pct")
            row("RSS, median of the window (MiB)", "median", 1024, 1, rss)
            row("RSS, highest sample (MiB)", "max", 1024, 1, rss)
            row("livekit-server CPU, % of one core", "livekit_cpu_pct", digits=1)
            row("machine CPU, % of both cores", "machine_cpu_pct", digits=1)
            row("publisher sent, fps", "publisher_sent_fps", digits=1)
            row("publisher sent, kbps", "publisher_sent_kbps", digits=0)
            w("")
            w("| run | start → active (s) | recorded (s) | stop → complete (s) | duration in the row (s) | size | object (ffprobe) |")
            w("| --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(runs, 1):
            if "failed" in x:
                w(f"| {i} | failed: {x['failed']} | | | | | |")
                continue
            w(f"| {i} | {_f(x['active_after_s'])} | {_f(x['recorded_wall_s'], 1)} | {_f(x['complete_after_s'])} | "
              f"{_f(x['duration_ms'] and x['duration_ms'] / 1000, 1)} | {_f(x['size_bytes'] and x['size_bytes'] / 1024, 0)} KiB "
              f"({x['parts']} part{'s' if x['parts'] != 1 else ''}) | {_probe(x.get('ffprobe'), pub['fps'], x['duration_ms'])} |")
        w("")
        long = rec.get("long")
        if long and "failed" not in long:
            pieces = long.get("parts_uploaded_while_recording", [])
            w(f"**A longer recording.** The {rec['window_s']} s windows end before the upload's first 5 MiB part "
              "fills (at the publisher's bitrate that takes minutes), and the upload holds part 1 in memory until "
              "the end (its header is written last) beside the part being filled. So one recording, in a fresh app "
              f"process, is held until two parts have gone up (at most {plan['recording_long_max_s']} s), with RSS "
              "sampled every 2 s: "
              f"recorded {_f(long['recorded_wall_s'], 0)} s, RSS {_f(long['without']['rss_kib']['median'] / 1024, 1)} MiB "
              f"before, peak {_f(long['with']['rss_kib']['max'] / 1024, 1)} MiB "
              f"(**{_signed(long['rss_peak_delta_kib'] / 1024, 1)} MiB**), "
              f"{_f(long['with']['rss_kib']['last'] / 1024, 1)} MiB at the end, "
              f"{_f(long['after']['rss_kib']['median'] / 1024, 1) if 'after' in long else 'n/a'} MiB after; "
              f"app CPU {_f(long['with']['app_cpu_pct'])} % of one core over it "
              f"({_f(long['without']['app_cpu_pct'])} % over 10 s before); "
              + (", ".join(f"a part up at {_f(pc['at_s'], 0)} s (RSS {_f(pc['rss_kib'] / 1024, 1)} MiB)" for pc in pieces)
                 or "no part went up while recording")
              + f". The object: {_f(long['size_bytes'] and long['size_bytes'] / 1024 / 1024, 1)} MiB, "
              f"{_probe(long.get('ffprobe'), pub['fps'], long['duration_ms'])}.")
            w("")
        elif long:
            w(f"The longer recording failed: {long['failed']}")
            w("")
        bad = [x for x in runs + ([long] if long else []) if x.get("app_log") or x.get("app_warnings")]
        if bad:
            w("The app's log said, during the recordings:")
            w("")
            w("```")
            for x in bad:
                for line in (x.get("app_log") or x.get("app_warnings"))[-5:]:
                    w(line)
            w("```")
            w("")

    # ---- soak
    if "soak" in ph:
        out.extend(_soak(ph["soak"], m))

    # ---- settings
    w("## Settings")
    w("")
    w("The app runs as an operator would run it on this machine, from the release build, with nothing "
      "disabled for the benchmark (rate limits, CSRF, sessions, the access rule, logging all on):")
    w("")
    w("| variable | value |")
    w("| --- | --- |")
    for k, v in r["settings"].items():
        w(f"| `{k}` | `{v}` |")
    w("")
    peer = r.get("express_peer")
    if peer:
        w("The Express peer (token endpoint phase only; stopped after it) runs with:")
        w("")
        w("| variable | value |")
        w("| --- | --- |")
        for k, v in peer["settings"].items():
            w(f"| `{k}` | `{v}` |")
        w("")
    w("livekit-server runs without `--dev`, from a config file: one node, loopback only, UDP and TCP on "
      "one port each, webhooks to the app, log level warn. The only per-IP limit in the app is on "
      "failed sign-ins, which the benchmark never does (viewers' sessions are seeded in the database in "
      "the session store's own format, so that 10,000 argon2 sign-ins are not what is measured).")
    w("")
    return "\n".join(out)


def _soak(s: dict, m: dict) -> list[str]:
    out = []
    w = out.append
    mib = lambda kib: _f(kib and kib / 1024, 1)  # noqa: E731
    w("## Soak: does memory come back?")
    w("")
    only = "" if len(s["kinds"]) == 7 else f" — **only {', '.join(s['kinds'])} (BENCH_SOAK_MIX)**"
    w(f"A fresh app process, warmed up (each kind of request below once) and left 10 s; idle RSS is the "
      f"median of 10 samples over the next 10 s. Then {s['seconds']} s of mixed load, all at once{only}: oha at fixed rates on the home page (20/s), the watch page (40/s), the "
      "studio's stream page (10/s) and the token endpoint (100/s); about 100 chat streams (SSE) open at any "
      "moment, each held 1–15 s, and every 60 s a burst of 300 more; 5 chat posts a second from viewers in "
      "turn; a thumbnail or avatar upload every 1.5 s, and every 30 s four big ones at once (images: "
      + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in s["images"].items())
      + "); a body over a limit every 2 s (a 6 MiB upload, a 3 MiB form, a 10 MiB webhook); 4 malformed "
      "requests a second on raw sockets; 5 failed sign-ins a second (unknown addresses, so argon2 runs on "
      "the dummy hash) from 50 loopback source addresses. Then the load stops; after "
      f"{s['idle_wait_s']} s the RSS is the median of 10 samples over 10 s.")
    w("")
    after, idle = s["after"]["median_kib"], s["idle"]["median_kib"]
    w("| | RSS (MiB) |")
    w("| --- | --- |")
    w(f"| fresh process | {mib(s['rss_fresh_kib'])} |")
    w(f"| idle, after warm-up | {mib(idle)} |")
    w(f"| highest sample during the load (VmHWM) | {mib(s['peak_rss_kib'])} ({mib(s['end_of_load'].get('VmHWM'))}) |")
    w(f"| when the load stopped | {mib(s['end_of_load'].get('VmRSS'))} |")
    w(f"| after {s['idle_wait_s']} s idle | **{mib(after)}** |")
    w(f"| after / idle | **{_f(s['ratio'])}x** (goal: within {s['goal_ratio']:.0f}x: "
      f"{'met' if s['met'] else '**missed**'}) |")
    w("")
    sm = s["smaps_rollup"]
    w("| /proc/PID/smaps_rollup (MiB) | idle | end of load | after |")
    w("| --- | --- | --- | --- |")
    for k in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
        w(f"| {k} | {mib(sm['idle'].get(k))} | {mib(sm['end_of_load'].get(k))} | {mib(sm['after'].get(k))} |")
    an = s.get("anon", {})
    if an:
        w(f"| anonymous mappings (count) | {an['idle'].get('anon_mappings')} | {an['end_of_load'].get('anon_mappings')} "
          f"| {an['after'].get('anon_mappings')} |")
        w(f"| threads | | {s['end_of_load'].get('Threads')} | {s['status_after'].get('Threads')} |")
    db = s.get("db_connections")
    if db:
        w(f"| database connections in the pool | {db['idle']} | | {db['after']} |")
    w("")
    w("What the load did (status codes or errors, by kind):")
    w("")
    w("| kind | answers |")
    w("| --- | --- |")
    for kind, c in sorted(s["counts"].items()):
        w(f"| {kind} | {', '.join(f'{k}: {v:,}' for k, v in sorted(c.items()))} |")
    for name, o in (s.get("oha") or {}).items():
        if o:
            w(f"| oha {name} | {_f(o['requests_per_second'], 0)} req/s; "
              f"{', '.join(f'{k}: {v:,}' for k, v in sorted((o['status_codes'] or {}).items()))} |")
    w(f"| SSE streams open at once, at most | {s['sse_peak_open']} |")
    w("")
    series = s.get("rss_series") or []
    if series:
        step = max(1, len(series) // 12)
        w("RSS over the load (MiB, every ~" + f"{series[min(1, len(series) - 1)][0] - series[0][0]:.0f} s sample"
          + "): " + ", ".join(f"{x[0]:.0f} s {mib(x[1])}" for x in series[::step]) + ".")
        w("")
    return out


def _token(t: dict, peer: dict, m: dict, plan: dict, goals: dict, tf: dict) -> list[str]:
    out = []
    w = out.append
    runs = t["runs"]
    v = peer.get("versions") or {}
    w(f"## Token endpoint: `{t['method']} {t['url']}`")
    w("")
    w("A signed-in viewer with a channel pass asks for a LiveKit token: session load, CSRF check, the access "
      "rule, minting a subscribe-only JWT. The same request, with the same viewer's cookie and CSRF header, "
      "goes to stagepass and to the **Express peer** (`bench/peers/express`: the same endpoint written the "
      "way a typical Node.js team would, against the same database, with the same rule and answers; "
      f"Node.js {v.get('node', '?')}, express {v.get('express', '?')}, one process, a pool of 16 connections), "
      "in turn within each run, so that both see the same machine. First the most each answers: oha "
      f"{m['oha']} with no rate limit over {plan['max_connections']} keep-alive connections for "
      f"{plan['http_seconds']} s (stagepass, then the peer). Then each fixed rate, stagepass then the peer. "
      "Last, the **database's limit**: pgbench runs the endpoint's own database round trips "
      f"(`{t.get('pgbench_script', 'bench/token.sql')}`: the session with its user, then the stream with the "
      "access rule's facts; prepared statements, as the app sends them) for the same viewer and stream, "
      f"from {runs[0]['pgbench']['clients'] if runs else '?'} clients for {plan['http_seconds']} s: the "
      "tokens a second Postgres could answer if nothing else on the machine cost anything. CPU a request "
      "is the server process's own user + system time over its answers (Postgres's is in neither); machine "
      "CPU is of both cores, load generator included. Neither logs a line per successful request (stagepass "
      "logs JSON at info, which writes nothing for a request that goes well; the peer, as a typical Express app, "
      "has no request logger). Each takes two database round trips a token: the session with its user, then "
      "the stream with the access rule's facts. The peer is one Node.js process, as the product's original "
      "plans run it; stagepass runs on tokio's two worker threads.")
    w("")
    w("| | max (200/s) | p50 at max (ms) | p99 at max (ms) | CPU a request (ms) | machine CPU | not 200 |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for side, title in (("stagepass", "stagepass"), ("peer", "Express peer")):
        xs = [x["max"][side] for x in runs]
        bad = sum(sum(n for c, n in x["status_codes"].items() if c != "200") + sum(x["errors"].values()) for x in xs)
        w(f"| {title} | {_spread([x['ok_per_second'] for x in xs], 0)} | {_spread([x['p50_ms'] for x in xs])} | "
          f"{_spread([x['p99_ms'] for x in xs])} | {_spread([x['app_cpu_ms_per_request'] for x in xs], 3)} | "
          f"{_spread([x.get('machine_cpu_pct') for x in xs], 0)} % | {bad} |")
    pg = [x["pgbench"] for x in runs if x.get("pgbench")]
    if pg:
        w(f"| database limit (pgbench) | {_spread([x['tps'] for x in pg], 0)} tokens/s | "
          f"— (average {_spread([x['latency_avg_ms'] for x in pg], 3)}) | — | — | "
          f"{_spread([x.get('machine_cpu_pct') for x in pg], 0)} % | "
          f"{sum(x.get('failed') or 0 for x in pg)} failed |")
    w("")

    def ratio_row(title, key, num, den, goal_key):
        per_run = tf[key + "_runs"]
        runs_note = (" (runs: " + ", ".join(f"{_f(x)}×" for x in per_run) + ")") if len(per_run) > 1 else ""
        w(f"| {title} | {_f(tf[key])}×{runs_note} | ≥ {_times(goals[goal_key])} | "
          f"{_ratio_verdict(num, den, goals[goal_key])} |")

    w("| ratio of the medians | measured | goal | |")
    w("| --- | --- | --- | --- |")
    ratio_row("stagepass ÷ Express peer", "over_peer", tf["sp"], tf["peer"], "token_max_over_peer")
    ratio_row("stagepass ÷ database limit", "over_db", tf["sp"], tf["db"], "token_max_over_db")
    w("")
    w(f"At fixed rates: oha holds each rate for {plan['http_seconds']} s over {plan['oha_connections']} "
      "keep-alive connections with `--latency-correction`, so that a stall counts against every request that "
      "should have been sent during it (no coordinated omission).")
    w("")
    w("| rate (req/s) | stagepass 200/s | stagepass p50 (ms) | stagepass p99 (ms) | peer 200/s | peer p50 (ms) | peer p99 (ms) | CPU a request, stagepass / peer (ms) | not 200, stagepass / peer |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rates = list(runs[0]["rates"]) if runs else []
    for rate in rates:
        sp = [x["rates"][rate]["stagepass"] for x in runs]
        pe = [x["rates"][rate]["peer"] for x in runs]
        bad = lambda xs: sum(sum(n for c, n in x["status_codes"].items() if c != "200")  # noqa: E731
                             + sum(x["errors"].values()) for x in xs)
        w(f"| {int(rate):,} | {_spread([x['ok_per_second'] for x in sp], 0)} | {_spread([x['p50_ms'] for x in sp])} | "
          f"{_spread([x['p99_ms'] for x in sp])} | {_spread([x['ok_per_second'] for x in pe], 0)} | "
          f"{_spread([x['p50_ms'] for x in pe])} | {_spread([x['p99_ms'] for x in pe])} | "
          f"{_f(_median([x['app_cpu_ms_per_request'] for x in sp]), 3)} / "
          f"{_f(_median([x['app_cpu_ms_per_request'] for x in pe]), 3)} | {bad(sp)} / {bad(pe)} |")
    w("")
    if "2000" in rates:
        w(f"Goal: stagepass's p99 ≤ {goals['token_p99_ms_at_2000']:.0f} ms at 2,000 req/s — "
          f"{_f(tf['p99_at_2000'])} ms: "
          + ("**met**" if _at_most(tf["p99_at_2000"], goals["token_p99_ms_at_2000"]) == "met"
             else _at_most(tf["p99_at_2000"], goals["token_p99_ms_at_2000"])) + ".")
        w("")
    return out
