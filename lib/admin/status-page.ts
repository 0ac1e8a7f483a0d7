/**
 * The admin status page: one self-contained HTML document (inline CSS and script, no CDN, no build step) that reads
 * the admin JSON API and the metrics every few seconds. The token typed into its login form lives only in the
 * page's memory (a variable of its script: a reload asks for it again), never in sessionStorage, localStorage, a
 * cookie or a URL, where another page of the same origin could read it; it travels only as `Authorization: Bearer`.
 * Every call also sends `x-sticky-admin: 1`, which the routes that change state require. A strict
 * Content-Security-Policy admits exactly this page's own script and style (by hash) and requests to its own origin.
 * Besides drain/undrain it starts evacuations (per upstream) and rebalances (per pool) and lists this gateway's
 * move jobs (`GET /moves`).
 *
 * Why ~400 lines: about 340 of them are the page itself (its CSS, script and markup as template strings), kept in
 * one module so the CSP hashes are computed from exactly the text served.
 */
import { createHash } from 'node:crypto'
import type { FastifyReply } from 'fastify'

/** How often the page refreshes, in ms. */
export const STATUS_PAGE_REFRESH_MS = 3000

const STYLE = `
:root { color-scheme: light; --fg: #1d2430; --muted: #5d6878; --line: #dde2ea; --bg: #f5f7fa; --card: #fff;
  --active: #2f855a; --draining: #b7791f; --down: #c53030; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #1d2430; color: #fff; }
header.top h1 { font-size: 17px; margin: 0; font-weight: 600; }
header.top .meta { color: #b8c2d0; font-size: 12px; flex: 1; }
header.top button { background: transparent; color: #fff; border: 1px solid #5d6878; }
main { padding: 20px 24px; max-width: 1180px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin-bottom: 18px; }
.card h2 { margin: 0 0 4px; font-size: 16px; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px 28px; margin: 8px 0 14px; }
.kpi .v { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.kpi .k { color: var(--muted); font-size: 12px; }
.layout { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px; align-items: start; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 7px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.url { color: var(--muted); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
.state { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.state.active { background: var(--active); } .state.draining { background: var(--draining); } .state.down { background: var(--down); } .state.removed { background: #8a94a3; }
button { font: inherit; font-size: 12px; padding: 4px 11px; border-radius: 5px; border: 1px solid var(--line); background: #fff; color: var(--fg); cursor: pointer; }
button:hover { border-color: var(--accent); } button:disabled { opacity: .5; cursor: default; }
td.actions button + button { margin-left: 6px; }
.card h2 button { margin-left: 12px; vertical-align: 1px; }
.job-state { font-weight: 600; } .job-state.running { color: var(--draining); } .job-state.done { color: var(--active); } .job-state.cancelled { color: var(--muted); }
td.failed { color: var(--down); white-space: normal; }
.chart-title { color: var(--muted); font-size: 12px; margin: 0 0 4px; }
svg text { font: 12px system-ui, -apple-system, "DejaVu Sans", sans-serif; fill: var(--fg); }
svg .bar.active { fill: var(--active); } svg .bar.draining { fill: var(--draining); } svg .bar.down { fill: var(--down); } svg .bar.removed { fill: #8a94a3; }
svg .track { fill: #edf0f5; }
#login { max-width: 380px; margin: 12vh auto; }
#login label { display: block; color: var(--muted); margin-bottom: 6px; }
#login input { width: 100%; font: inherit; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; margin-bottom: 12px; }
#login button { background: var(--accent); color: #fff; border-color: var(--accent); padding: 7px 16px; font-size: 14px; }
.error { color: var(--down); min-height: 1.4em; }
#error:empty { display: none; }
.note { color: var(--muted); font-size: 12px; }
[hidden] { display: none !important; }
@media (max-width: 820px) { .layout { grid-template-columns: 1fr; } }
`

