// The Monitoring.Stream page: reads only the service's documented JSON endpoints (docs/http-api.md)
// and draws them with uPlot (vendor/, copied from npm by web/build.sh). No framework, no build step
// beyond the copy, nothing fetched from anywhere but the service that served this page.

const REFRESH_MS = 5000;
const RETRY_MS = 2000;
const METRICS_REFRESH_MS = 30000;
const REQUEST_TIMEOUT_MS = 4000;

/** Span choices: seconds, and the bucket size the charts ask for (about 30 to 60 buckets). */
const SPANS = {
  "5m": { seconds: 300, step: "10s", stepSeconds: 10 },
  "15m": { seconds: 900, step: "30s", stepSeconds: 30 },
  "1h": { seconds: 3600, step: "1m", stepSeconds: 60 },
  "6h": { seconds: 21600, step: "10m", stepSeconds: 600 },
  "24h": { seconds: 86400, step: "30m", stepSeconds: 1800 },
};

const state = {
  span: "1h",
  paused: false,
  connected: null,
  metrics: [],
  metricsLoadedAt: 0,
  metric: "",
  labelName: "",
  labelValue: "",
  history: [],
  live: [],
  historyKey: "",
  refreshes: 0,
  timer: 0,
};

const $ = (selector, root = document) => root.querySelector(selector);

// ---------- numbers with units ----------

const plain = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const sig3 = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

function scaled(v, units) {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${sig3.format(x)} ${units[i]}`;
}

function seconds(v) {
  const a = Math.abs(v);
  if (a === 0) return "0 s";
  if (a < 1e-3) return `${sig3.format(v * 1e6)} µs`;
  if (a < 1) return `${sig3.format(v * 1e3)} ms`;
  if (a < 120) return `${sig3.format(v)} s`;
  return `${sig3.format(v / 60)} min`;
}

function count(v) {
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? plain.format(v) : sig3.format(v);
}

/** Formats a value for a unit name; the unit is always written out. */
export function format(v, unit) {
  if (!finite(v)) return "–";
  switch (unit) {
    case "percent": return `${sig3.format(v)} %`;
    case "bytes": return scaled(v, ["B", "KiB", "MiB", "GiB", "TiB"]);
    case "seconds": return seconds(v);
    case "perSecond": return `${count(v)} points/s`;
    case "requestsPerSecond": return `${sig3.format(v)} req/s`;
    case "points": return `${count(v)} ${v === 1 ? "point" : "points"}`;
    case "requests": return `${count(v)} ${v === 1 ? "request" : "requests"}`;
    case "windows": return `${count(v)} ${v === 1 ? "window" : "windows"}`;
    case "series": return `${count(v)} series`;
    case "values": return `${count(v)} ${v === 1 ? "value" : "values"}`;
    case "ratio": return `${sig3.format(v * 100)} %`;
    default: return unit ? `${count(v)} ${unit}` : count(v);
  }
}

/** An axis tick: short, with the unit only where it scales (bytes, durations); the axis label names the rest. */
function tick(v, unit) {
  if (unit === "bytes" || unit === "seconds" || unit === "percent" || unit === "ratio") return format(v, unit);
  return Math.abs(v) >= 10000 ? `${sig3.format(v / 1000)}k` : sig3.format(v);
}

/** The unit a metric's values carry, from the Prometheus naming convention of its suffix. */
function unitOf(metric) {
  if (/_seconds?$/.test(metric) || /_duration$/.test(metric)) return "seconds";
  if (/_bytes$/.test(metric)) return "bytes";
  if (/_percent$/.test(metric)) return "percent";
  if (/_ratio$/.test(metric)) return "ratio";
  if (/_points?(_total)?$/.test(metric)) return "points";
  if (/_requests?(_total)?$/.test(metric)) return "requests";
  return "";
}

function unitLabel(unit) {
  return { percent: "%", bytes: "bytes", seconds: "duration", ratio: "%", points: "points", requests: "requests" }[unit] ?? "value";
}

function path(obj, dotted) {
  return dotted.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function setValue(el, v, unit) {
  el.textContent = format(v, unit);
  el.dataset.value = finite(v) ? String(v) : "";
}

// ---------- talking to the service ----------

class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}${body ? `: ${body}` : ""}`);
    this.status = status;
  }
}

