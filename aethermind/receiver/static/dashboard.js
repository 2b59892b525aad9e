/* Aethermind dashboard: reads the query API with the user's read key and draws it.
 *
 * Plain JavaScript, no build step, no third-party code but Plotly (served by the receiver
 * from the installed plotly package). Every figure shown is an API value as it came: money
 * is formatted from the API's decimal string without rounding, and each figure's raw value
 * is in its data-value attribute. Untrusted text (model names, span names) is only ever set
 * with textContent, and escaped before Plotly sees it.
 */
"use strict";

(() => {
  const KEY_STORAGE = "aethermind.readKey";
  const REFRESH_MS = 10_000;
  const TOP_TRACES = 10;
  const MINUTE = 60_000;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;
  const RANGES = {
    "1h": { ms: HOUR, granularity: "minute" },
    "24h": { ms: DAY, granularity: "hour" },
    "7d": { ms: 7 * DAY, granularity: "day" },
    "30d": { ms: 30 * DAY, granularity: "day" },
  };
  // Bucket widths for bar placement; a month bar is drawn 30 days wide.
  const BUCKET_MS = { minute: MINUTE, hour: HOUR, day: DAY, week: 7 * DAY, month: 30 * DAY };
  const GROUP_LABELS = {
    model: "Model",
    provider: "Provider",
    service: "Service",
    operation: "Operation",
    environment: "Environment",
    user: "User",
    session: "Session",
    agent: "Agent",
    tag: "Tag",
  };
  // Who spent it: values run into the millions, so these breakdowns show the top groups by
  // cost (the API's top N), the cost chart the total, and each group opens its traces.
  const WHO = new Set(["user", "session", "agent", "tag"]);
  const TOP_GROUPS = 20;
  const TAG_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
  const UNSET = "(not set)";
  const PALETTE = [
    "#3b6fd4", "#e07b39", "#3a9e6f", "#c2415a", "#8a5cc7",
    "#2d9cb3", "#b8912f", "#6b7a8f", "#d65db1", "#5a8f29",
  ];
  // The API lives next to the page: /dashboard -> /v1/... (keeps any proxy path prefix).
  const API_BASE = new URL("v1/", document.baseURI);

  const $ = (id) => document.getElementById(id);
  const el = {
    keyForm: $("key-form"),
    keyInput: $("key-input"),
    keyStatus: $("key-status"),
    keyHint: $("key-hint"),
    changeKey: $("change-key"),
    forgetKey: $("forget-key"),
    alert: $("alert"),
    range: $("range"),
    customRange: $("custom-range"),
    customFrom: $("custom-from"),
    customTo: $("custom-to"),
    applyCustom: $("apply-custom"),
    groupBy: $("group-by"),
    tagControl: $("tag-control"),
    tagKey: $("tag-key"),
    applyTag: $("apply-tag"),
    filter: $("filter"),
    filterLabel: $("filter-label"),
    clearFilter: $("clear-filter"),
    autoRefresh: $("auto-refresh"),
    refreshNow: $("refresh-now"),
    rangeLabel: $("range-label"),
    updated: $("updated"),
    summary: $("summary"),
    main: document.querySelector("main"),
    breakdown: document.querySelector("#breakdown tbody"),
    topTraces: document.querySelector("#top-traces tbody"),
    tracePanel: $("trace-panel"),
    traceTitle: $("trace-title"),
    traceSummary: $("trace-summary"),
    traceSpans: document.querySelector("#trace-spans tbody"),
    closeTrace: $("close-trace"),
  };

  const state = {
    key: null,
    range: el.range.value,
    custom: null, // {from: Date, to: Date} once applied
    groupBy: el.groupBy.value,
    tagKey: "", // the tag key when groupBy is "tag"
    filter: null, // {key, value}: only the spans with this value (a user, a session...)
    inflight: null, // AbortController of the refresh in progress
    timer: null,
    stopped: false, // after 401/403: no more automatic requests with a rejected key
    refreshes: 0,
    traceOpener: null,
    traceRequest: null,
  };

  // ---------------------------------------------------------------- formatting

  /** "$1,234.5678" from the API's decimal string, exactly: trailing zeros trimmed, no rounding. */
  /**
   * Money for people, as the CLI shows it: cents from $100 up, else four significant
   * digits, at least two decimals ($1,234.57, $1.284, $0.50, $0.009). The exact decimal
   * stays in the element's data-value and its tooltip.
   */
  function formatUsd(decimal) {
    if (decimal === null || decimal === undefined) return "—";
    const amount = Number(decimal);
    if (!Number.isFinite(amount) || amount === 0) return "$0.00";
    const sign = amount < 0 ? "-" : "";
    const abs = Math.abs(amount);
    const decimals = abs >= 100 ? 2 : Math.max(2, 3 - Math.floor(Math.log10(abs)));
    const [whole, fraction = ""] = abs.toFixed(decimals).split(".");
    const shown = abs >= 100 ? fraction : fraction.replace(/0+$/, "").padEnd(2, "0");
    return `${sign}$${groupThousands(whole)}.${shown}`;
  }

  /** The API's exact amount, for a tooltip beside the rounded one. */
  function exactUsd(decimal) {
    return decimal === null || decimal === undefined ? "" : `exactly $${decimal}`;
  }

  function groupThousands(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function formatInt(value) {
    if (value === null || value === undefined) return "—";
    return groupThousands(String(value));
  }

  function formatMs(value) {
    if (value === null || value === undefined) return "—";
    const ms = Number(value);
    if (ms < 10) return `${trimNumber(ms, 2)} ms`;
    if (ms < 1000) return `${trimNumber(ms, 1)} ms`;
    if (ms < 60_000) return `${trimNumber(ms / 1000, 2)} s`;
    return `${trimNumber(ms / 60_000, 1)} min`;
  }

  function trimNumber(value, digits) {
    return String(Number(value.toFixed(digits)));
  }

  function formatPercent(numerator, denominator) {
    if (!denominator) return "—";
    return `${trimNumber((100 * numerator) / denominator, 2)}%`;
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const clockFormat = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  function formatTime(iso) {
    return iso ? timeFormat.format(new Date(iso)) : "—";
  }

  /** A value for <input type="datetime-local"> (local time, minutes). */
  function toLocalInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  /** A local-time date string for Plotly, which shows date strings as written (time zone
   *  free): the charts then read in the same local time as the tables. */
  function plotlyDate(value) {
    const date = value instanceof Date ? value : new Date(value);
    const pad = (n, width = 2) => String(n).padStart(width, "0");
    return `${toLocalInput(date)}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`
      .replace("T", " ");
  }

  /** Plotly renders a subset of HTML in names and labels; ours are data, never markup. */
  function plotlyText(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function groupName(row, key) {
    const value = row[key];
    return value === null || value === undefined || value === "" ? UNSET : String(value);
  }

  // ---------------------------------------------------------------- DOM helpers

  function cell(text, { value, numeric = false, title } = {}) {
    const td = document.createElement("td");
    td.textContent = text;
    if (numeric) td.className = "num";
    if (value !== undefined) td.dataset.value = value === null ? "" : String(value);
    if (title) td.title = title;
    return td;
  }

  function setFigure(id, text, value) {
    const node = $(id);
    node.textContent = text;
    node.dataset.value = value === null || value === undefined ? "" : String(value);
    return node;
  }

  function emptyRow(tbody, columns, text) {
    const tr = document.createElement("tr");
    const td = cell(text);
    td.colSpan = columns;
    td.className = "empty";
    tr.append(td);
    tbody.replaceChildren(tr);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function api(path, params, signal) {
    const url = new URL(path, API_BASE);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${state.key}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "the receiver cannot be reached");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body?.error?.message ?? (response.statusText || "request failed");
      throw new ApiError(response.status, message, response.headers.get("Retry-After"));
    }
    return body;
  }

  // ---------------------------------------------------------------- alerts

  function showAlert(kind, text, status) {
    el.alert.textContent = text;
    el.alert.dataset.kind = kind;
    el.alert.dataset.status = status === undefined ? "" : String(status);
    el.alert.hidden = false;
  }

  function clearAlert() {
    el.alert.hidden = true;
    el.alert.textContent = "";
    delete el.alert.dataset.kind;
    delete el.alert.dataset.status;
  }

  function explain(error) {
    const detail = `${error.status ? `${error.status}: ` : ""}${error.message}`;
    switch (error.status) {
      case 401:
        return `The receiver rejected this key (${detail}). Enter a valid read key.`;
      case 403:
        return `This key may not read this organization's data (${detail}). ` +
          "Use a key with the read scope that has not been revoked.";
      case 429:
        return `Too many requests (${detail}). Retrying` +
          `${error.retryAfter ? ` after ${error.retryAfter} s` : ""}.`;
      case 503:
        return `The receiver is unavailable (${detail}). Retrying.`;
      case 0:
        return `Cannot load data: ${error.message}. Retrying.`;
      default:
        return `The receiver answered ${detail}.`;
    }
  }

  // ---------------------------------------------------------------- range

  function granularityFor(ms) {
    if (ms <= 6 * HOUR) return "minute"; // the API allows minutes up to 7 days
    if (ms <= 3 * DAY) return "hour";
    if (ms <= 90 * DAY) return "day";
    if (ms <= 730 * DAY) return "week";
    return "month";
  }

  function currentRange() {
    if (state.range === "custom" && state.custom) {
      const { from, to } = state.custom;
      return { from, to, granularity: granularityFor(to - from) };
    }
    const preset = RANGES[state.range] ?? RANGES["24h"];
    const to = new Date();
    return { from: new Date(to.getTime() - preset.ms), to, granularity: preset.granularity };
  }

  // ---------------------------------------------------------------- refresh cycle

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    if (!state.key || state.stopped || !el.autoRefresh.checked) return;
    state.timer = setTimeout(() => {
      // A hidden tab does not poll; it catches up when shown again.
      if (document.hidden) schedule();
      else refresh();
    }, REFRESH_MS);
  }

  /** The API's name of the breakdown: a dimension, or tag.<key>. */
  function groupKey() {
    return state.groupBy === "tag" ? `tag.${state.tagKey}` : state.groupBy;
  }

  function groupLabel() {
    return state.groupBy === "tag" ? `Tag ${state.tagKey}` : GROUP_LABELS[state.groupBy];
  }

  function filterParams() {
    return state.filter ? { [state.filter.key]: state.filter.value } : {};
  }

  function renderFilter() {
    el.filter.hidden = !state.filter;
    el.filterLabel.textContent = state.filter ? `${state.filter.key} = ${state.filter.value}` : "";
    el.filter.dataset.key = state.filter?.key ?? "";
    el.filter.dataset.value = state.filter?.value ?? "";
  }

  async function refresh() {
    if (!state.key) return;
    if (state.groupBy === "tag" && !TAG_KEY.test(state.tagKey)) {
      el.tagControl.hidden = false;
      showAlert("input", "Name the tag key to break down by (letters, digits, _ . : -).");
      return;
    }
    state.inflight?.abort();
    const controller = new AbortController();
    state.inflight = controller;
    clearTimeout(state.timer);
    const range = currentRange();
    const group = groupKey();
    const who = WHO.has(state.groupBy);
    const base = {
      from: range.from.toISOString(), to: range.to.toISOString(), ...filterParams(),
    };
    const timed = { ...base, granularity: range.granularity };
    const breakdown = who
      ? { ...base, group_by: group, order_by: "cost_usd", limit: String(TOP_GROUPS) }
      : { ...base, group_by: group };
    renderFilter();
    el.main.setAttribute("aria-busy", "true");
    try {
      const [summary, series, grouped, groups, top] = await Promise.all([
        api("aggregates", base, controller.signal),
        api("aggregates", timed, controller.signal),
        // Per bucket and group only for the few-valued breakdowns; a who-breakdown's chart
        // shows the total (one series of millions of users would say nothing).
        who ? null : api("aggregates", { ...timed, group_by: group }, controller.signal),
        api("aggregates", breakdown, controller.signal),
        api("top-traces", { ...base, limit: String(TOP_TRACES) }, controller.signal),
      ]);
      if (controller.signal.aborted) return;
      const groupSeries = grouped ?? {
        rows: series.rows.map((row) => ({ ...row, [group]: "All" })),
      };
      const ranked = rankGroups(groups.rows, group);
      renderSummary(summary, range);
      renderBreakdown(groups.rows, group, ranked);
      renderTopTraces(top.traces);
      await renderCharts({ series, groupSeries, groups, group, ranked, range });
      if (controller.signal.aborted) return;
      clearAlert();
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      document.body.dataset.state = "ready";
      const now = new Date();
      el.updated.replaceChildren("Updated ", timeElement(now, clockFormat.format(now)));
      el.updated.dataset.value = now.toISOString();
    } catch (error) {
      if (error.name === "AbortError") return;
      if (!(error instanceof ApiError)) {
        showAlert("error", `The dashboard failed to draw the data: ${error.message}`);
        document.body.dataset.state = "error";
        console.error(error);
        return;
      }
      showAlert(error.status === 401 || error.status === 403 ? "auth" : "error",
        explain(error), error.status);
      document.body.dataset.state = "error";
      if (error.status === 401 || error.status === 403) {
        // Polling with a rejected key only earns this address an auth throttle; and what
        // an old key showed should not stay on screen once it is revoked.
        state.stopped = true;
        clearData();
        showKeyForm(true);
      }
    } finally {
      if (state.inflight === controller) {
        state.inflight = null;
        el.main.removeAttribute("aria-busy");
        schedule();
      }
    }
  }

  function timeElement(date, text) {
    const node = document.createElement("time");
    node.dateTime = date.toISOString();
    node.textContent = text;
    return node;
  }

  /** Group names by cost (then calls), the order used in every chart and table. */
  function rankGroups(rows, key) {
    return [...rows]
      .sort((a, b) => Number(b.cost_usd ?? 0) - Number(a.cost_usd ?? 0) || b.calls - a.calls)
      .map((row) => groupName(row, key));
  }

  // ---------------------------------------------------------------- summary and tables

  // cost_breakdown_usd's lines, as a bill names them; zero lines are left out.
  const BREAKDOWN_LINES = [
    ["input", "Input"], ["cache_read", "Cached input"], ["cache_write", "Cache writes"],
    ["output", "Output"], ["modality", "Audio, image, video"], ["fees", "Tool fees"],
    ["other", "Other costs"],
  ];

  function renderCostLines(row) {
    const list = $("cost-breakdown");
    list.replaceChildren();
    const parts = row?.cost_breakdown_usd ?? null;
    for (const [key, label] of BREAKDOWN_LINES) {
      const value = parts?.[key];
      if (value === undefined || value === null || Number(value) === 0) continue;
      const term = document.createElement("dt");
      term.textContent = label;
      const amount = document.createElement("dd");
      amount.textContent = formatUsd(value);
      amount.title = exactUsd(value);
      amount.dataset.line = key;
      amount.dataset.value = value;
      list.append(term, amount);
    }
    const saved = row?.saved_by_caching_usd ?? null;
    const savedNote = $("saved-by-caching");
    savedNote.dataset.value = saved ?? "";
    savedNote.textContent = saved !== null && Number(saved) > 0
      ? `Saved by caching: ${formatUsd(saved)}` : "";
    const provided = row?.provided_cost_usd ?? null;
    const providedNote = $("provided-cost");
    providedNote.dataset.value = provided ?? "";
    providedNote.textContent = provided === null ? ""
      : `Reported by the calls themselves: ${formatUsd(provided)}`;
  }

  function renderSummary(summary, range) {
    const row = summary.rows[0] ?? null;
    const calls = row?.calls ?? 0;
    const errors = row?.errors ?? 0;
    el.summary.dataset.from = summary.from;
    el.summary.dataset.to = summary.to;
    el.summary.dataset.granularity = range.granularity;
    el.summary.dataset.groupBy = groupKey();

    if (row === null) {
      setFigure("total-cost", formatUsd("0"), "0");
      $("total-unpriced").textContent = "No calls in this range";
    } else {
      setFigure("total-cost", formatUsd(row.cost_usd), row.cost_usd);
      const unpriced = row.unpriced_calls;
      const calls = `${formatInt(unpriced)} unpriced call${unpriced === 1 ? "" : "s"}`;
      $("total-unpriced").textContent = !unpriced ? "All calls priced"
        : row.cost_usd === null ? `${calls} (no known price)` : `${calls} not included`;
      $("total-unpriced").dataset.value = String(unpriced);
    }
    renderCostLines(row);
    setFigure("total-calls", formatInt(calls), calls);
    $("total-errors").textContent = `${formatInt(errors)} error${errors === 1 ? "" : "s"}`;
    $("total-errors").dataset.value = String(errors);
    setFigure("total-tokens", formatInt(row?.total_tokens ?? 0), row?.total_tokens ?? 0);
    $("total-tokens-split").textContent = row
      ? `${formatInt(row.input_tokens)} in · ${formatInt(row.output_tokens)} out` : "";
    const rate = setFigure("error-rate", formatPercent(errors, calls), calls ? errors / calls : "");
    rate.dataset.errors = String(errors);
    rate.dataset.calls = String(calls);
    const latency = row?.latency_ms ?? {};
    $("latency-note").textContent = row
      ? `Latency p50 ${formatMs(latency.p50)} · p95 ${formatMs(latency.p95)}` : "";

    el.rangeLabel.textContent =
      `${formatTime(summary.from)} – ${formatTime(summary.to)} (per ${range.granularity}) ·`;
  }

  function renderBreakdown(rows, key, ranked) {
    const label = groupLabel();
    const who = WHO.has(state.groupBy);
    document.querySelectorAll(".group-label").forEach((node) => {
      node.textContent = who ? `${label.toLowerCase()} (top ${TOP_GROUPS} by cost)`
        : label.toLowerCase();
    });
    document.querySelector("#breakdown .group-label-col").textContent = label;
    if (!rows.length) {
      emptyRow(el.breakdown, 9, "No calls in this range");
      return;
    }
    const byName = new Map(rows.map((row) => [groupName(row, key), row]));
    el.breakdown.replaceChildren(...ranked.map((name) => {
      const row = byName.get(name);
      const tr = document.createElement("tr");
      tr.dataset.group = name;
      const th = document.createElement("th");
      th.scope = "row";
      if (who && row[key] !== null && row[key] !== undefined) {
        // Click-through: this user's (session's...) spend by model, and its costliest traces.
        const button = document.createElement("button");
        button.type = "button";
        button.className = "drill";
        button.dataset.key = key;
        button.dataset.value = row[key];
        button.textContent = name;
        button.title = `Only ${key} ${name}: its spend by model and its costliest traces`;
        th.append(button);
      } else {
        th.textContent = name;
      }
      tr.append(
        th,
        cell(formatInt(row.calls), { value: row.calls, numeric: true }),
        cell(formatInt(row.errors), { value: row.errors, numeric: true }),
        cell(formatInt(row.input_tokens), { value: row.input_tokens, numeric: true }),
        cell(formatInt(row.output_tokens), { value: row.output_tokens, numeric: true }),
        cell(formatInt(row.total_tokens), { value: row.total_tokens, numeric: true }),
        cell(formatUsd(row.cost_usd), {
          value: row.cost_usd, numeric: true, title: exactUsd(row.cost_usd),
        }),
        cell(formatInt(row.unpriced_calls), { value: row.unpriced_calls, numeric: true }),
        cell(formatMs(row.latency_ms?.p95), { value: row.latency_ms?.p95 ?? null, numeric: true }),
      );
      return tr;
    }));
  }

  function renderTopTraces(traces) {
    if (!traces.length) {
      emptyRow(el.topTraces, 6, "No priced traces in this range");
      return;
    }
    el.topTraces.replaceChildren(...traces.map((trace) => {
      const tr = document.createElement("tr");
      tr.dataset.traceId = trace.trace_id;
      const first = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "trace-link";
      button.dataset.traceId = trace.trace_id;
      button.setAttribute("aria-controls", "trace-panel");
      const shortId = trace.trace_id.slice(0, 12);
      // Non-LLM spans (often the root) are not stored: then the id is the trace's name.
      button.textContent = trace.root_name ?? `trace ${shortId}…`;
      button.title = `Show the spans of trace ${trace.trace_id}`;
      first.append(button);
      if (trace.root_name) {
        const id = document.createElement("code");
        id.className = "trace-id";
        id.textContent = shortId;
        id.title = trace.trace_id;
        first.append(" ", id);
      }
      tr.append(
        first,
        cell(formatTime(trace.started_at), { value: trace.started_at, title: trace.started_at }),
        cell(formatInt(trace.spans), { value: trace.spans, numeric: true }),
        cell(formatInt(trace.total_tokens), { value: trace.total_tokens, numeric: true }),
        cell(formatMs(trace.duration_ms), { value: trace.duration_ms, numeric: true }),
        cell(formatUsd(trace.cost_usd), {
          value: trace.cost_usd,
          numeric: true,
          title: trace.unpriced_calls
            ? `${trace.unpriced_calls} unpriced spans not included`
            : exactUsd(trace.cost_usd),
        }),
      );
      return tr;
    }));
  }

  // ---------------------------------------------------------------- charts

  const PLOT_CONFIG = {
    displaylogo: false,
    displayModeBar: "hover",
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };

  function layout(extra) {
    return {
      // Room above the plot for Plotly's toolbar, so it never covers the tallest bars.
      margin: { l: 64, r: 16, t: 36, b: 40 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, -apple-system, Segoe UI, sans-serif", size: 12, color: "#243040" },
      legend: { orientation: "h", x: 0, y: -0.18, yanchor: "top" },
      hoverlabel: { namelength: -1 },
      ...extra,
    };
  }

  function emptyLayout(extra) {
    return layout({
      ...extra,
      xaxis: { visible: false },
      yaxis: { visible: false },
      annotations: [{
        text: "No calls in this range", showarrow: false, xref: "paper", yref: "paper",
        x: 0.5, y: 0.5, font: { size: 14, color: "#6b7a8f" },
      }],
    });
  }

  /** The whole range, widened to whole buckets so the first and last bars are not cut. */
  function timeAxis(range, rows) {
    const width = BUCKET_MS[range.granularity];
    const starts = rows.map((row) => Date.parse(row.bucket));
    const from = Math.min(range.from.getTime(), ...starts);
    const to = Math.max(range.to.getTime(), ...starts.map((start) => start + width));
    return {
      type: "date",
      range: [plotlyDate(new Date(from)), plotlyDate(new Date(to))],
      gridcolor: "#e6eaf0",
      linecolor: "#c9d1dc",
    };
  }

  function colorOf(name, ranked) {
    const index = ranked.indexOf(name);
    return PALETTE[(index < 0 ? ranked.length : index) % PALETTE.length];
  }

  function costChart({ groupSeries, group, ranked, range }) {
    const rows = groupSeries.rows;
    if (!rows.length) return { data: [], layout: emptyLayout({}) };
    const width = BUCKET_MS[range.granularity];
    const byGroup = new Map(ranked.map((name) => [name, []]));
    for (const row of rows) {
      const name = groupName(row, group);
      if (!byGroup.has(name)) byGroup.set(name, []);
      byGroup.get(name).push(row);
    }
    // A group with no known price has no bars: it stays out of the legend too (the
    // totals and the breakdown table count its unpriced calls).
    const priced = [...byGroup].filter(([, points]) => points.some((row) => row.cost_usd !== null));
    const data = priced.map(([name, points]) => ({
      type: "bar",
      name: plotlyText(name),
      // Each bar spans its bucket: centred on the bucket's middle, 90% of its width.
      x: points.map((row) => plotlyDate(Date.parse(row.bucket) + width / 2)),
      // Float only for bar heights; the hover shows the API's exact decimal.
      y: points.map((row) => (row.cost_usd === null ? null : Number(row.cost_usd))),
      customdata: points.map((row) => [
        formatUsd(row.cost_usd), row.calls, row.unpriced_calls,
      ]),
      hovertemplate: "%{customdata[0]} · %{customdata[1]} calls" +
        " (%{customdata[2]} unpriced)<extra>%{fullData.name}</extra>",
      width: points.map(() => width * 0.9),
      marker: { color: colorOf(name, ranked) },
    }));
    return {
      data,
      layout: layout({
        barmode: "stack",
        hovermode: "closest",
        xaxis: timeAxis(range, rows),
        yaxis: { title: { text: "USD" }, tickprefix: "$", gridcolor: "#e6eaf0", rangemode: "tozero" },
      }),
    };
  }

  function tokenChart({ groups, group, ranked }) {
    const rows = groups.rows;
    if (!rows.length) return { data: [], layout: emptyLayout({}) };
    const byName = new Map(rows.map((row) => [groupName(row, group), row]));
    const names = ranked.map(plotlyText);
    const series = (label, field, color) => ({
      type: "bar",
      orientation: "h",
      name: label,
      y: names,
      x: ranked.map((name) => byName.get(name)[field]),
      customdata: ranked.map((name) => formatInt(byName.get(name).total_tokens)),
      hovertemplate: `%{x:,} ${label.toLowerCase()} of %{customdata} tokens<extra>%{y}</extra>`,
      marker: { color },
    });
    return {
      data: [
        series("Input", "input_tokens", "#3b6fd4"),
        series("Output", "output_tokens", "#e07b39"),
      ],
      layout: layout({
        barmode: "stack",
        hovermode: "closest",
        margin: { l: 140, r: 16, t: 36, b: 40 },
        legend: { orientation: "h", x: 0, y: -0.18, yanchor: "top", traceorder: "normal" },
        xaxis: { gridcolor: "#e6eaf0", rangemode: "tozero" },
        yaxis: { type: "category", autorange: "reversed", automargin: true },
      }),
    };
  }

  function latencyChart({ series, range }) {
    const rows = series.rows;
    if (!rows.length) return { data: [], layout: emptyLayout({}) };
    const width = BUCKET_MS[range.granularity];
    const x = rows.map((row) => plotlyDate(Date.parse(row.bucket) + width / 2));
    const line = (name, quantile, color, dash) => ({
      type: "scatter",
      mode: "lines+markers",
      name,
      x,
      y: rows.map((row) => row.latency_ms?.[quantile] ?? null),
      connectgaps: false,
      line: { color, dash, width: 2 },
      marker: { size: 5 },
      hovertemplate: "%{y:,.1f} ms<extra>" + name + "</extra>",
    });
    return {
      data: [line("p50", "p50", "#3a9e6f", "solid"), line("p95", "p95", "#c2415a", "dot")],
      layout: layout({
        hovermode: "x unified",
        xaxis: timeAxis(range, rows),
        yaxis: { title: { text: "ms" }, gridcolor: "#e6eaf0", rangemode: "tozero" },
      }),
    };
  }

  async function renderCharts(input) {
    if (typeof Plotly === "undefined") {
      throw new Error("the charting library (plotly.min.js) did not load");
    }
    const charts = [
      ["chart-cost", costChart(input)],
      ["chart-tokens", tokenChart(input)],
      ["chart-latency", latencyChart(input)],
    ];
    await Promise.all(charts.map(async ([id, figure]) => {
      const node = $(id);
      await Plotly.react(node, figure.data, figure.layout, PLOT_CONFIG);
      node.dataset.traces = String(figure.data.length);
      node.dataset.rendered = String(state.refreshes + 1);
    }));
  }

  function clearData() {
    for (const id of ["total-cost", "total-calls", "total-tokens", "error-rate"]) {
      setFigure(id, "–", null);
    }
    for (const id of ["total-unpriced", "total-errors", "total-tokens-split", "latency-note"]) {
      $(id).textContent = "";
    }
    el.breakdown.replaceChildren();
    el.topTraces.replaceChildren();
    if (typeof Plotly !== "undefined") {
      for (const id of ["chart-cost", "chart-tokens", "chart-latency"]) Plotly.purge($(id));
    }
    closeTrace();
    el.updated.textContent = "Not loaded yet";
    el.rangeLabel.textContent = "";
  }

  // ---------------------------------------------------------------- trace panel

  async function openTrace(traceId, opener) {
    state.traceRequest?.abort();
    const controller = new AbortController();
    state.traceRequest = controller;
    state.traceOpener = opener ?? null;
    el.tracePanel.hidden = false;
    el.tracePanel.dataset.traceId = traceId;
    el.tracePanel.dataset.state = "loading";
    el.traceTitle.textContent = `Trace ${traceId}`;
    el.traceSummary.textContent = "Loading spans…";
    el.traceSpans.replaceChildren();
    el.traceTitle.focus();
    try {
      const trace = await api(`traces/${encodeURIComponent(traceId)}`, {}, controller.signal);
      renderTrace(trace);
      el.tracePanel.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      el.tracePanel.dataset.state = "error";
      el.traceSummary.textContent = error instanceof ApiError
        ? explain(error) : `Cannot show this trace: ${error.message}`;
    }
  }

  function spanDepths(spans) {
    const parents = new Map(spans.map((span) => [span.span_id, span.parent_span_id]));
    const depth = (span) => {
      let level = 0;
      let parent = span.parent_span_id;
      while (parent && parents.has(parent) && level < 32) {
        level += 1;
        parent = parents.get(parent);
      }
      return level;
    };
    return new Map(spans.map((span) => [span.span_id, depth(span)]));
  }

  /** Where each span sits in the trace's time, as fractions of the whole (a waterfall). */
  function timeline(spans) {
    const starts = spans.map((span) => Date.parse(span.timestamp));
    const ends = spans.map((span, i) => starts[i] + Number(span.duration_ms ?? 0));
    const first = Math.min(...starts);
    const total = Math.max(...ends) - first || 1;
    return spans.map((span, i) => ({
      offset: (starts[i] - first) / total,
      width: (ends[i] - starts[i]) / total,
    }));
  }

  function timelineCell(position) {
    const td = document.createElement("td");
    td.className = "timeline";
    td.setAttribute("aria-hidden", "true"); // the Duration column says it in words
    const bar = document.createElement("span");
    bar.className = "timeline-bar";
    bar.style.setProperty("--offset", position.offset.toFixed(4));
    bar.style.setProperty("--width", position.width.toFixed(4));
    td.append(bar);
    return td;
  }

  // Why a span does or does not add to totals (the API's `counted`).
  const COUNTED = {
    true: ["counted", "A provider request: in every total"],
    rollup: ["roll-up", "Sums the usage of spans under it: not added again"],
    duplicate: ["duplicate", "Another span describes the same provider request"],
    false: ["—", "No usage"],
  };

  function renderTrace(trace) {
    const spans = trace.spans;
    const depths = spanDepths(spans);
    const positions = timeline(spans);
    const counted = spans.filter((span) => span.counted === true);
    const total = counted.reduce((sum, span) => sum + Number(span.cost_usd ?? 0), 0);
    el.traceSummary.textContent =
      `${spans.length} span${spans.length === 1 ? "" : "s"}, ${counted.length} counted ` +
      `(${formatUsd(counted.some((span) => span.cost_usd !== null) ? total : null)}), ` +
      `started ${formatTime(spans[0]?.timestamp)}`;
    el.traceSpans.replaceChildren(...spans.map((span, index) => {
      const tr = document.createElement("tr");
      tr.dataset.spanId = span.span_id;
      const status = String(span.status ?? "UNSET");
      const failed = status === "ERROR" || Boolean(span.error_type);
      if (failed) tr.classList.add("error");
      if (span.counted !== true) tr.classList.add("not-counted");
      const [countedText, countedTitle] = COUNTED[String(span.counted)] ?? COUNTED.false;
      const name = document.createElement("th");
      name.scope = "row";
      name.className = "span-name";
      name.style.setProperty("--depth", String(depths.get(span.span_id) ?? 0));
      name.textContent = span.name ?? "(unnamed)";
      name.title = `span ${span.span_id} · ${formatTime(span.timestamp)}`;
      const model = span.model ?? span.request_model ?? "";
      const provider = span.provider ? ` ${span.provider}` : "";
      // OTel's UNSET means the instrumentation saw no error: to a reader, that is "ok".
      const statusText = failed ? `error${span.error_type ? `: ${span.error_type}` : ""}` : "ok";
      tr.append(
        name,
        cell(model || "—", { value: model, title: provider ? `provider${provider}` : "" }),
        cell(statusText, { value: status, title: `span status ${status}` }),
        cell(formatInt(span.input_tokens), { value: span.input_tokens, numeric: true }),
        cell(formatInt(span.output_tokens), { value: span.output_tokens, numeric: true }),
        cell(formatMs(span.duration_ms), { value: span.duration_ms, numeric: true }),
        cell(formatUsd(span.cost_usd), {
          value: span.cost_usd,
          numeric: true,
          title: span.cost_usd === null && model
            ? "no known price for this model"
            : exactUsd(span.cost_usd),
        }),
        cell(countedText, { value: String(span.counted), title: countedTitle }),
        timelineCell(positions[index]),
      );
      return tr;
    }));
  }

  function closeTrace() {
    state.traceRequest?.abort();
    state.traceRequest = null;
    if (el.tracePanel.hidden) return;
    el.tracePanel.hidden = true;
    delete el.tracePanel.dataset.traceId;
    delete el.tracePanel.dataset.state;
    if (state.traceOpener?.isConnected) state.traceOpener.focus();
    state.traceOpener = null;
  }

  // ---------------------------------------------------------------- key handling

  function readStoredKey() {
    try {
      return localStorage.getItem(KEY_STORAGE);
    } catch {
      return null; // storage disabled: the key lives only for this page
    }
  }

  function showKeyForm(visible) {
    el.keyForm.hidden = !visible;
    el.keyStatus.hidden = visible || !state.key;
    if (state.key) el.keyHint.textContent = `aether_…${state.key.slice(-4)}`;
    if (visible) el.keyInput.focus();
  }

  function useKey(key) {
    state.key = key;
    state.stopped = false;
    try {
      localStorage.setItem(KEY_STORAGE, key);
    } catch {
      // Private mode or storage full: keep working with the key in memory.
    }
    showKeyForm(false);
    clearAlert();
    document.body.dataset.state = "loading";
    refresh();
  }

  function forgetKey() {
    try {
      localStorage.removeItem(KEY_STORAGE);
    } catch {
      // nothing stored
    }
    state.key = null;
    state.inflight?.abort();
    clearTimeout(state.timer);
    clearData();
    clearAlert();
    document.body.dataset.state = "nokey";
    showKeyForm(true);
  }

  // ---------------------------------------------------------------- view in the URL

  /** The range and breakdown live in the URL fragment, so a view can be bookmarked or
   *  shared (never the key: the fragment is not sent to servers, but it is shown). */
  function saveView() {
    const view = new URLSearchParams({ range: state.range, group: state.groupBy });
    if (state.groupBy === "tag") view.set("tag", state.tagKey);
    if (state.filter) {
      view.set("fkey", state.filter.key);
      view.set("fvalue", state.filter.value);
    }
    if (state.range === "custom" && state.custom) {
      view.set("from", state.custom.from.toISOString());
      view.set("to", state.custom.to.toISOString());
    }
    history.replaceState(null, "", `#${view}`);
  }

  function loadView() {
    const view = new URLSearchParams(location.hash.slice(1));
    const group = view.get("group");
    if (group && group in GROUP_LABELS) state.groupBy = group;
    state.tagKey = view.get("tag") ?? "";
    const filterKey = view.get("fkey");
    const filterValue = view.get("fvalue");
    if (filterKey && filterValue !== null) state.filter = { key: filterKey, value: filterValue };
    const range = view.get("range");
    if (range && range in RANGES) state.range = range;
    if (range === "custom") {
      const from = new Date(view.get("from") ?? "");
      const to = new Date(view.get("to") ?? "");
      if (!Number.isNaN(from.getTime()) && !Number.isNaN(to.getTime()) && from < to) {
        state.range = "custom";
        state.custom = { from, to };
        el.customFrom.value = toLocalInput(from);
        el.customTo.value = toLocalInput(to);
        el.customRange.hidden = false;
      }
    }
    el.range.value = state.range;
    el.groupBy.value = state.groupBy;
    el.tagKey.value = state.tagKey;
    el.tagControl.hidden = state.groupBy !== "tag";
  }

  // ---------------------------------------------------------------- wiring

  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = el.keyInput.value.trim();
    if (!key) return;
    el.keyInput.value = "";
    useKey(key);
  });
  el.changeKey.addEventListener("click", () => showKeyForm(true));
  el.forgetKey.addEventListener("click", forgetKey);

  el.range.addEventListener("change", () => {
    const custom = el.range.value === "custom";
    el.customRange.hidden = !custom;
    if (custom) {
      const { from, to } = state.custom ?? currentRange();
      el.customFrom.value = toLocalInput(from);
      el.customTo.value = toLocalInput(to);
      el.customFrom.focus();
      return; // applied with the Apply button
    }
    state.range = el.range.value;
    saveView();
    refresh();
  });

  el.applyCustom.addEventListener("click", () => {
    const from = new Date(el.customFrom.value);
    const to = new Date(el.customTo.value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
      showAlert("input", "Choose a custom range whose start is before its end.");
      return;
    }
    state.range = "custom";
    state.custom = { from, to };
    saveView();
    refresh();
  });

  el.groupBy.addEventListener("change", () => {
    state.groupBy = el.groupBy.value;
    el.tagControl.hidden = state.groupBy !== "tag";
    if (state.groupBy === "tag" && !state.tagKey) {
      el.tagKey.focus();
      return; // applied with the Show button
    }
    saveView();
    refresh();
  });

  el.applyTag.addEventListener("click", () => {
    state.tagKey = el.tagKey.value.trim();
    saveView();
    refresh();
  });

  el.breakdown.addEventListener("click", (event) => {
    const button = event.target.closest("button.drill");
    if (!button) return;
    state.filter = { key: button.dataset.key, value: button.dataset.value };
    state.groupBy = "model";
    el.groupBy.value = "model";
    el.tagControl.hidden = true;
    saveView();
    refresh();
  });

  el.clearFilter.addEventListener("click", () => {
    state.filter = null;
    saveView();
    refresh();
  });

  el.autoRefresh.addEventListener("change", () => schedule());
  el.refreshNow.addEventListener("click", () => {
    state.stopped = false;
    refresh();
  });

  el.topTraces.addEventListener("click", (event) => {
    const button = event.target.closest("button.trace-link");
    if (button) openTrace(button.dataset.traceId, button);
  });
  el.closeTrace.addEventListener("click", closeTrace);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !el.tracePanel.hidden) closeTrace();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.key && !state.stopped && !state.inflight &&
        el.autoRefresh.checked) {
      refresh();
    }
  });

  loadView();
  const stored = readStoredKey();
  if (stored) {
    useKey(stored);
  } else {
    document.body.dataset.state = "nokey";
    showKeyForm(true);
  }
})();
