/**
 * A tiny stateful "shop" for the demo: the kind of app sticky sessions exist for. It keeps every cart in its own
 * process memory, keyed by its own session cookie `shop_sid`, so a request that reaches another replica sees an
 * empty cart. It knows nothing about the gateway's routing cookie; with `handoffSecret` it serves
 * fastify-sticky/upstream, so the gateway can move a cart to another replica (evacuate, rebalance): the gateway names
 * each session with a handle (`request.stickySession`), and the shop remembers which of its carts a handle uses.
 */
import { randomBytes } from 'node:crypto'
import fastifyCookie from '@fastify/cookie'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import stickyUpstream from '../../lib/upstream'

/** Options of {@link startShop}. */
export interface ShopOptions {
  /** Upstream id shown on every page (`a`, `b`, ...). */
  id: string
  /** Port to listen on; 0 picks a free one. */
  port: number
  /** @defaultValue `'127.0.0.1'` */
  host?: string
  /** Serve fastify-sticky/upstream with this secret (the gateway's `handoff.secret`), so carts can move; off without it. */
  handoffSecret?: string
  /** The gateway's status page and demo controls (paths on the page's origin), named in the page's hints. */
  operatorPages?: { statusPage: string, controls: string }
}

/** A running shop. */
export interface Shop {
  /** `http://<host>:<port>` */
  url: string
  /** Stops the server and forgets every cart. */
  close(): Promise<void>
}

/** One line of a cart, as `GET /api/cart` returns it. */
export interface CartItem {
  name: string
  quantity: number
}

/** What the shop hands over when the gateway moves a session: its own session id (the browser keeps the cookie) and the cart. */
export interface ShopSessionState {
  sid: string
  cart: CartItem[]
}

/** The app's own session cookie (not the gateway's routing cookie). */
export const SHOP_SESSION_COOKIE = 'shop_sid'

/** What the "Add" buttons offer; any other name can be typed in. */
export const PRODUCTS: readonly string[] = ['Green tea', 'Espresso beans', 'Dark chocolate', 'Oat cookies']

// Demo-sized bounds, so a script hammering the shop cannot grow its memory without limit.
const MAX_CARTS = 10_000
const MAX_LINES_PER_CART = 20
const MAX_QUANTITY = 99
const MAX_ITEM_NAME_LENGTH = 60
const FORM_BODY_LIMIT_BYTES = 4096
const SESSION_ID_RE = /^[A-Za-z0-9_-]{22}$/

const UPSTREAM_COLORS: Record<string, string> = { a: '#1d4ed8', b: '#15803d', c: '#c2410c' }

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/**
 * Starts one shop upstream.
 * @param opts - its id, port and host
 * @returns its URL and a `close()`
 */