async function getJson(url) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" }, signal: abort.signal });
    if (!response.ok) {
      let detail = "";
      try {
        const text = await response.text();
        try {
          const problem = JSON.parse(text);
          detail = problem.detail ?? problem.title ?? problem.error ?? text;
        } catch {
          detail = text;
        }
      } catch {
        detail = "";
      }
      throw new HttpError(response.status, String(detail).slice(0, 200));
    }
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

function setConnection(connected, text) {
  const el = $("#connection");
  state.connected = connected;
  el.dataset.state = connected ? "connected" : "disconnected";
  el.textContent = text;
  document.body.classList.toggle("disconnected", !connected);
}

// ---------- the dashboard ----------

/** The dashboard's current figures at each refresh: rates from the since-start totals, levels from the host's latest samples. */
function recordLive(d) {
  const t = Date.parse(d.generatedAt) / 1000;
  if (!Number.isFinite(t)) return;
  const e = d.engine ?? {};
  const sample = {
    t, accepted: e.accepted, late: e.late, dropped: e.dropped, rejected: e.rejected,
    cpu: d.system?.cpuPercent?.last, processCpu: d.system?.processCpuPercent?.last, memory: d.system?.memoryUsedPercent?.last,
  };
  const previous = state.live[state.live.length - 1];
  const rate = key => {
    // A total that went down means the service restarted: no rate across that gap.
    if (!previous || !(t > previous.t) || !finite(sample[key]) || !finite(previous[key]) || sample[key] < previous[key]) return null;
    return (sample[key] - previous[key]) / (t - previous.t);
  };
  sample.acceptedRate = rate("accepted");
  sample.lateRate = rate("late");
  sample.droppedRate = rate("dropped");
  sample.rejectedRate = rate("rejected");
  if (previous && !(t > previous.t)) return;
  state.live.push(sample);
  state.live = state.live.slice(-360);
}

function drawLive() {
  const rows = state.live;
  const xs = rows.map(r => r.t);
  const col = key => rows.map(r => (finite(r[key]) ? r[key] : null));
  const fmt = unit => (u, v) => format(v, unit);
  plotInto("chart-ingest", "ingest", [
    { label: "accepted", stroke: "#1a7f37", width: 2, value: fmt("perSecond") },
    { label: "late", stroke: "#9a6700", value: fmt("perSecond") },
    { label: "dropped", stroke: "#cf222e", value: fmt("perSecond") },
    { label: "rejected", stroke: "#8250df", value: fmt("perSecond") },
  ], [xs, col("acceptedRate"), col("lateRate"), col("droppedRate"), col("rejectedRate")], "perSecond", "points/s");
  plotInto("chart-host", "host", [
    { label: "CPU (system)", stroke: "#0969da", width: 2, value: fmt("percent") },
    { label: "CPU (process)", stroke: "#1a7f37", value: fmt("percent") },
    { label: "memory", stroke: "#9a6700", value: fmt("percent") },
  ], [xs, col("cpu"), col("processCpu"), col("memory")], "percent", "%");
  for (const [id, key, unit, what] of [["chart-ingest", "acceptedRate", "perSecond", "accepted"], ["chart-host", "cpu", "percent", "CPU"]]) {
    const figure = document.getElementById(id);
    const values = col(key);
    const last = lastFinite(values);
    const out = $(".latest", figure);
    out.textContent = last === null ? "after the next refresh" : `latest ${what}: ${format(values[last], unit)}`;
    out.dataset.value = last === null ? "" : String(values[last]);
    figure.setAttribute("aria-label", `${$(".title", figure).textContent}, ${out.textContent}`);
  }
}

