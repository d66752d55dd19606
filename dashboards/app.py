"""flowkit operators' dashboard (Streamlit). Start it with ``flowkit dashboard``.

Reads ``$FLOWKIT_REDIS_URL`` (set by ``flowkit dashboard --redis``) and ``$FLOWKIT_FLOWS``.
All numbers come from :mod:`flowkit.dashboard` (cheap reads: counters and indexes, never a
SCAN of sessions); each tab refreshes itself every few seconds (``st.fragment``). The
Experiments tab is the exception: it reads up to 2,000 session states (flowkit/dashboard_experiments.py)
when the page loads or on its Refresh button, never on a timer.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from flowkit import dashboard as D
from flowkit.dashboard_auth import configured_password, password_ok
from flowkit.errors import ConfigError

st.set_page_config(page_title="flowkit dashboard", page_icon="💬", layout="wide")


def _login(secret: str) -> None:
    """Ask for the dashboard password once per browser session; nothing else is drawn before."""
    if st.session_state.get("_authenticated"):
        return
    st.title("flowkit dashboard")
    with st.form("login"):
        given = st.text_input("Password", type="password", key="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if password_ok(given, secret):
            st.session_state["_authenticated"] = True
            st.rerun()
        time.sleep(1)  # slows down guessing
        st.error("Wrong password.")
    st.stop()


try:
    _secret = configured_password()
except ConfigError as _exc:
    st.error(str(_exc))
    st.stop()
if _secret is not None:
    _login(_secret)


@st.cache_resource(show_spinner=False)
def _logging(fmt: str, level: str) -> None:
    # `flowkit dashboard` passes its --log-format/--log-level down; run bare (tests), leave logging alone
    if fmt:
        from flowkit.log import configure_from_env

        configure_from_env()


_logging(os.environ.get("FLOWKIT_LOG_FORMAT", ""), os.environ.get("FLOWKIT_LOG_LEVEL", ""))


@st.cache_resource(show_spinner=False)
def _source(url: str, flows_env: str) -> D.Source:
    return D.open_source(url or None)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if pct:
        return f"{v:.0%}"
    return f"{v:,.1f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v):,}"


src = _source(os.environ.get("FLOWKIT_REDIS_URL", ""), os.environ.get("FLOWKIT_FLOWS", ""))

with st.sidebar:
    st.header("flowkit")
    st.caption(f"Redis: `{src.url}`")
    every = st.number_input("Refresh every (s)", min_value=1, max_value=300, value=5, key="every")
    stuck_min = st.number_input("Stuck after idle (min)", min_value=1, max_value=10_080, value=30, key="stuck_min")
    window_min = st.number_input("Rates window (min)", min_value=5, max_value=1_440, value=60, key="window_min")
    for p in src.flow_problems:
        st.warning(p)

STUCK_MS = int(stuck_min) * 60_000
WINDOW_MS = int(window_min) * 60_000


def _state() -> tuple[str, str | None]:
    """("down", reason) | ("empty", None) | ("ok", None)."""
    why = D.probe(src.client)
    if why is not None:
        return "down", why
    try:
        h = D.headline(src.client, stuck_after_ms=STUCK_MS)
    except Exception as exc:  # noqa: BLE001 - Redis went away between the ping and the reads
        return "down", f"{type(exc).__name__}: {exc}"
    st.session_state["_headline"] = h
    return ("ok" if h["has_data"] else "empty"), None


def _unreachable(why: str | None) -> None:
    st.error(f"**Redis unreachable** at `{src.url}` — {why}. The page retries every {every} s; "
             "check `--redis` / `FLOWKIT_REDIS_URL` and that the server is running.")


def _guard(fn: Any) -> Any:
    """Run one panel; a Redis failure mid-refresh shows the unreachable state, not a traceback."""
    def run(*a: Any, **kw: Any) -> None:
        try:
            fn(*a, **kw)
        except Exception:  # noqa: BLE001
            why = D.probe(src.client)
            if why is None:
                raise
            _unreachable(why)
    run.__name__ = fn.__name__
    return run


st.title("flowkit dashboard")
state, why = _state()
st.session_state["_page_state"] = state


@st.fragment(run_every=every)
def headline() -> None:
    now_state, now_why = _state()
    if now_state != st.session_state.get("_page_state"):
        st.rerun(scope="app")  # Redis came back, went away, or the first data arrived
    if now_state == "down":
        _unreachable(now_why)
        return
    if now_state == "empty":
        st.info("**No data yet.** Redis answers but holds no sessions or metrics. Start a runtime "
                "(`flowkit serve` / `flowkit simulate`) against the same Redis and this page fills in by itself.")
        return
    h = st.session_state["_headline"]
    row1 = st.columns(6)
    row1[0].metric("Live sessions", _fmt(h["live"]))
    row1[1].metric(f"Stuck (idle > {int(stuck_min)} min)", _fmt(h["stuck"]))
    row1[2].metric("Messages / min", _fmt(h["messages_per_min"]), help="user messages applied, last 5 minutes")
    row1[3].metric("Sessions started / min", _fmt(h["starts_per_min"]), help="last 5 minutes")
    row1[4].metric("Completion rate", _fmt(h["completion_rate"], pct=True), help="completed / ended sessions")
    row1[5].metric("Active alerts", _fmt(h["active_alerts"]))
    row2 = st.columns(6)
    row2[0].metric("Sessions stored", _fmt(h["sessions"]))
    row2[1].metric("Messages in (all time)", _fmt(h["messages_in"]))
    row2[2].metric("Timeouts due", _fmt(h["timeouts_due"]))
    row2[3].metric("Outbox backlog", _fmt(h["outbox_backlog"]), help="effects unacknowledged for over a minute")
    row2[4].metric("Engine errors", _fmt(h["engine_errors"]))
    row2[5].metric("Quarantined states", _fmt(h["quarantined"]))


headline()
if state != "ok":
    st.stop()

tab_traffic, tab_flows, tab_stuck, tab_services, tab_alerts, tab_experiments, tab_waiting = st.tabs(
    ["Traffic", "Flows", "Stuck sessions", "Services", "Alerts", "Experiments", "Waiting for a person"])


@st.fragment(run_every=every)
@_guard
def traffic() -> None:
    r = D.rates(src.client, window_ms=WINDOW_MS)
    c1, c2 = st.columns(2)
    fig = go.Figure()
    for col, name in (("messages_in", "messages in"), ("messages_out", "replies out")):
        fig.add_scatter(x=r.index, y=r[col], name=name, mode="lines")
    fig.update_layout(title="Messages per minute", height=320, margin={"t": 40, "b": 20})
    c1.plotly_chart(fig)
    fig = go.Figure()
    for col, name in (("sessions_started", "started"), ("sessions_ended", "ended")):
        fig.add_scatter(x=r.index, y=r[col], name=name, mode="lines")
    fig.update_layout(title="Sessions per minute", height=320, margin={"t": 40, "b": 20})
    c2.plotly_chart(fig)
    fig = go.Figure()
    for col in ("validation_failures", "engine_errors", "conflicts", "duplicates"):
        fig.add_scatter(x=r.index, y=r[col], name=col.replace("_", " "), mode="lines")
    fig.update_layout(title="Problems per minute", height=260, margin={"t": 40, "b": 20})
    st.plotly_chart(fig)
    from flowkit.metrics import totals

    dlv = D.delivery_summary(totals(src.client))
    per_step = "per flow and step: `flowkit analytics EXPORT -t delivery`"
    d1, d2, d3, d4 = st.columns(4)
    d1.metric("Replies sent (WhatsApp)", _fmt(dlv["sent"]), help="replies WhatsApp reported sent, all time")
    d2.metric("Delivered", _fmt(dlv["delivered_rate"], pct=True), help=f"of the replies sent; {per_step}")
    d3.metric("Read", _fmt(dlv["read_rate"], pct=True), help=f"of the replies sent; {per_step}")
    d4.metric("Failed", _fmt(dlv["failed_rate"], pct=True), help=f"of the replies sent; {per_step}")
    by_step = D.delivery_by_step(totals(src.client))
    if not by_step.empty:  # per flow and step since the wamid map recorded them (see docs/decisions.md)
        st.subheader("Delivery by step")
        label = by_step["flow"] + " · " + by_step["step"]
        fig = go.Figure()
        for col, colour in (("delivered_rate", "#5b8def"), ("read_rate", "#3cb371"), ("failed_rate", "#e0594a")):
            fig.add_bar(y=label, x=by_step[col], name=col.replace("_", " "), orientation="h", marker_color=colour)
        fig.update_layout(barmode="group", height=max(220, 60 * len(by_step) + 80), margin={"t": 20, "b": 20},
                          xaxis={"tickformat": ".0%", "range": [0, 1]}, yaxis={"autorange": "reversed"})
        st.plotly_chart(fig)
        pct = st.column_config.NumberColumn(format="percent")
        st.dataframe(by_step, hide_index=True, key="delivery_by_step",
                     column_config={"delivered_rate": pct, "read_rate": pct, "failed_rate": pct})


@st.fragment(run_every=every)
@_guard
def flows() -> None:
    per_flow = src.store.counters()
    summary = D.flow_summary(per_flow)
    st.dataframe(summary, hide_index=True,
                 column_config={"completion_rate": st.column_config.NumberColumn(format="percent"),
                                "drop_rate": st.column_config.NumberColumn(format="percent")})
    known = D.load_flows(src)
    names = sorted(set(per_flow) | set(known))
    if not names:
        st.info("No flows yet.")
        return
    busiest = max(names, key=lambda n: int(per_flow.get(n, {}).get("sessions", 0)))
    name = st.selectbox("Flow", names, index=names.index(busiest), key="flow")
    from flowkit.metrics import totals

    live = D.live_by_step(src.client)
    table = D.step_table(name, per_flow, live, totals(src.client), known.get(name))
    if not live.exact:
        st.caption(f"Live sessions per step estimated from {live.read:,} of {live.live:,} live sessions "
                   "(an even sample of the activity index).")
    left, right = st.columns([2, 3])
    with left:
        fsum = summary.set_index("flow").loc[name] if name in set(summary["flow"]) else None
        if fsum is not None:
            ended = int(fsum["completed"]) + sum(int(fsum[x]) for x in D.DROP_STATUSES)
            fig = go.Figure(go.Funnel(y=["started", "finished", "completed"],
                                      x=[int(fsum["sessions"]), ended, int(fsum["completed"])],
                                      textinfo="value+percent initial"))
            fig.update_layout(title=f"{name}: sessions", height=230, margin={"t": 40, "b": 10})
            st.plotly_chart(fig)
        st.subheader("Drop-off by step")
        fig = go.Figure()
        for col, colour in (("active_here", "#5b8def"), ("completed_here", "#3cb371"), ("dropped", "#e0594a")):
            fig.add_bar(y=table["step"], x=table[col], name=col.replace("_", " "), orientation="h",
                        marker_color=colour)
        fig.update_layout(barmode="stack", height=max(260, 28 * len(table) + 80), margin={"t": 20, "b": 20},
                          yaxis={"autorange": "reversed"})
        st.plotly_chart(fig)
        st.dataframe(table, hide_index=True,
                     column_config={"drop_share": st.column_config.NumberColumn(format="percent")})
    with right:
        st.subheader("Flow graph with traffic")
        flow = known.get(name)
        if flow is None:
            st.info(f"The definition of {name!r} is not registered in Redis; start the dashboard with its flow "
                    "files (`flowkit dashboard flows/`) to draw it.")
        else:
            st.graphviz_chart(D.flow_graph(flow, table), width="stretch")


@st.fragment(run_every=every)
@_guard
def stuck() -> None:
    frame = D.stuck_sessions(src.client, stuck_after_ms=STUCK_MS, limit=100)
    st.session_state["_stuck_ids"] = list(frame["session_id"])
    if frame.empty:
        st.success(f"No live session has been idle for more than {int(stuck_min)} minutes.")
    else:
        st.caption(f"Oldest first; the {len(frame)} longest idle (from the activity index).")
        st.dataframe(frame, hide_index=True)


@st.fragment(run_every=every)
@_guard
def waiting() -> None:
    frame = D.waiting_for_person(src.store)
    if frame.empty:
        st.success("Nobody is waiting for a person.")
    else:
        st.caption(f"{len(frame)} in hand-off, longest wait first; answer with `flowkit agent reply` or the "
                   "/agent endpoints (docs/handoff.md).")
        st.dataframe(frame, hide_index=True)


@st.fragment
@_guard
def drill_down() -> None:
    st.subheader("Session drill-down")
    ids = st.session_state.get("_stuck_ids", [])
    c1, c2 = st.columns(2)
    picked = c1.selectbox("Stuck session", ids, index=0 if ids else None, key="pick_sid",
                          placeholder="no stuck sessions")
    typed = c2.text_input("…or any session id", key="typed_sid").strip()
    sid = typed or picked
    if not sid:
        return
    detail = D.session_detail(src.store, sid)
    if detail is None:
        st.warning(f"No session {sid!r}.")
        return
    if detail["problem"]:
        st.error(f"Stored state is not valid: {detail['problem']}")
    version = detail["version"]
    st.markdown(f"**{sid}** — version {version}")
    left, right = st.columns([2, 3])
    left.json(detail["state"] or {}, expanded=1)
    right.dataframe(detail["history"], hide_index=True)
    if detail["transcript"]:
        from flowkit.history.chat import chat_text

        st.markdown(f"**Transcript** — {len(detail['transcript'])} messages")
        st.code(chat_text(detail["transcript"]), language=None)
    versions = list(range(detail["first_version"] or 1, version + 1))
    if len(versions) >= 2:
        st.markdown("**Diff between versions**")
        d1, d2 = st.columns(2)
        a = d1.selectbox("from version", versions, index=len(versions) - 2, key=f"diff_a_{sid}")
        b = d2.selectbox("to version", versions, index=len(versions) - 1, key=f"diff_b_{sid}")
        try:
            diff = D.session_diff(src.store, sid, int(a), int(b))
            st.dataframe(diff["changes"], hide_index=True)
        except Exception as exc:  # noqa: BLE001 - a trimmed version: say so, keep the page
            st.warning(f"Cannot diff: {exc}")
        st.markdown("**Roll back**")
        target = st.selectbox("to version", versions[:-1], index=len(versions) - 2, key=f"rb_to_{sid}")
        if st.button(f"Roll back {sid} to version {target}…", key="rollback"):
            st.session_state["_rollback"] = (sid, int(target), version)
        pending = st.session_state.get("_rollback")
        if pending and pending[0] == sid:
            _, to, at = pending
            st.warning(f"Roll back **{sid}** from version {at} to version {to}? This writes version {at + 1} "
                       f"with the state of version {to} (history is kept).")
            ok, cancel = st.columns(2)
            ok.button("Confirm rollback", key="rollback_confirm", type="primary", on_click=_do_rollback)
            cancel.button("Cancel", key="rollback_cancel", on_click=lambda: st.session_state.pop("_rollback", None))
    done = st.session_state.pop("_rollback_done", None)
    if done:
        (st.error if done.startswith("Rollback failed") else st.success)(done)


def _do_rollback() -> None:
    """The confirm button's callback: runs before the page is drawn again, so the drill-down shows the new version."""
    pending = st.session_state.pop("_rollback", None)
    if not pending:
        return
    sid, to, _ = pending
    try:
        res = D.rollback(src.store, sid, to)
    except Exception as exc:  # noqa: BLE001 - conflict, version gone: tell the operator
        st.session_state["_rollback_done"] = f"Rollback failed: {exc}"
    else:
        st.session_state["_rollback_done"] = f"Rolled back {sid} to version {to}: now version {res.version}."
        # a rolled-back session is no longer idle, so it leaves the stuck list: keep showing it
        st.session_state["typed_sid"] = sid