export async function startShop (opts: ShopOptions): Promise<Shop> {
  const { id } = opts
  const host = opts.host ?? '127.0.0.1'
  // Map order is insertion order: the first key is the oldest cart, dropped when the shop is full.
  const carts = new Map<string, CartItem[]>()
  // The gateway's session handle → this shop's session id: a move names the session by its handle.
  const sids = new Map<string, string>()
  // Carts that arrived from another upstream, so the page can say so.
  const handedOver = new Set<string>()
  const remember = (handle: string | null, sid: string): void => {
    if (handle === null || sids.get(handle) === sid) return
    sids.delete(handle)
    if (sids.size >= MAX_CARTS) sids.delete(sids.keys().next().value as string)
    sids.set(handle, sid)
  }
  const forget = (sid: string): void => {
    carts.delete(sid)
    handedOver.delete(sid)
  }

  const app = Fastify({ logger: false })
  await app.register(fastifyCookie)
  if (opts.handoffSecret !== undefined) {
    // Before the routes: the plugin holds a moving session's requests until its cart has been handed over.
    await app.register(stickyUpstream, {
      secret: opts.handoffSecret,
      exportSession (handle): ShopSessionState | null {
        const sid = sids.get(handle)
        const cart = sid === undefined ? undefined : carts.get(sid)
        // null: nothing kept for it here, so the gateway moves the session without state.
        return sid === undefined || cart === undefined ? null : { sid, cart }
      },
      importSession (handle, state) {
        const { sid, cart } = checkState(state)
        if (!carts.has(sid) && carts.size >= MAX_CARTS) forget(carts.keys().next().value as string)
        carts.set(sid, cart)
        handedOver.add(sid)
        remember(handle, sid)
      },
      dropSession (handle) {
        const sid = sids.get(handle)
        sids.delete(handle)
        if (sid !== undefined) forget(sid)
      }
    })
  }
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT_BYTES },
    (_request, body, done) => { done(null, new URLSearchParams(body as string)) })

  // The session a request belongs to: the one its cookie names if this process knows it, else a new one. A
  // cookie issued by another replica is unknown here, exactly like a real in-memory session store after a restart.
  function cartOf (request: FastifyRequest, reply: FastifyReply): CartItem[] {
    const sid = request.cookies[SHOP_SESSION_COOKIE]
    const known = sid !== undefined && SESSION_ID_RE.test(sid) ? carts.get(sid) : undefined
    if (known !== undefined) {
      remember(request.stickySession ?? null, sid as string)
      return known
    }
    const fresh = randomBytes(16).toString('base64url')
    if (carts.size >= MAX_CARTS) forget(carts.keys().next().value as string)
    const cart: CartItem[] = []
    carts.set(fresh, cart)
    remember(request.stickySession ?? null, fresh)
    reply.setCookie(SHOP_SESSION_COOKIE, fresh, { path: '/', httpOnly: true, sameSite: 'lax' })
    return cart
  }
  const wasHandedOver = (request: FastifyRequest): boolean => handedOver.has(request.cookies[SHOP_SESSION_COOKIE] ?? '')

  app.get('/', async (request, reply) => {
    reply.header('cache-control', 'no-store')
    // Nothing external: inline CSS only, no scripts, forms post back to this origin.
    reply.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    reply.type('text/html; charset=utf-8')
    const cart = cartOf(request, reply)
    return renderPage(id, cart, wasHandedOver(request), opts.operatorPages)
  })

  app.get('/api/cart', async (request, reply) => {
    reply.header('cache-control', 'no-store')
    const items = cartOf(request, reply)
    return { upstream: id, items, handedOver: wasHandedOver(request) }
  })

  app.post('/cart', async (request, reply) => {
    const name = formField(request.body, 'item').trim().replace(/\s+/g, ' ')
    if (name === '' || name.length > MAX_ITEM_NAME_LENGTH) {
      return reply.code(400).type('text/plain; charset=utf-8').send(`item must be 1-${MAX_ITEM_NAME_LENGTH} characters\n`)
    }
    const cart = cartOf(request, reply)
    const line = cart.find((item) => item.name === name)
    if (line !== undefined) line.quantity = Math.min(MAX_QUANTITY, line.quantity + 1)
    else if (cart.length < MAX_LINES_PER_CART) cart.push({ name, quantity: 1 })
    // 303: the browser follows with a GET, so a reload does not post the form again.
    return reply.redirect('/', 303)
  })

  app.post('/cart/clear', async (request, reply) => {
    cartOf(request, reply).length = 0
    return reply.redirect('/', 303)
  })

  app.get('/favicon.ico', async (_request, reply) => reply.code(204).send())

  const address = await app.listen({ port: opts.port, host })
  return { url: address, close: () => app.close() }
}

// The state comes from another upstream through the gateway, behind the shared secret; checked all the same, so a
// bad one fails the import (the session then stays where it was) instead of planting a malformed cart.
function checkState (state: unknown): ShopSessionState {
  const { sid, cart } = (state ?? {}) as Partial<ShopSessionState>
  const validLine = (item: CartItem): boolean => typeof item?.name === 'string' && item.name.length > 0 &&
    item.name.length <= MAX_ITEM_NAME_LENGTH && Number.isInteger(item.quantity) && item.quantity >= 1 && item.quantity <= MAX_QUANTITY
  if (typeof sid !== 'string' || !SESSION_ID_RE.test(sid) || !Array.isArray(cart) || cart.length > MAX_LINES_PER_CART || !cart.every(validLine)) {
    throw new TypeError('not a shop session: { sid, cart: [{ name, quantity }] }')
  }
  return { sid, cart: cart.map(({ name, quantity }) => ({ name, quantity })) }
}

function formField (body: unknown, name: string): string {
  return body instanceof URLSearchParams ? body.get(name) ?? '' : ''
}