function renderDashboard(d) {
  recordLive(d);
  drawLive();
  const status = d.health?.status ?? "Unknown";
  const badge = $("#health-badge");
  badge.textContent = status;
  badge.dataset.status = status;
  document.title = `${status} · Monitoring.Stream`;

  for (const el of document.querySelectorAll("[data-field]")) {
    setValue(el, path(d, el.dataset.field), el.dataset.unit);
  }

  const checks = d.health?.checks ?? [];
  fillRows("#checks", checks.map(c => [
    text(c.name),
    stateCell(c.status),
    text(c.error ? `${c.description ?? ""} ${c.error}`.trim() : c.description ?? ""),
    text(format(c.durationMs / 1000, "seconds"), "num"),
  ]), 4, d.health ? "no checks registered" : "no health checks on this service");

  fillRows("#sinks", (d.engine?.sinks ?? []).map(s => [
    text(s.name),
    stateCell(s.state),
    text(count(s.queueDepth), "num", s.queueDepth),
    text(count(s.batchesWritten), "num"),
    text(count(s.batchesLost), "num"),
    text(count(s.errors), "num"),
    text(s.lastError ?? ""),
  ]), 7, "no sinks");

  fillRows("#disks", (d.system?.disks ?? []).map(k => [
    text(k.mount),
    text(format(k.usedPercent?.last, "percent"), "num"),
    text(format(k.usedPercent?.max, "percent"), "num"),
  ]), 3, "no disk sampled in the span");

  const codes = Object.entries(d.requests?.byStatusCode ?? {}).sort(([a], [b]) => a.localeCompare(b));
  fillRows("#status-codes", codes.map(([code, n]) => [text(code), text(format(n, "requests"), "num", n)]), 2, "no requests in the span");

  const generated = new Date(d.generatedAt);
  const updated = $("#updated");
  updated.dateTime = d.generatedAt;
  updated.textContent = Number.isNaN(generated.getTime()) ? "–" : generated.toLocaleTimeString("en-GB", { hour12: false });
}

function text(value, className, raw) {
  const td = document.createElement("td");
  td.textContent = value;
  if (className) td.className = className;
  if (raw !== undefined) td.dataset.value = String(raw);
  return td;
}

function stateCell(value) {
  const td = text(value ?? "Unknown", "state");
  td.dataset.state = value ?? "Unknown";
  return td;
}

function fillRows(tableSelector, rows, columns, empty) {
  const body = $(`${tableSelector} tbody`);
  const fragment = document.createDocumentFragment();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = text(empty);
    td.colSpan = columns;
    tr.append(td);
    fragment.append(tr);
  }

  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    fragment.append(tr);
  }

  body.replaceChildren(fragment);
}

// ---------- the metric list ----------

/** Accepts the documented list and tolerates an object wrapper: [{ name, labels }] with labels as names or as { name: [values] }. */
function normaliseMetrics(json) {
  const list = Array.isArray(json) ? json : json.metrics ?? [];
  return list.map(m => {
    if (typeof m === "string") return { name: m, labels: {} };
    const labels = {};
    if (Array.isArray(m.labels)) {
      for (const l of m.labels) {
        if (typeof l === "string") labels[l] = [];
        else if (l && l.name) labels[l.name] = l.values ?? [];
      }
    } else if (m.labels && typeof m.labels === "object") {
      Object.assign(labels, m.labels);
    }

    return { name: m.name, labels };
  }).sort((a, b) => a.name.localeCompare(b.name));
}

async function loadMetrics() {
  state.metrics = normaliseMetrics(await getJson("api/v1/metrics"));
  state.metricsLoadedAt = Date.now();
  renderMetricList();
}

function renderMetricList() {
  const list = $("#metric-list");
  const query = $("#metric-search").value.trim().toLowerCase();
  const shown = state.metrics.filter(m => m.name.toLowerCase().includes(query));
  const options = shown.map(m => {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = m.name;
    o.selected = m.name === state.metric;
    return o;
  });
  list.replaceChildren(...options);
  if (!state.metric && shown.length > 0) {
    chooseMetric(preferredMetric(shown));
  }
}

