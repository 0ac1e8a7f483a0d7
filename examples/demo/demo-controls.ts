/**
 * The demo's own controls (`/_demo/`), for what the status page does not do: add the spare shop upstream to the pool
 * at run time (`app.sticky.pool('shop').add(...)`), and start a few simulated shoppers with carts, so a rebalance
 * has sessions to spread. One page without scripts; its form posts the admin token (compared in constant time),
 * never kept. Demo-only: a real deployment adds upstreams from its own tooling (configuration reload, discovery).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { PRODUCTS, SHOP_SESSION_COOKIE } from './shop-upstream'

/** Where the controls are served on the gateway. */
export const DEMO_CONTROLS_PATH = '/_demo'

/** Shoppers started per click. */
export const SHOPPERS_PER_CLICK = 12

/** What {@link registerDemoControls} works with. */
export interface DemoControlsOptions {
  /** The admin token, which the form must carry. */
  token: string
  /** The pool the spare joins. */
  pool: string
  /** The shop started outside the pool, if any. */
  spare: { id: string, url: string } | undefined
  /** The gateway's own URL (known once it listens), through which the shoppers shop. */
  gatewayUrl: () => string
  /** The status page's path. */
  statusPage: string
}

const MAX_SHOPPERS = 120
const FORM_BODY_LIMIT_BYTES = 1024

function digest (text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** One shopper: a first request that gets the cookies, then one item added with them. */
async function shop (gatewayUrl: string, item: string): Promise<void> {
  const first = await fetch(`${gatewayUrl}/api/cart`, { redirect: 'manual' })
  await first.arrayBuffer()
  const cookies = first.headers.getSetCookie().map((line) => line.split(';')[0])
  if (!cookies.some((c) => c.startsWith(`${SHOP_SESSION_COOKIE}=`))) throw new Error(`no shop session from the gateway (HTTP ${first.status})`)
  const added = await fetch(`${gatewayUrl}/cart`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: cookies.join('; '), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ item }).toString()
  })
  await added.arrayBuffer()
}

/**
 * Serves `GET /_demo/` (the page) and `POST /_demo/` (its form: `token`, `action` = `spare` | `shoppers`), in a
 * context of their own: the gateway's pass-through body parsing stays as it is on every other route.
 * @param app - the demo's gateway, with the sticky plugin registered (register this plugin with `app.register`)
 */
export async function demoControls (app: FastifyInstance, options: DemoControlsOptions): Promise<void> {
  const { pool, spare } = options
  const expected = digest(options.token)
  let shoppers = 0
  let message = ''

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT_BYTES },
    (_request, body, done) => { done(null, new URLSearchParams(body as string)) })

  const spareAdded = (): boolean => spare !== undefined && app.sticky.pool(pool).upstreams.some((u) => u.id === spare.id)

  app.get(`${DEMO_CONTROLS_PATH}/`, async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    reply.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    reply.type('text/html; charset=utf-8')
    const members = app.sticky.pool(pool).upstreams.map((u) => u.id).join(', ')
    const spareLine = spare === undefined
      ? '<p>This demo runs without a spare upstream (start it with two or more shop ports).</p>'
      : spareAdded()
        ? `<p>Upstream <strong>${escapeHtml(spare.id)}</strong> is in the pool now: press <em>Rebalance</em> on the <a href="${escapeHtml(options.statusPage)}">status page</a> to give it its share.</p>`
        : `<button type="submit" name="action" value="spare">Add upstream ${escapeHtml(spare.id)} to pool ${escapeHtml(pool)}</button>`
    const flash = message === '' ? '' : `<p class="flash" id="flash">${escapeHtml(message)}</p>`
    message = ''
    return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastify-sticky demo · controls</title>
<style>
  body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; background: #f5f7fa; }
  main { max-width: 40rem; margin: 0 auto; padding: 1.5rem; }
  form, .card { background: #fff; border: 1px solid #dde2ea; border-radius: 8px; padding: 1rem 1.25rem; margin-top: 1rem; }
  label { display: block; color: #5d6878; margin-bottom: .3rem; }
  input { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem .6rem; border: 1px solid #dde2ea; border-radius: 6px; margin-bottom: .8rem; }
  button { font: inherit; padding: .4rem 1rem; border-radius: 6px; border: 1px solid #2b6cb0; background: #2b6cb0; color: #fff; cursor: pointer; margin: 0 .5rem .5rem 0; }
  .flash { background: #e6fffa; border: 1px solid #81e6d9; border-radius: 6px; padding: .5rem .8rem; }
</style>
</head>
<body>
<main>
  <h1>Demo controls</h1>
  <div class="card">
    <p>Pool <strong>${escapeHtml(pool)}</strong>: <span id="members">${escapeHtml(members)}</span>. Simulated shoppers so far: <span id="shoppers">${shoppers}</span>.</p>
    <p>The <a href="${escapeHtml(options.statusPage)}">status page</a> evacuates and rebalances; this page does what it does not.</p>
  </div>
  ${flash}
  <form method="post" action="${DEMO_CONTROLS_PATH}/" autocomplete="off">
    <label for="token">Admin token (printed in the terminal; sent with this form only, never kept)</label>
    <input id="token" name="token" type="password" autocomplete="off" required>
    <button type="submit" name="action" value="shoppers">Add ${SHOPPERS_PER_CLICK} shoppers with carts</button>
    ${spareLine}
  </form>
</main>
</body>
</html>
`
  })

  app.post(`${DEMO_CONTROLS_PATH}/`, async (request, reply) => {
    const form = request.body instanceof URLSearchParams ? request.body : new URLSearchParams()
    if (!timingSafeEqual(digest(form.get('token') ?? ''), expected)) {
      return reply.code(401).type('text/plain; charset=utf-8').send('wrong admin token\n')
    }
    const action = form.get('action')
    if (action === 'spare' && spare !== undefined) {
      if (!spareAdded()) await app.sticky.pool(pool).add({ id: spare.id, url: spare.url })
      message = `Upstream ${spare.id} joined pool ${pool}: it takes new sessions; Rebalance moves existing ones to it.`
    } else if (action === 'shoppers') {
      const count = Math.min(SHOPPERS_PER_CLICK, MAX_SHOPPERS - shoppers)
      await Promise.all(Array.from({ length: count }, (_, i) => shop(options.gatewayUrl(), PRODUCTS[(shoppers + i) % PRODUCTS.length])))
      shoppers += count
      message = count === 0 ? `No more: ${MAX_SHOPPERS} shoppers is the demo's limit.` : `${count} shoppers started, one cart each.`
    } else {
      return reply.code(400).type('text/plain; charset=utf-8').send('action must be spare or shoppers\n')
    }
    // 303: the browser follows with a GET, so a reload does not post the form again.
    return reply.redirect(`${DEMO_CONTROLS_PATH}/`, 303)
  })
}