function renderPage (id: string, cart: readonly CartItem[], handedOver: boolean, operatorPages?: ShopOptions['operatorPages']): string {
  const color = UPSTREAM_COLORS[id] ?? '#4b5563'
  const up = escapeHtml(id)
  const items = cart.length === 0
    ? '<p class="empty">Your cart is empty.</p>'
    : `<ul class="cart">${cart.map((item) => `<li><span class="qty">${item.quantity} ×</span> ${escapeHtml(item.name)}</li>`).join('')}</ul>`
  const products = PRODUCTS.map((name) => `
      <form method="post" action="/cart" class="product">
        <span>${escapeHtml(name)}</span>
        <button type="submit" name="item" value="${escapeHtml(name)}">Add</button>
      </form>`).join('')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop — upstream ${up}</title>
<style>
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; background: #f3f4f6; }
  main { max-width: 44rem; margin: 0 auto; padding: 1.5rem; }
  .banner { background: ${color}; color: #fff; border-radius: .75rem; padding: 1.25rem 1.5rem; }
  .banner h1 { margin: 0; font-size: 2.5rem; line-height: 1.2; }
  .banner p { margin: .25rem 0 0; opacity: .9; }
  section { background: #fff; border-radius: .75rem; padding: 1rem 1.5rem; margin-top: 1rem; box-shadow: 0 1px 2px rgb(0 0 0 / .06); }
  h2 { margin: 0 0 .5rem; font-size: 1.15rem; }
  .cart { margin: 0; padding-left: 1.25rem; }
  .qty { color: #6b7280; font-variant-numeric: tabular-nums; }
  .empty { color: #6b7280; margin: 0; }
  .product { display: flex; justify-content: space-between; align-items: center; padding: .4rem 0; border-bottom: 1px solid #e5e7eb; }
  .product:last-of-type { border-bottom: 0; }
  .custom { display: flex; gap: .5rem; margin-top: .75rem; }
  .custom input { flex: 1; font: inherit; padding: .35rem .5rem; border: 1px solid #d1d5db; border-radius: .375rem; }
  button { font: inherit; padding: .35rem .9rem; border: 0; border-radius: .375rem; background: ${color}; color: #fff; cursor: pointer; }
  button.secondary { background: #e5e7eb; color: #111827; }
  .hint { font-size: .95rem; color: #374151; }
  code { background: #f3f4f6; padding: 0 .25rem; border-radius: .25rem; }
  .moved { background: #fef3c7; color: #78350f; border-radius: .75rem; padding: .6rem 1.5rem; margin: 1rem 0 0; }
</style>
</head>
<body data-upstream="${up}">
<main>
  <div class="banner">
    <h1>Served by upstream ${up}</h1>
    <p>This cart lives only in the memory of upstream ${up}.</p>
  </div>
  ${handedOver ? `<p class="moved" id="handed-over">This cart was handed over to upstream ${up} by another upstream: the gateway moved your session, cart included.</p>` : ''}
  <section>
    <h2>Your cart</h2>
    ${items}
    <form method="post" action="/cart/clear" class="custom"><button type="submit" class="secondary">Clear cart</button></form>
  </section>
  <section>
    <h2>Products</h2>
    ${products}
    <form method="post" action="/cart" class="custom">
      <input name="item" maxlength="${MAX_ITEM_NAME_LENGTH}" placeholder="Something else…" aria-label="Item name" required>
      <button type="submit">Add</button>
    </form>
  </section>
  <section class="hint">
    <h2>Try it</h2>
    <p><strong>Reload:</strong> the cart stays, because the gateway keeps sending you to upstream ${up}.</p>
    <p><strong>Clear the <code>sticky</code> cookie or use a private window:</strong> you may land on another upstream and see an empty cart.</p>
    ${operatorPages === undefined ? '' : `<p><strong>Move your cart:</strong> on the <a href="${escapeHtml(operatorPages.statusPage)}">status page</a> (admin token in the terminal), press <em>Evacuate</em> on upstream ${up}, then reload this page: another upstream, the same cart.</p>
    <p><strong>Scale up:</strong> on the <a href="${escapeHtml(operatorPages.controls)}">demo controls</a>, add a few shoppers and the spare upstream, then press <em>Rebalance</em> on the status page: the new upstream takes its share of the carts.</p>`}
    <p>JSON: <a href="/api/cart">/api/cart</a></p>
  </section>
</main>
</body>
</html>
`
}