function preferredMetric(metrics) {
  return (metrics.find(m => m.name === "demo_http_request_duration_seconds")
    ?? metrics.find(m => m.name.endsWith("_seconds"))
    ?? metrics[0]).name;
}

function chooseMetric(name) {
  if (!name || name === state.metric) return;
  state.metric = name;
  $("#metric-list").value = name;
  const labelName = $("#label-name");
  const labels = Object.keys(state.metrics.find(m => m.name === name)?.labels ?? {}).sort();
  const options = [new Option("(no filter)", "")].concat(labels.map(l => new Option(l, l)));
  labelName.replaceChildren(...options);
  state.labelName = "";
  state.labelValue = "";
  $("#label-value").value = "";
  fillLabelValues();
  refreshStatistics().catch(() => setConnection(false, "disconnected — retrying"));
}

/** Offers the values the chosen label has in the span, from a statistics query grouped by it. */
async function fillLabelValues() {
  const name = $("#label-name").value;
  const list = $("#label-values");
  list.replaceChildren();
  if (!name || !state.metric) return;
  const q = new URLSearchParams({ metric: state.metric, window: state.span, groupBy: name });
  try {
    const json = await getJson(`api/v1/statistics?${q}`);
    const values = [...new Set((json.groups ?? []).map(g => g.labels?.[name]).filter(v => v !== undefined))].sort();
    list.replaceChildren(...values.map(v => new Option(v, v)));
  } catch {
    // The drop-down is a convenience: typing a value still works, and the refresh loop reports a lost service.
  }
}

// ---------- statistics over time ----------

function statisticsUrl() {
  const span = SPANS[state.span];
  const q = new URLSearchParams({ metric: state.metric, window: state.span, step: span.step });
  if (state.labelName && state.labelValue) q.set(`label.${state.labelName}`, state.labelValue);
  return `api/v1/statistics?${q}`;
}

/** One set of statistics in the page's names (the API's StatisticsData; the dashboard's StatSummary names also read). */
function canonical(s) {
  if (!s) return null;
  return {
    count: s.count, mean: s.mean, min: s.min, max: s.max, last: s.last,
    stdDev: s.stdDev ?? s.stdDevPopulation, p50: s.p50 ?? s.median, p90: s.p90, p95: s.p95, p99: s.p99,
  };
}

/** Reads the documented answer: whole-span statistics and, when the service gives them (step=), buckets over time. */
function normaliseStatistics(json) {
  const summary = canonical(json?.statistics);
  const buckets = Array.isArray(json?.series) ? json.series.map(b => ({ t: bucketTime(b), s: canonical(b.statistics) })) : null;
  return { summary, buckets };
}

function bucketTime(b) {
  const t = b.to ?? b.from;
  return typeof t === "number" ? (t > 1e11 ? t / 1000 : t) : Date.parse(t) / 1000;
}

const charts = {};

function chartSeries(kind, unit) {
  const fmt = (u, v) => format(v, unit);
  switch (kind) {
    case "count": return [{ label: "count", stroke: "#0969da", fill: "rgba(9,105,218,.12)", value: (u, v) => format(v, "values") }];
    case "mean": return [
      { label: "mean", stroke: "#1a7f37", width: 2, value: fmt },
      { label: "mean + std-dev", stroke: "#8c959f", dash: [4, 4], value: fmt },
      { label: "mean − std-dev", stroke: "#8c959f", dash: [4, 4], value: fmt },
    ];
    default: return [
      { label: "p50", stroke: "#0969da", value: fmt },
      { label: "p90", stroke: "#9a6700", value: fmt },
      { label: "p99", stroke: "#cf222e", width: 2, value: fmt },
    ];
  }
}

