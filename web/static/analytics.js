// Analytics pages: the series chart (uPlot) and the live view (SSE click feed moving the counters
// and the chart). Data comes from data-* attributes the server rendered; no inline script (CSP).
import uPlot from "./vendor/uplot/uPlot.esm.js";

const STEP = { hour: 3600, day: 86400 };
const numberFormat = new Intl.NumberFormat();

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function drawChart(el) {
  const series = JSON.parse(el.dataset.series);
  const data = [series.x.slice(), series.clicks.slice(), series.visitors.slice()];
  const primary = cssVar("--primary", "#3b3fd8");
  const muted = cssVar("--muted", "#57606a");
  const width = () => Math.max(280, el.clientWidth);
  const opts = {
    width: width(),
    height: 260,
    legend: { live: false },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), series.tz),
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max * 1.15)] } },
    axes: [
      { stroke: muted, grid: { stroke: "#e6e9ee" } },
      { stroke: muted, grid: { stroke: "#e6e9ee" }, values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? numberFormat.format(t) : "")) },
    ],
    series: [
      { label: series.interval === "hour" ? "Hour" : "Day" },
      { label: "Clicks", stroke: primary, width: 2, fill: "rgba(59, 63, 216, 0.12)", points: { show: data[0].length < 60 } },
      { label: "Unique visitors", stroke: "#0f766e", width: 2, dash: [6, 4], points: { show: false } },
    ],
  };
  el.textContent = "";
  const plot = new uPlot(opts, data, el);
  new ResizeObserver(() => plot.setSize({ width: width(), height: 260 })).observe(el);
  return {
    // A live click: count it in its bucket, adding (zero-filled) buckets when time moved past the last.
    add(ts, unique) {
      const xs = data[0];
      if (!xs.length || ts < xs[0]) return;
      const step = STEP[series.interval];
      while (ts >= xs[xs.length - 1] + step) {
        xs.push(xs[xs.length - 1] + step);
        data[1].push(0);
        data[2].push(0);
      }
      let i = xs.length - 1;
      while (i > 0 && xs[i] > ts) i -= 1;
      data[1][i] += 1;
      if (unique) data[2][i] += 1;
      plot.setData(data);
    },
  };
}

function bump(name, by = 1) {
  for (const el of document.querySelectorAll(`[data-counter="${name}"]`)) {
    const current = Number(el.textContent.replace(/[^0-9]/g, "")) || 0;
    el.textContent = numberFormat.format(current + by);
    el.classList.add("bumped");
    setTimeout(() => el.classList.remove("bumped"), 700);
  }
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function feedItem(click, timeFormat) {
  const li = document.createElement("li");
  li.className = "new";
  li.dataset.eventId = click.event_id;
  const time = document.createElement("time");
  time.dateTime = new Date(click.ts * 1000).toISOString();
  time.textContent = timeFormat.format(new Date(click.ts * 1000));
  const place = [click.city, click.country_code].filter(Boolean).join(", ") || "Unknown place";
  const device = [click.device_type, click.browser, click.os].filter(Boolean).join(" · ") || "Unknown device";
  const what = span("what", `/${click.short_code} — ${place} — ${device}`);
  const kind = click.is_preview ? "preview" : click.is_bot ? "bot" : "human";
  const tags = [kind !== "human" ? kind : "", click.variant ? `variant ${click.variant}` : "", click.referer_domain ? `from ${click.referer_domain}` : ""];
  const where = span("where muted", tags.filter(Boolean).join(" · "));
  li.append(time, what, where);
  return li;
}

function startLive(feed, chart) {
  const status = document.querySelector("[data-live-status]");
  const setStatus = (text, state) => {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("on", state === "on");
    status.classList.toggle("off", state === "off");
  };
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: feed.dataset.tz || undefined });
  const seen = new Set();
  const source = new EventSource(feed.dataset.stream);
  source.addEventListener("open", () => setStatus("Live: new clicks appear as they happen", "on"));
  source.addEventListener("error", () => setStatus("Reconnecting to the live feed…", "off"));
  source.addEventListener("click", (event) => {
    const click = JSON.parse(event.data);
    if (seen.has(click.event_id)) return; // a reconnect may replay what we already counted
    seen.add(click.event_id);
    feed.querySelector("[data-feed-empty]")?.remove();
    feed.prepend(feedItem(click, timeFormat));
    while (feed.children.length > 100) feed.lastElementChild.remove();
    bump("clicks");
    bump("total_clicks");
    bump(click.is_preview ? "preview" : click.is_bot ? "bot" : "human");
    if (click.is_unique && click.visitor_id) bump("unique_visitors");
    chart?.add(click.ts, Boolean(click.is_unique && click.visitor_id));
  });
  window.addEventListener("pagehide", () => source.close());
}

function offerBrowserZone() {
  const input = document.querySelector("[data-browser-tz]");
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!input || !zone || input.value === zone) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-link small";
  button.textContent = `Use ${zone}`;
  button.addEventListener("click", () => {
    input.value = zone;
    input.form.requestSubmit();
  });
  input.after(button);
}

const chartEl = document.getElementById("chart");
const chart = chartEl ? drawChart(chartEl) : null;
const feed = document.getElementById("feed");
if (feed) startLive(feed, chart);
offerBrowserZone();
