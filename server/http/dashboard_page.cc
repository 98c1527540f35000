#include "server/http/dashboard_page.h"

namespace clusterkv::server::http {
namespace {

// Kept in one raw string so the page ships inside the binary; the JS is plain ES2017 without
// dependencies.
constexpr char kHtml[] = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>clusterkvd dashboard</title>
<style>
  body { font-family: sans-serif; margin: 16px; background: #fafafa; color: #222; }
  h1 { font-size: 20px; margin: 0 0 12px 0; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
  .panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
  .panel h2 { font-size: 15px; margin: 0 0 6px 0; }
  .nums { font-size: 13px; margin: 4px 0 6px 0; }
  .nums span.v { font-weight: bold; margin-right: 14px; }
  canvas { width: 100%; height: 220px; display: block; }
  #status { font-size: 12px; color: #666; }
  .wide { grid-column: 1 / span 2; }
  .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
  canvas#seq-heatmap { height: 400px; }
  select { font-size: 13px; }
</style>
</head>
<body>
<h1>clusterkvd &mdash; live</h1>
<div id="status">waiting for /metrics &hellip; scrapes: <span id="scrapes" data-value="0">0</span>
  &middot; RPCs: <span id="rpc-count" data-value="0">0</span></div>
<div class="grid">
  <div class="panel"><h2>Tier occupancy</h2>
    <div class="nums">host <span class="v" id="host-bytes" data-value="NaN">-</span>
      of <span class="v" id="host-capacity" data-value="NaN">-</span>
      (<span class="v" id="host-occupancy" data-value="NaN">-</span>)
      ssd <span class="v" id="ssd-bytes" data-value="NaN">-</span>
      of <span class="v" id="ssd-capacity" data-value="NaN">-</span></div>
    <canvas id="chart-occupancy" width="600" height="220"></canvas></div>
  <div class="panel"><h2>Hit rates</h2>
    <div class="nums">host tier <span class="v" id="host-hit-rate" data-value="NaN">-</span>
      ssd tier <span class="v" id="ssd-hit-rate" data-value="NaN">-</span>
      client device cache <span class="v" id="client-hit-rate" data-value="NaN">-</span></div>
    <canvas id="chart-hits" width="600" height="220"></canvas></div>
  <div class="panel"><h2>Bandwidth (bytes/s, sent + received)</h2>
    <div class="nums">grpc <span class="v" id="bw-grpc" data-value="NaN">-</span>
      ucx <span class="v" id="bw-ucx" data-value="NaN">-</span>
      sent total: grpc <span class="v" id="sent-grpc-bytes" data-value="NaN">-</span>
      ucx <span class="v" id="sent-ucx-bytes" data-value="NaN">-</span></div>
    <canvas id="chart-bandwidth" width="600" height="220"></canvas></div>
  <div class="panel"><h2>RPC latency (all RPCs)</h2>
    <div class="nums">p50 <span class="v" id="latency-p50" data-value="NaN">-</span>
      p90 <span class="v" id="latency-p90" data-value="NaN">-</span>
      p99 <span class="v" id="latency-p99" data-value="NaN">-</span></div>
    <canvas id="chart-latency" width="600" height="220"></canvas></div>
  <div class="panel wide" id="sequence-panel">
    <h2>Sequence <select id="seq-select"></select>
      <span class="nums">(open sequences with client reports:
      <span class="v" id="seq-count" data-value="0">0</span>)</span></h2>
    <div class="nums">step <span class="v" id="seq-steps" data-value="NaN">-</span>
      estimated recall <span class="v" id="seq-recall" data-value="NaN">-</span>
      budget <span class="v" id="seq-budget" data-value="NaN">-</span> tokens/head
      device-cache hit rate <span class="v" id="seq-hit-rate" data-value="NaN">-</span>
      reports <span class="v" id="seq-points" data-value="0">0</span></div>
    <div class="pair">
      <canvas id="seq-recall-chart" width="600" height="220"></canvas>
      <canvas id="seq-budget-chart" width="600" height="220"></canvas>
    </div>
    <h2>Cluster heat: recalls per cluster (rows, the most recalled) and bucket of fetches</h2>
    <div class="nums">clusters <span class="v" id="seq-heat-rows" data-value="0">0</span>
      buckets <span class="v" id="seq-heat-cols" data-value="0">0</span>
      (<span class="v" id="seq-heat-bucket" data-value="0">0</span> fetches each)
      hottest cell <span class="v" id="seq-heat-max" data-value="0">0</span>
      recalls shown <span class="v" id="seq-heat-total" data-value="0">0</span></div>
    <canvas id="seq-heatmap" width="1200" height="400"></canvas>
  </div>
</div>
<script>
"use strict";
const HISTORY = 120;
const history = { t: [], hostOcc: [], ssdOcc: [], hostHit: [], ssdHit: [], clientHit: [],
                  bwGrpc: [], bwUcx: [], p50: [], p90: [], p99: [] };
let previous = null;
let scrapes = 0;

// Parses the text exposition format into [{name, labels: {..}, value}].
function parseMetrics(text) {
  const out = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line[0] === "#") continue;
    let name, labels = {}, rest;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    if (brace >= 0 && brace < space) {
      name = line.slice(0, brace);
      let i = brace + 1;
      while (i < line.length && line[i] !== "}") {
        const eq = line.indexOf("=", i);
        const key = line.slice(i, eq).replace(/^,/, "").trim();
        let j = eq + 2, val = "";
        while (j < line.length && line[j] !== '"') {
          if (line[j] === "\\") { j++; val += line[j] === "n" ? "\n" : line[j]; }
          else val += line[j];
          j++;
        }
        labels[key] = val;
        i = j + 1;
        if (line[i] === ",") i++;
      }
      rest = line.slice(i + 1).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const v = rest.split(" ")[0];
    out.push({ name, labels, value: v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v) });
  }
  return out;
}

function sum(samples, name, match) {
  let total = 0, found = false;
  for (const s of samples) {
    if (s.name !== name) continue;
    let ok = true;
    for (const k in (match || {})) if (s.labels[k] !== match[k]) ok = false;
    if (ok) { total += s.value; found = true; }
  }
  return found ? total : NaN;
}

// Buckets of a histogram summed over every other label: [[le, cumulative], ...] ascending.
function buckets(samples, name) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== name + "_bucket") continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return Array.from(byLe.entries()).sort((a, b) => a[0] - b[0]);
}