/** Draws data into the figure's plot, creating the uPlot chart when its kind (key) changed; the y axis is labelled with its unit. */
function plotInto(id, key, series, data, yUnit, yLabel) {
  const plot = $(".plot", document.getElementById(id));
  let chart = charts[id];
  if (!chart || chart.key !== key) {
    chart?.plot.destroy();
    const opts = {
      width: Math.max(200, plot.clientWidth || 300),
      height: 200,
      title: "",
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : 1] } },
      axes: [
        { label: "time (local)", labelSize: 18, size: 36 },
        { label: yLabel, labelSize: 18, size: 76, values: (u, splits) => splits.map(v => tick(v, yUnit)) },
      ],
      series: [{ label: "time" }, ...series],
      legend: { live: true },
    };
    chart = charts[id] = { key, plot: new uPlot(opts, data, plot) };
    plot.querySelector(".u-wrap")?.setAttribute("aria-hidden", "true");
  } else {
    chart.plot.setData(data);
  }
}

function lastFinite(values) {
  for (let i = values.length - 1; i >= 0; i--) {
    if (finite(values[i])) return i;
  }

  return null;
}

function drawChart(id, kind, unit, data) {
  const figure = document.getElementById(id);
  plotInto(id, `${kind}|${unit}|${state.metric}|${state.span}`, chartSeries(kind, unit), data,
    kind === "count" ? "" : unit, kind === "count" ? "values" : unitLabel(unit));
  const series = data[kind === "quantiles" ? 3 : 1];
  const last = lastFinite(series);

  const out = $(".latest", figure);
  const what = kind === "quantiles" ? "p99" : kind;
  if (last === null) {
    out.textContent = "no data";
    out.dataset.value = "";
    out.dataset.time = "";
  } else {
    out.textContent = `latest ${what}: ${format(series[last], kind === "count" ? "values" : unit)}`;
    out.dataset.value = String(series[last]);
    out.dataset.time = String(data[0][last]);
  }

  figure.dataset.points = String(data[0].length);
  figure.setAttribute("aria-label", `${$(".title", figure).textContent} of ${state.metric}, ${out.textContent}`);
}

/** Chart titles say what a point is: a bucket of the span, or the whole span as seen at one refresh. */
function setChartTitles(bucketed) {
  const titles = bucketed
    ? { "chart-count": "Count per bucket", "chart-mean": "Mean and ± std-dev per bucket", "chart-quantiles": "p50 / p90 / p99 per bucket" }
    : { "chart-count": "Count in span, per refresh", "chart-mean": "Mean and ± std-dev in span, per refresh", "chart-quantiles": "p50 / p90 / p99 in span, per refresh" };
  for (const [id, title] of Object.entries(titles)) {
    $(".title", document.getElementById(id)).textContent = title;
  }
}

function renderStatistics(json) {
  const { summary, buckets } = normaliseStatistics(json);
  const unit = unitOf(state.metric);
  for (const el of document.querySelectorAll("#explorer-summary [data-stat]")) {
    setValue(el, summary?.[el.dataset.stat], el.dataset.unit ?? unit);
  }

  let rows;
  const status = $("#explorer-status");
  const filter = state.labelName && state.labelValue ? ` where ${state.labelName}="${state.labelValue}"` : "";
  setChartTitles(Boolean(buckets));
  if (buckets) {
    rows = buckets;
    status.textContent = `${state.metric}${filter}, last ${$("#span").selectedOptions[0].textContent} in buckets of ${SPANS[state.span].step}.`;
  } else {
    // The service answered one figure for the whole span: chart what this page has polled since it opened.
    const key = `${state.metric}|${state.span}|${filter}`;
    if (state.historyKey !== key) {
      state.historyKey = key;
      state.history = [];
    }

    if (summary) state.history.push({ t: Date.now() / 1000, s: summary });
    state.history = state.history.slice(-720);
    rows = state.history;
    status.textContent = `${state.metric}${filter}, last ${$("#span").selectedOptions[0].textContent}; the charts show each refresh since this page opened.`;
  }

  if (!summary || summary.count === 0) {
    status.textContent = `No values of ${state.metric}${filter} in the last ${$("#span").selectedOptions[0].textContent}.`;
  }

  const xs = rows.map(r => r.t);
  const col = f => rows.map(r => (finite(f(r.s)) ? f(r.s) : null));
  drawChart("chart-count", "count", unit, [xs, col(s => s?.count)]);
  drawChart("chart-mean", "mean", unit, [xs, col(s => s?.mean), col(s => s?.mean + s?.stdDev), col(s => s?.mean - s?.stdDev)]);
  drawChart("chart-quantiles", "quantiles", unit, [xs, col(s => s?.p50), col(s => s?.p90), col(s => s?.p99)]);
  // What each chart shows, for a reader of the DOM (and the browser tests): metric, span, and the answer's time.
  for (const figure of document.querySelectorAll("#explorer .chart")) {
    figure.dataset.metric = state.metric;
    figure.dataset.span = state.span;
    figure.dataset.asOf = json?.to ?? "";
  }
}

