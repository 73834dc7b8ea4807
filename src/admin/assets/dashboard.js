// gatehouse dashboard: plain JavaScript, no dependencies. Reads the admin API (same origin,
// session cookie), listens to /api/events/stream, draws its charts as SVG.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const LEVELS = ['low', 'medium', 'high', 'critical'];
const FEED_MAX = 60;
const POLL_LIVE_MS = 2000;
const POLL_RANGE_MS = 15000;
const HISTORY = 150; // live samples kept (5 minutes at one per 2 s)

const state = {
  history: [], // {t, rps, eps, p50, p95, p99}
  usage: null,
  feedCount: 0,
  secCount: 0,
  secSummary: '',
  source: null,
  timers: [],
};

// ---------- formatting ----------
const nf = new Intl.NumberFormat('en-US');
function compact(n) {
  if (n == null || !isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + 'B';
  if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  if (a < 100 && !Number.isInteger(n)) return n.toFixed(a < 10 ? 2 : 1);
  return nf.format(Math.round(n));
}
function usd(n) {
  if (n == null || !isFinite(n)) return '–';
  if (n === 0) return '$0';
  if (n < 0.01) return '$' + n.toFixed(5);
  if (n < 100) return '$' + n.toFixed(2);
  return '$' + nf.format(Math.round(n));
}
function secs(n) {
  if (n == null || !isFinite(n)) return '–';
  if (n < 1) return `${Math.round(n * 1000)} ms`;
  return `${n < 10 ? n.toFixed(2) : n.toFixed(1)} s`;
}
function pct(r) { return r == null || !isFinite(r) ? '–' : (r * 100).toFixed(r < 0.1 ? 1 : 0) + '%'; }
function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString('en-GB', { hour12: false });
}
function when(v) {
  const d = typeof v === 'number' ? new Date(v) : new Date(v);
  return isNaN(d) ? String(v ?? '') : d.toLocaleString('en-GB', { hour12: false });
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function empty(container, text) {
  container.replaceChildren(el(container.tagName === 'OL' ? 'li' : 'div', 'empty', text));
}

// ---------- API ----------
class Unauthorized extends Error {}
async function api(path, opts = {}) {
  const rsp = await fetch(path, { credentials: 'same-origin', ...opts });
  if (rsp.status === 401) throw new Unauthorized();
  return rsp;
}
async function json(path) {
  const rsp = await api(path);
  if (!rsp.ok) throw new Error(`${path}: ${rsp.status}`);
  return rsp.json();
}

// ---------- filters ----------
function filters() {
  const days = Number($('f-range').value);
  return { days, model: $('f-model').value, user: $('f-user').value.trim(), since: Math.floor(Date.now() / 1000) - days * 86400 };
}
function matches(item) {
  const f = filters();
  if (f.model && item.model !== f.model) return false;
  if (f.user && item.user !== f.user) return false;
  return true;
}
function updateExportLinks() {
  const f = filters();
  for (const [id, fmt] of [['dl-csv', 'csv'], ['dl-json', 'json']]) {
    $(id).href = `/api/export?format=${fmt}&from=${f.since}`;
  }
}

// ---------- charts ----------
// A line chart of `series` ([{values, cls}]) over shared x positions; `labels` for the x axis.
function lineChart(container, series, labels, opts = {}) {
  const w = container.clientWidth || 400, h = container.clientHeight || 200;
  const pad = { l: 40, r: 8, t: 8, b: opts.axis === false ? 2 : 20 };
  const all = series.flatMap((s) => s.values).filter((v) => v != null && isFinite(v));
  const n = Math.max(...series.map((s) => s.values.length), 0);
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none', role: 'img' });
  if (n < 2 || all.length === 0) {
    if (opts.axis !== false) {
      const t = svg('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', class: 'axis' });
      t.textContent = 'waiting for data…';
      root.append(t);
    }
    container.replaceChildren(root);
    return;
  }
  const max = niceMax(Math.max(...all, opts.min || 0));
  const x = (i) => pad.l + (i / (n - 1)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  if (opts.axis !== false) {
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      root.append(svg('line', { x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v), class: 'grid-line' }));
      const t = svg('text', { x: pad.l - 6, y: y(v) + 3, 'text-anchor': 'end', class: 'axis' });
      t.textContent = opts.fmt ? opts.fmt(v) : compact(v);
      root.append(t);
    }
    const step = Math.max(1, Math.ceil(n / 6));
    for (let i = 0; i < n; i += step) {
      const t = svg('text', { x: x(i), y: h - 5, 'text-anchor': 'middle', class: 'axis' });
      t.textContent = labels[i] ?? '';
      root.append(t);
    }
  }
  series.forEach((s, si) => {
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v ?? 0).toFixed(1)}`);
    if (si === 0 && opts.area !== false) {
      root.append(svg('path', { d: `M${x(0)},${y(0)} L${pts.join(' L')} L${x(n - 1)},${y(0)} Z`, class: 'area' }));
    }
    root.append(svg('polyline', { points: pts.join(' '), class: `line ${s.cls}` }));
  });
  container.replaceChildren(root);
}
function barChart(container, values, labels, bad) {
  const w = container.clientWidth || 400, h = container.clientHeight || 200;
  const pad = { l: 40, r: 8, t: 8, b: 20 };
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none', role: 'img' });
  const max = niceMax(Math.max(1, ...values));
  const n = values.length;
  const bw = (w - pad.l - pad.r) / Math.max(n, 1);
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    root.append(svg('line', { x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v), class: 'grid-line' }));
    const t = svg('text', { x: pad.l - 6, y: y(v) + 3, 'text-anchor': 'end', class: 'axis' });
    t.textContent = compact(v);
    root.append(t);
  }
  values.forEach((v, i) => {
    const gap = Math.min(2, bw * 0.2);
    root.append(svg('rect', { x: pad.l + i * bw + gap / 2, y: y(v), width: Math.max(bw - gap, 1), height: Math.max(h - pad.b - y(v), 0), class: 'bar' }));
    if (bad && bad[i] > 0) {
      root.append(svg('rect', { x: pad.l + i * bw + gap / 2, y: y(bad[i]), width: Math.max(bw - gap, 1), height: Math.max(h - pad.b - y(bad[i]), 0), class: 'bar bad' }));
    }
  });
  const step = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += step) {
    const t = svg('text', { x: pad.l + i * bw + bw / 2, y: h - 5, 'text-anchor': 'middle', class: 'axis' });
    t.textContent = labels[i] ?? '';
    root.append(t);
  }
  container.replaceChildren(root);
}
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---------- live figures (polled) ----------
async function pollLive() {
  const [minute, five] = await Promise.all([json('/api/usage/live?window=60'), json('/api/usage/live?window=300')]);
  const m = minute.total, f = five.total;
  $('k-rps').textContent = m.requests_per_second < 10 ? m.requests_per_second.toFixed(2) : compact(m.requests_per_second);
  $('k-rps-hint').textContent = `${nf.format(m.requests)} requests in the last minute`;
  $('k-lat').replaceChildren(document.createTextNode(secs(f.p50_latency)), el('small', null, `p95 ${secs(f.p95_latency)} · p99 ${secs(f.p99_latency)}`));
  $('k-err').textContent = pct(f.error_rate);
  $('k-err-hint').textContent = `${nf.format(f.errors)} errors in the last 5 minutes`;
  const ten = await json('/api/usage/live?window=10');
  const t = ten.total;
  state.history.push({ t: Date.now(), rps: t.requests_per_second, eps: t.errors / 10, p50: f.p50_latency, p95: f.p95_latency, p99: f.p99_latency });
  if (state.history.length > HISTORY) state.history.shift();
  drawLive();
}
function drawLive() {
  const h = state.history;
  const labels = h.map((s) => clock(s.t).slice(0, 5 + 3));
  lineChart($('c-live'), [{ values: h.map((s) => s.rps), cls: 's1' }, { values: h.map((s) => s.eps), cls: 's3' }], labels, { fmt: (v) => v.toFixed(v < 10 ? 1 : 0) });
  lineChart($('c-latency'), [{ values: h.map((s) => s.p50), cls: 's1' }, { values: h.map((s) => s.p95), cls: 's2' }, { values: h.map((s) => s.p99), cls: 's4' }], labels, { fmt: secs, area: false });
  lineChart($('spark-rps'), [{ values: h.slice(-40).map((s) => s.rps), cls: 's1' }], [], { axis: false });
}

// ---------- range figures (polled) ----------
async function pollRange() {
  const f = filters();
  const [usage, summary] = await Promise.all([
    json(`/api/usage/analytics?days=${f.days}`),
    json(`/api/security/summary?since=${f.since}`),
  ]);
  state.usage = usage;
  const g = usage.general_metrics;
  $('k-req').textContent = compact(g.total_requests);
  $('k-req-hint').textContent = `${nf.format(g.unique_users)} users · ${pct(g.error_rate)} errors`;
  $('k-tok').textContent = compact(g.total_tokens);
  $('k-cost').textContent = usd(g.total_cost);
  $('k-cost-hint').textContent = g.unpriced_requests ? `in range, USD · ${unpriced(g.unpriced_requests)}` : 'in range, USD';
  $('k-blocked').textContent = compact(g.blocked_requests);
  $('k-threats').textContent = `${nf.format(summary.threats)} threats in range`;
  fillModels(usage.by_model);
  drawTimeseries(usage.timeseries);
  drawModels(usage.by_model);
  drawUsers(usage.by_user);
  drawThreats(summary);
  drawAnomalies(usage.anomalies);
}
function fillModels(byModel) {
  const sel = $('f-model');
  const have = new Set([...sel.options].map((o) => o.value));
  for (const m of byModel) {
    if (!have.has(m.model)) sel.append(new Option(m.model, m.model));
  }
}
function drawTimeseries(ts) {
  $('ts-bucket').textContent = `per ${ts.bucket} · blocked in red`;
  const pts = ts.points;
  const label = (p) => {
    const d = new Date(p.ts_ms);
    return ts.bucket === 'hour' ? `${String(d.getHours()).padStart(2, '0')}:00` : `${d.getDate()}/${d.getMonth() + 1}`;
  };
  barChart($('c-timeseries'), pts.map((p) => p.requests), pts.map(label), pts.map((p) => p.blocked));
}
function drawModels(byModel) {
  const f = filters();
  const rows = byModel.filter((m) => !f.model || m.model === f.model).sort((a, b) => b.total_tokens - a.total_tokens);
  const tbody = $('t-models').tBodies[0];
  if (!rows.length) { tbody.replaceChildren(emptyRow(7, 'No requests in this range')); return; }
  const max = Math.max(...rows.map((r) => r.total_tokens), 1);
  tbody.replaceChildren(...rows.map((m) => {
    const meter = el('div', 'meter'); const fill = el('div'); fill.style.width = `${(100 * m.total_tokens) / max}%`; meter.append(fill);
    const tdm = el('td'); tdm.append(meter);
    return row([cell(m.model, 'name'), cell(nf.format(m.requests), 'r'), cell(compact(m.total_tokens), 'r'), tdm, costCell(m), cell(secs(m.p95_latency), 'r'), cell(pct(m.error_rate), 'r')]);
  }));
}
// A cost sum leaves out requests whose cost is unknown (no price, no upstream cost): say so.
function unpriced(n) { return `cost unknown for ${nf.format(n)} request${n === 1 ? '' : 's'}`; }
function costCell(m) {
  if (!m.unpriced_requests) return cell(usd(m.cost), 'r');
  const td = cell(`${usd(m.cost)} + ?`, 'r');
  td.title = unpriced(m.unpriced_requests);
  return td;
}
function drawUsers(byUser) {
  const f = filters();
  const rows = byUser.filter((u) => !f.user || u.user === f.user).slice(0, 10);
  const tbody = $('t-users').tBodies[0];
  if (!rows.length) { tbody.replaceChildren(emptyRow(6, 'No identified users in this range')); return; }
  tbody.replaceChildren(...rows.map((u) => row([cell(u.user, 'name'), cell(nf.format(u.requests), 'r'), cell(compact(u.tokens), 'r'), cell(usd(u.cost), 'r'), cell(nf.format(u.threats), 'r'), cell(nf.format(u.blocked), 'r')])));
}
function drawThreats(summary) {
  $('c-levels').replaceChildren(...LEVELS.map((l) => {
    const d = el('div', `level ${l}`); d.append(el('b', null, compact(summary.by_level[l] || 0)), el('span', null, l)); return d;
  }));
  const cats = Object.entries(summary.by_category).sort((a, b) => b[1] - a[1]);
  const box = $('c-categories');
  if (!cats.length) { empty(box, 'No threats in this range'); return; }
  const max = Math.max(...cats.map((c) => c[1]), 1);
  box.replaceChildren(...cats.map(([name, n]) => {
    const r = el('div', 'barrow'); const track = el('div', 'track'); const fill = el('div', 'fill');
    fill.style.width = `${(100 * n) / max}%`; track.append(fill);
    r.append(el('span', null, name.replaceAll('_', ' ')), track, el('span', 'v', compact(n))); return r;
  }));
}
function drawAnomalies(list) {
  const box = $('anomalies');
  if (!list || !list.length) { empty(box, 'No anomalies: traffic looks normal'); return; }
  box.replaceChildren(...list.slice(0, 20).map((a) => item(a.severity, `${a.metric.replaceAll('_', ' ')}: ${compact(a.value)} vs ${compact(a.baseline)} usual (z ${a.score.toFixed(1)})`, a.at)));
}
function cell(text, cls) { return el('td', cls, text); }
function row(cells) { const tr = el('tr'); tr.append(...cells); return tr; }
function emptyRow(span, text) { const td = el('td', 'empty', text); td.colSpan = span; return row([td]); }
function item(level, summary, time, extra) {
  const li = el('li');
  li.append(el('span', `pill ${level || ''}`, level || 'info'), el('span', null, summary));
  if (time) li.append(el('span', 'when', when(time)));
  if (extra && extra.length) { const ul = el('ul'); ul.append(...extra.map((x) => el('li', null, String(x)))); li.append(ul); }
  return li;
}

// ---------- alerts ----------
// `/api/alerts` answers {active, history}: `active` are the alerts firing now (state `firing`),
// `history` the latest alerts of every state, newest first.
async function pollAlerts() {
  const box = $('alerts');
  const rsp = await api('/api/alerts?limit=200');
  if (!rsp.ok) { empty(box, await problem('/api/alerts', rsp)); $('alerts-count').textContent = ''; return; }
  const { active, history } = await rsp.json();
  $('alerts-count').textContent = `${nf.format(active.length)} firing`;
  const resolved = history.filter((a) => a.state === 'resolved').slice(0, Math.max(0, 10 - active.length));
  if (!active.length && !resolved.length) { empty(box, 'No alerts: nothing needs attention'); return; }
  box.replaceChildren(...active.map((a) => alertRow(a, true)), ...resolved.map((a) => alertRow(a, false)));
}
function alertRow(a, firing) {
  const subject = a.subject && a.subject !== '-' ? ` · ${a.subject}` : '';
  const li = item(firing ? a.level : 'resolved', `${a.rule}${subject}: ${a.summary}`,
    null);
  li.classList.add(firing ? 'firing' : 'resolved');
  li.dataset.rule = a.rule;
  const since = firing ? `firing since ${when(a.started_ms)}` : `resolved ${when(a.resolved_ms)} · fired ${when(a.started_ms)}`;
  li.append(el('span', 'when', since));
  return li;
}
// The error text an admin route answered with (`{"error": {"message"}}`), or its status.
async function problem(path, rsp) {
  const body = await rsp.json().catch(() => null);
  return body?.error?.message || `${path} answered ${rsp.status}`;
}

// ---------- quotas ----------
// `/api/quotas` answers every configured limit and budget as the proxy counts it now
// ({scopes, users, users_tracked, rejected, time_zone}); a limit not set is null.
async function pollQuotas() {
  const rsp = await api(`/api/quotas?users=${QUOTA_USERS}`);
  const tbody = $('t-quotas').tBodies[0];
  if (!rsp.ok) { tbody.replaceChildren(emptyRow(7, await problem('/api/quotas', rsp))); return; }
  const q = await rsp.json();
  $('quota-zone').textContent = `budgets in ${q.time_zone}`;
  if (!q.scopes.length) tbody.replaceChildren(emptyRow(7, 'No limits configured (auth.keys[].limits, quotas: in gateway.yaml)'));
  else tbody.replaceChildren(...q.scopes.map(quotaRow));
  $('quota-tracked').textContent = q.users_tracked ? `${nf.format(q.users_tracked)} users tracked` : '';
  const users = $('t-quota-users').tBodies[0];
  if (!q.users.length) users.replaceChildren(emptyRow(4, 'No end-user limits, or no traffic yet'));
  else users.replaceChildren(...q.users.map((u) => {
    const tr = row([cell(u.name, 'name'), cell(used(u.requests_per_day || u.requests_per_minute), 'r'), cell(u.budget ? usd(u.budget.spent_usd) : '–', 'r'), cell(nf.format(u.rejected), 'r')]);
    tr.dataset.name = u.name;
    return tr;
  }));
  const box = $('quota-rejected');
  if (!q.rejected.length) { empty(box, 'No request refused since start'); return; }
  box.replaceChildren(...q.rejected.map((r) => {
    const li = item('warning', `${r.scope} · ${r.reason}: ${nf.format(r.count)}`);
    li.dataset.scope = r.scope; li.dataset.reason = r.reason;
    return li;
  }));
}
const QUOTA_USERS = 5;
// `used / limit` of a rate window, or – when no such limit is set.
function used(rate) { return rate ? `${nf.format(rate.used)} / ${nf.format(rate.limit)}` : '–'; }
// A scope's request window: the day's when it has a daily limit, else the minute's.
function requests(s) {
  if (s.requests_per_day) return `${used(s.requests_per_day)} today`;
  return s.requests_per_minute ? `${used(s.requests_per_minute)} this minute` : '–';
}
function quotaRow(s) {
  const b = s.budget;
  const meter = el('div', 'meter'); const fill = el('div');
  if (b) { fill.style.width = `${Math.min(100, b.used_ratio * 100)}%`; if (b.used_ratio >= 1) meter.classList.add('over'); }
  meter.append(fill);
  const tdm = el('td'); if (b) tdm.append(meter);
  const spend = b ? `${usd(b.spent_usd)} of ${usd(b.budget_usd)} per ${b.period}` : '–';
  const tr = row([cell(s.scope), cell(s.name, 'name'), cell(requests(s), 'r'), cell(spend, 'spend'), tdm,
    cell(b ? when(b.period_end_ms) : '–', 'r'), cell(nf.format(s.rejected), 'r')]);
  tr.dataset.scope = s.scope; tr.dataset.name = s.name;
  return tr;
}

// ---------- reports ----------
// `/api/reports` lists reports without bodies ({items, next_cursor}); the newest few are read
// whole from `/api/reports/{id}` for their recommendations. A report never changes once written,
// so each is fetched once.
const REPORTS_SHOWN = 3;
const reportCache = new Map();
async function pollReports() {
  const box = $('reports');
  const rsp = await api(`/api/reports?limit=${REPORTS_SHOWN}`);
  if (!rsp.ok) { empty(box, await problem('/api/reports', rsp)); return; }
  const { items } = await rsp.json();
  if (!items.length) { empty(box, 'No reports yet: analysis reports and recommendations will appear here'); return; }
  const full = await Promise.all(items.map(async (r) => {
    if (!reportCache.has(r.id)) reportCache.set(r.id, await json(`/api/reports/${encodeURIComponent(r.id)}`));
    return reportCache.get(r.id);
  }));
  box.replaceChildren(...full.map(reportRow));
}
function reportRow(r) {
  const li = el('li', 'report');
  li.dataset.id = r.id;
  const n = r.recommendations.length;
  const head = `${days(r.from, r.to)} · ${n} recommendation${n === 1 ? '' : 's'}`;
  li.append(el('span', 'pill', r.period), el('span', 'title', head));
  const engine = r.engine.kind === 'llm' ? `by ${r.engine.model}` : 'by the built-in rules';
  li.append(el('span', 'when', `written ${when(r.created_ms)} ${engine}`));
  if (n) {
    const ul = el('ul', 'recs');
    ul.append(...r.recommendations.map((x) => {
      const rec = el('li');
      rec.append(el('span', `pill ${PRIORITY[x.priority] || ''}`, x.priority), el('b', null, x.title), el('span', 'action', x.action));
      return rec;
    }));
    li.append(ul);
  }
  return li;
}
const PRIORITY = { high: 'high', medium: 'medium', low: 'low' };
// A period `[from, to)` of RFC 3339 instants with their own offsets, as the days it covers:
// `2026-03-29T00:00:00+01:00` to `2026-03-30T00:00:00+01:00` → "29 Mar 2026".
function days(from, to) {
  const a = localDay(from), b = localDay(to);
  if (!a || !b) return `${from} – ${to}`;
  b.setUTCDate(b.getUTCDate() - 1);
  const fmt = (d) => d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
  return b <= a ? fmt(a) : `${fmt(a)} – ${fmt(b)}`;
}
function localDay(rfc3339) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(rfc3339 || '');
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])) : null;
}

// ---------- feeds ----------
function feedRow(x, fresh) {
  const li = el('li', fresh ? 'fresh' : '');
  const bad = x.blocked ? 'blocked' : x.outcome === 'ok' ? 'ok' : 'error';
  const what = el('span', 'what');
  what.append(el('code', null, x.model || '—'), document.createTextNode(x.user ? `  ·  ${x.user}` : ''));
  // The judge's second opinion, where the detector's verdict fell in its band and it was asked.
  if (x.judge) what.append(el('span', `judge ${x.judge}`, `  ·  judge: ${x.judge.replaceAll('_', ' ')}`));
  const tok = x.tokens != null ? `${compact(x.tokens)} tok · ` : '';
  li.append(el('time', null, clock(x.ts_ms)), el('span', `pill ${bad}`, x.blocked ? 'blocked' : x.outcome === 'ok' ? String(x.status) : x.outcome.replaceAll('_', ' ')), what,
    el('span', 'meta', `${tok}${secs(x.latency)}${x.cost ? ' · ' + usd(x.cost) : ''}`));
  li.dataset.id = x.id;
  return li;
}
// One row per request with a threat: its level, categories and (from the events API) the rules
// that matched. `x`: a live FeedItem or a request grouped from `/api/security/events`.
function secRow(x, fresh) {
  const li = el('li', fresh ? 'fresh' : '');
  const what = el('span', 'what');
  const cats = (x.categories || []).map((c) => c.replaceAll('_', ' ')).join(', ') || 'threat';
  what.append(document.createTextNode(cats + (x.user ? `  ·  ${x.user}` : '')));
  if (x.rules && x.rules.length) what.append(el('code', null, `  ${x.rules.join(', ')}`));
  if (x.snippet) what.title = x.snippet;
  li.append(el('time', null, clock(x.ts_ms)), el('span', `pill ${x.risk_level}`, x.risk_level), what, el('span', `pill ${x.blocked ? 'blocked' : ''}`, x.blocked ? 'blocked' : 'flagged'));
  li.dataset.id = x.id;
  return li;
}
// `/api/security/events` rows are detector matches, newest first; several may share a request.
function byRequest(events) {
  const rows = new Map();
  for (const e of events) {
    let r = rows.get(e.request_id);
    if (!r) {
      r = { id: e.request_id, ts_ms: e.ts_ms, user: e.user, model: e.model, risk_level: e.risk_level, blocked: e.blocked, categories: [], rules: [], snippet: e.snippet };
      rows.set(e.request_id, r);
    }
    if (!r.categories.includes(e.category)) r.categories.push(e.category);
    if (!r.rules.includes(e.rule)) r.rules.push(e.rule);
  }
  return [...rows.values()];
}
function prepend(list, node) {
  const first = list.firstElementChild;
  if (first && first.classList.contains('empty')) first.remove();
  list.prepend(node);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}
function isThreat(x) { return x.blocked || (x.risk_level && x.risk_level !== 'none'); }
function onFeedItem(x) {
  if (!matches(x)) return;
  prepend($('feed-requests'), feedRow(x, true));
  $('feed-count').textContent = `${nf.format(++state.feedCount)} live`;
  if (isThreat(x) && !$('feed-security').querySelector(`li[data-id="${CSS.escape(x.id)}"]`)) {
    prepend($('feed-security'), secRow(x, true));
    $('sec-count').textContent = `${state.secSummary} · ${nf.format(++state.secCount)} live since`;
  }
}
async function loadFeeds() {
  await Promise.all([loadRequests(), loadSecurity()]);
}
async function loadRequests() {
  const f = filters();
  const q = new URLSearchParams({ limit: '40', since: String(f.since) });
  if (f.model) q.set('model', f.model);
  if (f.user) q.set('user_id', f.user);
  const page = await json(`/api/requests?${q}`);
  const rows = page.items.map((r) => ({
    id: r.id, ts_ms: r.ts_ms, user: r.user, model: r.upstream_model || r.model, status: r.status, outcome: r.outcome, latency: r.latency,
    tokens: r.prompt_tokens != null || r.completion_tokens != null ? (r.prompt_tokens || 0) + (r.completion_tokens || 0) : null,
    cost: r.cost, blocked: r.blocked, judge: r.judge,
  }));
  const list = $('feed-requests');
  if (rows.length) list.replaceChildren(...rows.map((r) => feedRow(r, false))); else empty(list, 'No requests yet — they appear here live');
}
// The security feed reads the stored detector matches (not the request log, where threats are
// a few among many), grouped by request; live threats are prepended until the next load.
const SEC_EVENTS = 500;
async function loadSecurity() {
  const f = filters();
  const q = new URLSearchParams({ limit: String(SEC_EVENTS), since: String(f.since) });
  if (f.user) q.set('user_id', f.user);
  const page = await json(`/api/security/events?${q}`);
  const events = page.items.filter((e) => !f.model || e.model === f.model);
  const rows = byRequest(events).slice(0, FEED_MAX);
  state.secCount = 0;
  const more = page.next_cursor ? '+' : '';
  state.secSummary = `${nf.format(events.length)}${more} events in ${nf.format(rows.length)}${more} requests`;
  $('sec-count').textContent = state.secSummary;
  const sec = $('feed-security');
  if (rows.length) sec.replaceChildren(...rows.map((r) => secRow(r, false))); else empty(sec, 'No security events in this range');
}
function connectStream() {
  if (state.source) state.source.close();
  const src = new EventSource('/api/events/stream');
  state.source = src;
  const live = $('live-state');
  src.onopen = () => { live.className = 'live on'; $('live-text').textContent = 'live'; };
  src.onerror = () => { live.className = 'live off'; $('live-text').textContent = 'reconnecting'; checkSession(); };
  src.addEventListener('request', (e) => { try { onFeedItem(JSON.parse(e.data)); } catch (err) { console.warn('bad feed event', err); } });
  src.addEventListener('lagged', (e) => { $('feed-count').textContent = `skipped ${e.data} while behind`; });
}

// ---------- auth ----------
async function checkSession() {
  const s = await (await fetch('/api/session', { credentials: 'same-origin' })).json();
  $('sign-out').hidden = !s.auth_required || !s.authenticated;
  if (!s.authenticated) showSignIn();
  return s.authenticated;
}
function showSignIn() {
  stop();
  $('main').hidden = true;
  $('signin').hidden = false;
  $('token').focus();
}
async function signIn(ev) {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const rsp = await fetch('/api/session', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: $('token').value }) });
  if (!rsp.ok) { $('signin-error').textContent = rsp.status === 401 ? 'That token is not right.' : `Sign-in failed (${rsp.status}).`; return; }
  $('token').value = '';
  start();
}
async function signOut() {
  await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin' });
  showSignIn();
}

// ---------- lifecycle ----------
function guard(fn) {
  return () => fn().catch((e) => { if (e instanceof Unauthorized) showSignIn(); else console.warn(e.message || e); });
}
function stop() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  if (state.source) { state.source.close(); state.source = null; }
}
async function start() {
  if (!(await checkSession())) return;
  $('signin').hidden = true;
  $('main').hidden = false;
  stop();
  updateExportLinks();
  const live = guard(pollLive), range = guard(pollRange), feeds = guard(loadFeeds);
  const alerts = guard(pollAlerts), reports = guard(pollReports), security = guard(loadSecurity);
  const quotas = guard(pollQuotas);
  // Every panel runs on its own clock from now: the live charts take a sample every 2 s even
  // while a slow range query (analytics over a large store) is still running.
  state.timers.push(setInterval(live, POLL_LIVE_MS), setInterval(range, POLL_RANGE_MS), setInterval(alerts, POLL_RANGE_MS),
    setInterval(reports, POLL_RANGE_MS), setInterval(security, POLL_RANGE_MS), setInterval(quotas, POLL_LIVE_MS));
  connectStream();
  live(); range(); feeds(); alerts(); reports(); quotas();
}
function refilter() { updateExportLinks(); guard(pollRange)(); guard(loadFeeds)(); }

function initTheme() {
  const saved = localStorage.getItem('gatehouse-theme');
  const dark = saved ? saved === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  $('theme').addEventListener('click', () => {
    const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    localStorage.setItem('gatehouse-theme', next);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  initTheme();
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('f-range').addEventListener('change', refilter);
  $('f-model').addEventListener('change', refilter);
  $('f-user').addEventListener('change', refilter);
  // Enter in the user field would submit the form, which reloads the page and drops the filter.
  $('filters').addEventListener('submit', (e) => e.preventDefault());
  window.addEventListener('resize', () => { drawLive(); if (state.usage) drawTimeseries(state.usage.timeseries); });
  start();
});