// PromQL histogram_quantile: linear interpolation inside the bucket holding the rank.
function quantile(q, b) {
  if (b.length === 0) return NaN;
  const count = b[b.length - 1][1];
  if (!(count > 0)) return NaN;
  const rank = q * count;
  for (let i = 0; i < b.length; i++) {
    if (b[i][1] >= rank) {
      if (b[i][0] === Infinity) return i > 0 ? b[i - 1][0] : NaN;
      const lower = i > 0 ? b[i - 1][0] : 0;
      const below = i > 0 ? b[i - 1][1] : 0;
      const inBucket = b[i][1] - below;
      if (inBucket <= 0) return b[i][0];
      return lower + (b[i][0] - lower) * (rank - below) / inBucket;
    }
  }
  return NaN;
}

function ratio(a, b) { return a + b > 0 ? a / (a + b) : NaN; }

function human(v, unit) {
  if (!isFinite(v)) return "n/a";
  if (unit === "B" || unit === "B/s") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    const digits = i > 0 ? 2 : (Number.isInteger(v) ? 0 : 1);
    return v.toFixed(digits) + " " + units[i] + (unit === "B/s" ? "/s" : "");
  }
  if (unit === "%") return (100 * v).toFixed(1) + " %";
  if (unit === "n") return v.toFixed(1);
  if (unit === "s") return v < 1e-3 ? (v * 1e6).toFixed(0) + " us" : (v * 1e3).toFixed(2) + " ms";
  return String(v);
}

function show(id, value, unit) {
  const el = document.getElementById(id);
  el.setAttribute("data-value", String(value));
  el.textContent = human(value, unit);
}