@st.fragment(run_every=every)
@_guard
def services() -> None:
    frame = D.service_health(src.client)
    if frame.empty:
        st.info("No service calls yet.")
        return
    st.caption("All time, and in the last 15 minutes (`_recent`).")
    st.dataframe(frame, hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="percent")
                                for c in ("error_rate", "error_rate_recent")})


@st.fragment(run_every=every)
@_guard
def alerts() -> None:
    a = D.alerts(src.client)
    if a["active"].empty:
        st.success("No alerts firing.")
    else:
        st.dataframe(a["active"], hide_index=True)
    if not a["history"].empty:
        st.caption("Recent alert events")
        st.dataframe(a["history"], hide_index=True)


@st.fragment
@_guard
def experiments() -> None:
    from flowkit.dashboard_experiments import DEFAULT_LIMIT, live_experiments

    st.button("Refresh", key="experiments_refresh")
    table = live_experiments(src.store.iter_sessions(), D.load_flows(src))
    if table.empty:
        st.info("No session has gone through a split step yet.")
        return
    st.caption(f"The latest session of each user (at most {DEFAULT_LIMIT:,} read); each variant against the first: "
               "difference in completion rate, 95% interval, p-value. Every journey: "
               "`flowkit analytics EXPORT -t experiments`.")
    shown = table.assign(**{c: table[c].map(lambda v: _fmt(v, pct=True)) for c in ("completion_rate", "diff", "ci_low",
                                                                                  "ci_high")},
                         p_value=table["p_value"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"))
    st.table(shown.set_index(["flow", "split", "variant"]))


with tab_traffic:
    traffic()
with tab_flows:
    flows()
with tab_stuck:
    stuck()
    drill_down()
with tab_services:
    services()
with tab_alerts:
    alerts()
with tab_experiments:
    experiments()

with tab_waiting:
    waiting()