async function refreshStatistics() {
  if (!state.metric) return;
  const requested = statisticsUrl();
  try {
    const json = await getJson(requested);
    if (requested === statisticsUrl()) renderStatistics(json);
  } catch (e) {
    if (e instanceof HttpError) {
      $("#explorer-status").textContent = `The service refused the query (${e.message}).`;
    } else {
      throw e;
    }
  }
}

// ---------- the refresh loop ----------

async function refresh() {
  try {
    const dashboard = await getJson(`api/v1/dashboard?window=${state.span}`);
    renderDashboard(dashboard);
    if (Date.now() - state.metricsLoadedAt > METRICS_REFRESH_MS || state.connected === false) {
      await loadMetrics();
    }

    await refreshStatistics();
    setConnection(true, "connected");
  } catch (e) {
    if (e instanceof HttpError) {
      setConnection(true, `service error (${e.message})`);
    } else {
      setConnection(false, "disconnected — retrying");
    }
  }

  state.refreshes++;
  document.body.dataset.refreshes = String(state.refreshes);
}

function schedule(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(loop, delay);
}

async function loop() {
  if (state.paused) return;
  await refresh();
  if (!state.paused) schedule(state.connected === false ? RETRY_MS : REFRESH_MS);
}

// ---------- controls ----------

function onResize() {
  for (const [id, chart] of Object.entries(charts)) {
    const plot = $(".plot", document.getElementById(id));
    chart.plot.setSize({ width: Math.max(200, plot.clientWidth), height: 200 });
  }
}

function init() {
  $("#interval").textContent = String(REFRESH_MS / 1000);
  $("#span").addEventListener("change", e => {
    state.span = e.target.value;
    schedule(0);
  });
  $("#pause").addEventListener("click", e => {
    state.paused = !state.paused;
    e.target.setAttribute("aria-pressed", String(state.paused));
    e.target.textContent = state.paused ? "Resume refresh" : "Pause refresh";
    if (state.paused) clearTimeout(state.timer);
    else schedule(0);
  });
  $("#metric-search").addEventListener("input", renderMetricList);
  $("#metric-search").addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === "ArrowDown") {
      const list = $("#metric-list");
      if (list.options.length > 0) {
        e.preventDefault();
        if (list.selectedIndex < 0) list.selectedIndex = 0;
        list.focus();
        chooseMetric(list.value);
      }
    }
  });
  $("#metric-list").addEventListener("change", e => chooseMetric(e.target.value));
  $("#label-name").addEventListener("change", fillLabelValues);
  const apply = () => {
    state.labelName = $("#label-name").value;
    state.labelValue = $("#label-value").value.trim();
    refreshStatistics().catch(() => setConnection(false, "disconnected — retrying"));
  };
  $("#apply-filter").addEventListener("click", apply);
  $("#label-value").addEventListener("keydown", e => {
    if (e.key === "Enter") apply();
  });
  new ResizeObserver(onResize).observe($("main"));
  schedule(0);
}

init();