const SCRIPT = `
'use strict'
;(function () {
  var config = document.getElementById('sticky-admin').dataset
  var base = location.pathname.replace(/\\/+$/, '')
  var REFRESH_MS = ${STATUS_PAGE_REFRESH_MS}
  var SVG = 'http://www.w3.org/2000/svg'
  // Page memory only: web storage and cookies are readable by every page of this origin.
  var token = null
  var previous = null
  var timer = null

  function $ (id) { return document.getElementById(id) }
  function el (tag, attrs, children) {
    var node = document.createElement(tag)
    for (var name in attrs || {}) node.setAttribute(name, attrs[name])
    ;(children || []).forEach(function (child) { node.append(child) })
    return node
  }
  function svg (tag, attrs, text) {
    var node = document.createElementNS(SVG, tag)
    for (var name in attrs) node.setAttribute(name, attrs[name])
    if (text !== undefined) node.textContent = text
    return node
  }
  function fmt (n, digits) { return n === null || n === undefined || isNaN(n) ? '\\u2013' : n.toFixed(digits || 0) }

  function Unauthorized () {}
  function call (path, method) {
    var headers = { accept: 'application/json, text/plain', 'x-sticky-admin': '1' }
    if (token) headers.authorization = 'Bearer ' + token
    return fetch(base + path, { method: method || 'GET', headers: headers, cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (res.status === 401) throw new Unauthorized()
        return res
      })
  }

  function showLogin (message) {
    clearTimeout(timer)
    $('app').hidden = true
    $('login').hidden = false
    $('login-error').textContent = message || ''
    $('token').focus()
  }
  function showApp () {
    $('login').hidden = true
    $('app').hidden = false
    $('logout').hidden = config.auth !== 'token'
  }

  function parseMetrics (text) {
    var pools = {}
    text.split('\\n').forEach(function (line) {
      if (line === '' || line[0] === '#') return
      var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)\\})?\\s+(\\S+)/.exec(line)
      if (!m || (m[1] !== 'sticky_requests_total' && m[1] !== 'sticky_forward_errors_total')) return
      var labels = {}
      var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\]|\\\\.)*)"/g
      var l
      while ((l = re.exec(m[2] || '')) !== null) labels[l[1]] = l[2].replace(/\\\\(.)/g, function (_, c) { return c === 'n' ? '\\n' : c })
      var pool = pools[labels.pool] || (pools[labels.pool] = { requests: 0, errors: 0, decisions: {} })
      var value = Number(m[3])
      if (m[1] === 'sticky_requests_total') {
        pool.requests += value
        pool.decisions[labels.decision] = (pool.decisions[labels.decision] || 0) + value
      } else {
        pool.errors += value
      }
    })
    return pools
  }

  function rate (now, before, dt) { return before === undefined || dt <= 0 ? null : Math.max(0, now - before) / dt }

  function chart (rows) {
    var max = Math.max.apply(null, rows.map(function (r) { return r.sessions || 0 }).concat([1]))
    var rowH = 30
    var labelW = 90
    var width = 420
    var barW = width - labelW - 60
    var node = svg('svg', { viewBox: '0 0 ' + width + ' ' + (rows.length * rowH + 6), width: '100%', role: 'img', 'aria-label': 'Live sessions per upstream' })
    rows.forEach(function (r, i) {
      var y = i * rowH + 4
      var w = Math.round(barW * (r.sessions || 0) / max)
      node.append(svg('text', { x: 0, y: y + 17 }, r.id))
      node.append(svg('rect', { class: 'track', x: labelW, y: y + 3, width: barW, height: 20, rx: 3 }))
      if (w > 0) node.append(svg('rect', { class: 'bar ' + r.state, x: labelW, y: y + 3, width: w, height: 20, rx: 3 }))
      node.append(svg('text', { x: labelW + barW + 8, y: y + 17 }, r.sessions === null ? '?' : String(r.sessions)))
    })
    return node
  }

  function kpi (value, key, name) { return el('div', { class: 'kpi', 'data-kpi': name }, [el('div', { class: 'v' }, [value]), el('div', { class: 'k' }, [key])]) }

  function running (jobs, kind, pool, upstream) {
    return (jobs || []).some(function (j) { return j.state === 'running' && j.kind === kind && j.pool === pool && (upstream === undefined || j.upstream === upstream) })
  }

  function poolCard (name, rows, stats, jobs) {
    var total = rows.reduce(function (sum, r) { return sum + (r.sessions || 0) }, 0)
    var tbody = el('tbody')
    rows.forEach(function (r) {
      var action = r.state === 'draining' ? 'undrain' : 'drain'
      var button = el('button', { type: 'button', 'data-action': action }, [action === 'drain' ? 'Drain' : 'Undrain'])
      button.addEventListener('click', function () { act(button, r, action) })
      var evacuating = running(jobs, 'evacuate', name, r.id)
      var evacuate = el('button', { type: 'button', 'data-action': 'evacuate', title: 'Drain it and move its sessions (with their state) to the others' }, [evacuating ? 'Evacuating\u2026' : 'Evacuate'])
      evacuate.disabled = evacuating
      evacuate.addEventListener('click', function () { act(evacuate, r, 'evacuate') })
      tbody.append(el('tr', { 'data-upstream': name + '/' + r.id }, [
        el('td', { class: 'id' }, [r.id]),
        el('td', { class: 'url', title: r.url }, [r.url]),
        el('td', {}, [el('span', { class: 'state ' + r.state }, [r.state])]),
        el('td', { class: 'num weight' }, [String(r.weight)]),
        el('td', { class: 'num sessions' }, [r.sessions === null ? '?' : String(r.sessions)]),
        el('td', { class: 'actions' }, [button, evacuate])
      ]))
    })
    var head = el('tr', {}, ['Upstream', 'URL', 'State', 'Weight', 'Sessions', ''].map(function (h, i) { return el('th', i === 3 || i === 4 ? { class: 'num' } : {}, [h]) }))
    var decided = stats.decisions
    var routed = decided === null ? 0 : decided.hit + decided.new + decided.rebind + decided.degraded + decided.unbound
    var hitRatio = decided === null ? null : routed > 0 ? 100 * decided.hit / routed : null
    var rebalancing = running(jobs, 'rebalance', name)
    var rebalance = el('button', { type: 'button', 'data-action': 'rebalance', title: 'Move sessions from the fullest upstreams to the emptiest' }, [rebalancing ? 'Rebalancing\u2026' : 'Rebalance'])
    rebalance.disabled = rebalancing
    rebalance.addEventListener('click', function () { start(rebalance, '/rebalance?pool=' + encodeURIComponent(name), 'rebalance') })
    return el('section', { class: 'card pool', 'data-pool': name }, [
      el('h2', {}, ['Pool ' + name, rebalance]),
      el('div', { class: 'kpis' }, [
        kpi(String(total), 'live sessions (all gateways)', 'sessions'),
        kpi(fmt(stats.rps, 1), 'requests/s (this gateway)', 'rps'),
        kpi(fmt(stats.eps, 2), 'errors/s (502/503/504)', 'eps'),
        kpi(hitRatio === null ? '\\u2013' : fmt(hitRatio, 0) + ' %', 'hit ratio, last ' + (REFRESH_MS / 1000) + ' s', 'hits'),
        kpi(fmt(stats.errors, 0), 'errors since start', 'errors')
      ]),
      el('div', { class: 'layout' }, [
        el('table', {}, [el('thead', {}, [head]), tbody]),
        el('div', {}, [el('p', { class: 'chart-title' }, ['Live sessions per upstream']), chart(rows)])
      ])
    ])
  }

  function failures (failed) {
    return Object.keys(failed).map(function (reason) { return reason + ' ' + failed[reason] }).join(', ')
  }

  function movesCard (jobs) {
    if (jobs === null) return el('section', { class: 'card', id: 'moves' }, [el('h2', {}, ['Moves']), el('p', { class: 'note' }, ['Not available.'])])
    var head = el('tr', {}, ['Job', 'Pool', 'Upstream', 'State', 'Moved', 'Stayed (why)', 'Started'].map(function (h, i) { return el('th', i === 4 ? { class: 'num' } : {}, [h]) }))
    var tbody = el('tbody')
    jobs.forEach(function (j) {
      tbody.append(el('tr', { 'data-job': j.id }, [
        el('td', {}, [j.kind]),
        el('td', {}, [j.pool]),
        el('td', {}, [j.upstream === undefined || j.upstream === null ? '\u2013' : j.upstream]),
        el('td', {}, [el('span', { class: 'job-state ' + j.state }, [j.state])]),
        el('td', { class: 'num moved' }, [String(j.moved)]),
        el('td', { class: 'failed' }, [failures(j.failed)]),
        el('td', {}, [new Date(j.startedAt).toLocaleTimeString()])
      ]))
    })
    return el('section', { class: 'card', id: 'moves' }, [
      el('h2', {}, ['Moves']),
      jobs.length === 0
        ? el('p', { class: 'note' }, ['No evacuation or rebalance on this gateway yet.'])
        : el('table', {}, [el('thead', {}, [head]), tbody])
    ])
  }

  function render (upstreams, metrics, jobs, at) {
    var pools = {}
    upstreams.forEach(function (u) { (pools[u.pool] || (pools[u.pool] = [])).push(u) })
    var dt = previous === null ? 0 : (at - previous.at) / 1000
    var cards = Object.keys(pools).map(function (name) {
      var now = metrics === null ? null : (metrics[name] || { requests: 0, errors: 0, decisions: {} })
      var before = previous === null || previous.metrics === null ? undefined : (previous.metrics[name] || { requests: 0, errors: 0, decisions: {} })
      var decisions = null
      if (now !== null && before !== undefined) {
        decisions = {}
        ;['hit', 'new', 'rebind', 'degraded', 'unbound'].forEach(function (d) { decisions[d] = Math.max(0, (now.decisions[d] || 0) - (before.decisions[d] || 0)) })
      }
      return poolCard(name, pools[name], {
        rps: now === null ? null : rate(now.requests, before && before.requests, dt),
        eps: now === null ? null : rate(now.errors, before && before.errors, dt),
        errors: now === null ? null : now.errors,
        decisions: decisions
      }, jobs)
    })
    $('pools').replaceChildren.apply($('pools'), cards.concat([movesCard(jobs)]))
    previous = { at: at, metrics: metrics }
    $('updated').textContent = 'updated ' + new Date(at).toLocaleTimeString() + ' \\u00b7 every ' + (REFRESH_MS / 1000) + ' s'
  }

  function refresh () {
    clearTimeout(timer)
    var at = Date.now()
    var wantMetrics = config.metrics === '1'
    return Promise.all([
      call('/upstreams').then(function (res) { if (!res.ok) throw new Error('upstreams: HTTP ' + res.status); return res.json() }),
      wantMetrics ? call('/metrics').then(function (res) { return res.ok ? res.text() : null }) : Promise.resolve(null),
      call('/moves').then(function (res) { return res.ok ? res.json() : null })
    ]).then(function (results) {
      showApp()
      $('error').textContent = ''
      render(results[0], results[1] === null ? null : parseMetrics(results[1]), results[2], at)
      timer = setTimeout(refresh, REFRESH_MS)
    }, function (error) {
      if (error instanceof Unauthorized) {
        var had = token !== null
        token = null
        showLogin(had ? 'That token was not accepted.' : '')
        return
      }
      $('error').textContent = 'Refresh failed: ' + error.message
      timer = setTimeout(refresh, REFRESH_MS)
    })
  }

  function act (button, upstream, action) {
    start(button, '/upstreams/' + encodeURIComponent(upstream.id) + '/' + action + '?pool=' + encodeURIComponent(upstream.pool), action)
  }

  function start (button, path, action) {
    button.disabled = true
    call(path, 'POST').then(function (res) {
      if (!res.ok) return res.json().then(function (body) { throw new Error(body.message || ('HTTP ' + res.status)) })
    }).then(refresh, function (error) {
      button.disabled = false
      if (error instanceof Unauthorized) { showLogin('That token was not accepted.'); return }
      $('error').textContent = action + ' failed: ' + error.message
    })
  }

  $('login-form').addEventListener('submit', function (event) {
    event.preventDefault()
    token = $('token').value.trim()
    $('token').value = ''
    if (token === '') return
    refresh()
  })
  $('logout').addEventListener('click', function () {
    token = null
    showLogin('')
  })

  if (config.auth === 'token' && token === null) showLogin('')
  else refresh()
})()
`