function push(key, v) {
  history[key].push(v);
  if (history[key].length > HISTORY) history[key].shift();
}

function drawChart(id, series, unit, fixedMax) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 70, bottom = 20, top = 8;
  ctx.clearRect(0, 0, w, h);
  let max = fixedMax || 0;
  if (!fixedMax) for (const s of series) for (const v of s.points) if (isFinite(v) && v > max) max = v;
  if (!(max > 0)) max = 1;
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(human(max * (4 - i) / 4, unit), 2, y + 4);
  }
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    s.points.forEach((v, i) => {
      if (!isFinite(v)) { started = false; return; }
      const x = left + (w - left) * i / (HISTORY - 1);
      const y = top + (h - top - bottom) * (1 - Math.min(v, max) / max);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
    ctx.fillStyle = s.color; ctx.fillText(s.name, left + 10 + k * 110, h - 5);
  });
}

// ---- per-sequence view: /api/sequences, /api/sequence and the clusterkv_sequence_* gauges ----
const query = new URLSearchParams(location.search);
let selected = query.has("tenant") && query.has("sequence")
    ? { tenant: query.get("tenant"), sequence: query.get("sequence") } : null;
let listed = "";

function sequenceKey(s) { return s.tenant + "/" + s.sequence; }

function showSequenceGauges(m) {
  if (!selected) return;
  const labels = { tenant: selected.tenant, sequence: selected.sequence };
  show("seq-recall", sum(m, "clusterkv_sequence_estimated_recall", labels), "%");
  show("seq-budget", sum(m, "clusterkv_sequence_budget_tokens", labels), "n");
  show("seq-hit-rate", sum(m, "clusterkv_sequence_device_cache_hit_ratio", labels), "%");
  show("seq-steps", sum(m, "clusterkv_sequence_steps", labels), "");
}

// Lines over x = decode step; each series {name, color, xs, ys}.
function drawSteps(id, series, unit, fixedMax) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 70, bottom = 34, top = 8;
  ctx.clearRect(0, 0, w, h);
  let max = fixedMax || 0, minX = Infinity, maxX = -Infinity;
  for (const s of series) {
    s.xs.forEach((x, i) => {
      minX = Math.min(minX, x); maxX = Math.max(maxX, x);
      if (!fixedMax && isFinite(s.ys[i]) && s.ys[i] > max) max = s.ys[i];
    });
  }
  if (!(max > 0)) max = 1;
  if (!(maxX > minX)) { minX = isFinite(minX) ? minX - 1 : 0; maxX = minX + 2; }
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(human(max * (4 - i) / 4, unit), 2, y + 4);
  }
  ctx.fillText("step " + minX, left, h - bottom + 12);
  ctx.fillText("step " + maxX, w - 70, h - bottom + 12);
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
    s.xs.forEach((xv, i) => {
      const x = left + (w - left - 10) * (xv - minX) / (maxX - minX);
      const y = top + (h - top - bottom) * (1 - Math.min(s.ys[i], max) / max);
      if (i > 0) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      ctx.fillRect(x - 2, y - 2, 4, 4);
    });
    ctx.stroke();
    ctx.fillText(s.name, left + 10 + k * 150, h - 5);
  });
}

function drawHeatmap(map) {
  const canvas = document.getElementById("seq-heatmap");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 90, top = 6, bottom = 20;
  ctx.clearRect(0, 0, w, h);
  const rows = map ? map.rows.length : 0, cols = rows ? map.counts[0].length : 0;
  let max = 0, total = 0;
  for (let r = 0; r < rows; r++) {
    for (const c of map.counts[r]) { max = Math.max(max, c); total += c; }
  }
  show("seq-heat-rows", rows, "");
  show("seq-heat-cols", cols, "");
  show("seq-heat-bucket", map ? map.fetches_per_bucket : 0, "");
  show("seq-heat-max", max, "");
  show("seq-heat-total", total, "");
  if (!rows || !cols) return;
  const cw = (w - left) / cols, ch = (h - top - bottom) / rows;
  ctx.font = Math.min(11, Math.max(6, ch)) + "px sans-serif";
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = map.counts[r][c] / max;
      // white (never) through yellow to red (the hottest cell)
      ctx.fillStyle = v > 0 ? "rgb(255," + Math.round(230 * (1 - v)) + "," + Math.round(120 * (1 - v)) + ")" : "#f4f4f4";
      ctx.fillRect(left + c * cw, top + r * ch, Math.max(cw - 1, 1), Math.max(ch - 1, 1));
    }
    ctx.fillStyle = "#555";
    if (ch >= 6) ctx.fillText(map.rows[r], 2, top + r * ch + ch - 1);
  }
  ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  ctx.fillText("fetch " + map.first_fetch, left, h - 5);
  ctx.fillText("fetch " + map.fetches, w - 80, h - 5);
}