function sha256 (text: string): string {
  return "'sha256-" + createHash('sha256').update(text, 'utf8').digest('base64') + "'"
}

/**
 * The page's Content-Security-Policy: nothing but its own inline script and style (by hash), requests to its own
 * origin, no framing, no forms posting anywhere, no plugins.
 */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** How the page authenticates its API calls: a typed bearer token, or whatever the user's own hook accepts. */
export type StatusPageAuth = 'token' | 'hook'

/**
 * @param auth - `token` shows the login form until a token is typed in; `hook` calls the API straight away
 * @param metrics - whether `/metrics` is served (rates and error counts come from it)
 * @returns the page's HTML
 */
export function renderStatusPage (auth: StatusPageAuth, metrics: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>fastify-sticky · status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<div id="sticky-admin" data-auth="${auth}" data-metrics="${metrics ? '1' : '0'}" hidden></div>
<header class="top"><h1>fastify-sticky</h1><div class="meta" id="updated"></div><button type="button" id="logout" hidden>Log out</button></header>
<main>
  <section class="card" id="login" hidden>
    <h2>Admin token</h2>
    <form id="login-form" autocomplete="off">
      <label for="token">Bearer token (kept in this page only: a reload asks again)</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false">
      <button type="submit">Sign in</button>
    </form>
    <p class="error" id="login-error"></p>
  </section>
  <div id="app" hidden>
    <p class="error" id="error"></p>
    <div id="pools"></div>
    <p class="note">Sessions are counted over the shared store (every gateway); requests/s, errors and moves are this gateway's.
    Draining keeps an upstream's sessions and sends it no new ones; evacuating drains it and moves its sessions to the
    others, with their state where the app serves fastify-sticky/upstream; rebalancing evens the pool out.</p>
  </div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
}

/**
 * Sends the page with its security headers.
 * @param html - from {@link renderStatusPage}
 */
export function sendStatusPage (reply: FastifyReply, html: string): FastifyReply {
  return reply
    .header('content-type', 'text/html; charset=utf-8')
    .header('content-security-policy', STATUS_PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .send(html)
}