async function pollSequences() {
  try {
    const list = (await (await fetch("/api/sequences", { cache: "no-store" })).json()).sequences;
    show("seq-count", list.length, "");
    const keys = list.map(sequenceKey).join("\n");
    if (!selected || !list.some(s => sequenceKey(s) === sequenceKey(selected))) {
      selected = list.length ? { tenant: list[0].tenant, sequence: list[0].sequence } : null;
    }
    const select = document.getElementById("seq-select");
    if (keys !== listed) {
      listed = keys;
      select.innerHTML = "";
      for (const s of list) {
        const option = document.createElement("option");
        option.value = sequenceKey(s);
        option.textContent = s.tenant + " / " + s.sequence;
        select.appendChild(option);
      }
    }
    if (!selected) return;
    select.value = sequenceKey(selected);
    const url = "/api/sequence?tenant=" + encodeURIComponent(selected.tenant) +
                "&sequence=" + encodeURIComponent(selected.sequence);
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) return;
    const d = await response.json();
    show("seq-points", d.points.length, "");
    const xs = d.points.map(p => p.step);
    drawSteps("seq-recall-chart",
              [{ name: "estimated recall", color: "#1f77b4", xs, ys: d.points.map(p => p.estimated_recall) },
               { name: "device-cache hit rate", color: "#9467bd", xs, ys: d.points.map(p => p.hit_ratio) }],
              "%", 1);
    drawSteps("seq-budget-chart",
              [{ name: "budget (tokens/head)", color: "#2ca02c", xs, ys: d.points.map(p => p.budget_tokens) }],
              "n");
    drawHeatmap(d.heatmap);
  } catch (e) {
    document.getElementById("status").firstChild.textContent = "sequence view failed: " + e + "; scrapes: ";
  }
}

document.getElementById("seq-select").addEventListener("change", (event) => {
  const [tenant, ...rest] = event.target.value.split("/");
  selected = { tenant, sequence: rest.join("/") };
  pollSequences();
});

function update(text) {
  const m = parseMetrics(text);
  const now = performance.now() / 1000;
  scrapes++;
  const hostBytes = sum(m, "clusterkv_tier_bytes", { tier: "host" });
  const ssdBytes = sum(m, "clusterkv_tier_bytes", { tier: "ssd" });
  const hostCap = sum(m, "clusterkv_tier_capacity_bytes", { tier: "host" });
  const ssdCap = sum(m, "clusterkv_tier_capacity_bytes", { tier: "ssd" });
  const hostHit = ratio(sum(m, "clusterkv_tier_hits_total", { tier: "host" }),
                        sum(m, "clusterkv_tier_misses_total", { tier: "host" }));
  const ssdHit = ratio(sum(m, "clusterkv_tier_hits_total", { tier: "ssd" }),
                       sum(m, "clusterkv_tier_misses_total", { tier: "ssd" }));
  const clientHits = sum(m, "clusterkv_client_device_cache_hit_tokens_total");
  const clientMisses = sum(m, "clusterkv_client_device_cache_miss_tokens_total");
  const clientHit = ratio(isNaN(clientHits) ? 0 : clientHits, isNaN(clientMisses) ? 0 : clientMisses);
  const moved = {};
  for (const t of ["grpc", "ucx"]) {
    moved[t] = sum(m, "clusterkv_transport_sent_bytes_total", { transport: t }) +
               sum(m, "clusterkv_transport_received_bytes_total", { transport: t });
  }
  const lat = buckets(m, "clusterkv_rpc_duration_seconds");
  const rpcCount = lat.length ? lat[lat.length - 1][1] : 0;

  show("host-bytes", hostBytes, "B");
  show("host-capacity", hostCap, "B");
  show("host-occupancy", hostBytes / hostCap, "%");
  show("ssd-bytes", ssdBytes, "B");
  show("ssd-capacity", ssdCap, "B");
  show("host-hit-rate", hostHit, "%");
  show("ssd-hit-rate", ssdHit, "%");
  show("client-hit-rate", clientHit, "%");
  show("sent-grpc-bytes", sum(m, "clusterkv_transport_sent_bytes_total", { transport: "grpc" }), "B");
  show("sent-ucx-bytes", sum(m, "clusterkv_transport_sent_bytes_total", { transport: "ucx" }), "B");
  show("latency-p50", quantile(0.5, lat), "s");
  show("latency-p90", quantile(0.9, lat), "s");
  show("latency-p99", quantile(0.99, lat), "s");
  show("rpc-count", rpcCount, "");
  show("scrapes", scrapes, "");
  showSequenceGauges(m);

  // Per-interval series: rates and percentiles of what happened since the previous scrape.
  let bwGrpc = NaN, bwUcx = NaN, p50 = NaN, p90 = NaN, p99 = NaN;
  let hitI = hostHit, ssdI = ssdHit, clientI = clientHit;
  if (previous) {
    const dt = Math.max(now - previous.now, 1e-3);
    bwGrpc = (moved.grpc - previous.moved.grpc) / dt;
    bwUcx = (moved.ucx - previous.moved.ucx) / dt;
    const delta = lat.map(([le, c], i) => [le, c - (previous.lat[i] ? previous.lat[i][1] : 0)]);
    p50 = quantile(0.5, delta); p90 = quantile(0.9, delta); p99 = quantile(0.99, delta);
  }
  show("bw-grpc", bwGrpc, "B/s");
  show("bw-ucx", bwUcx, "B/s");
  previous = { now, moved, lat };
  push("hostOcc", hostBytes / hostCap); push("ssdOcc", ssdBytes / ssdCap);
  push("hostHit", hitI); push("ssdHit", ssdI); push("clientHit", clientI);
  push("bwGrpc", bwGrpc); push("bwUcx", bwUcx);
  push("p50", p50); push("p90", p90); push("p99", p99);
  drawChart("chart-occupancy", [{ name: "host", color: "#1f77b4", points: history.hostOcc },
                                { name: "ssd", color: "#ff7f0e", points: history.ssdOcc }], "%", 1);
  drawChart("chart-hits", [{ name: "host tier", color: "#2ca02c", points: history.hostHit },
                           { name: "ssd tier", color: "#d62728", points: history.ssdHit },
                           { name: "device cache", color: "#9467bd", points: history.clientHit }],
            "%", 1);
  drawChart("chart-bandwidth", [{ name: "grpc", color: "#1f77b4", points: history.bwGrpc },
                                { name: "ucx", color: "#ff7f0e", points: history.bwUcx }], "B/s");
  drawChart("chart-latency", [{ name: "p50", color: "#2ca02c", points: history.p50 },
                              { name: "p90", color: "#ff7f0e", points: history.p90 },
                              { name: "p99", color: "#d62728", points: history.p99 }], "s");
  document.getElementById("status").firstChild.textContent = "live, every 1 s; scrapes: ";
}

async function poll() {
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (response.ok) update(await response.text());
    await pollSequences();
  } catch (e) {
    document.getElementById("status").firstChild.textContent = "scrape failed: " + e + "; scrapes: ";
  }
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
)HTML";

}  // namespace

std::string_view DashboardHtml() { return std::string_view(kHtml, sizeof(kHtml) - 1); }

}  // namespace clusterkv::server::http
