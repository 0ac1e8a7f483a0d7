import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { AdminUpstreamView } from '../../lib/admin/routes'
import { STATUS_PAGE_REFRESH_MS } from '../../lib/admin/status-page'
import type { Page } from 'playwright-core'
import { openBrowser } from '../support/browser'
import { CookieJar, get } from '../support/http'
import { startUpstreams } from '../support/upstreams'
import { ADMIN_TOKEN, startAdminGateway } from './admin-gateway'

/** Where the screenshot goes (gitignored); docs/status-page.png is a copy an engineer looked at. */
const ARTIFACTS = path.join(__dirname, '..', 'artifacts')

/** Everything a script of the current page's origin can read without the page's own variables: web storage, cookies. */
async function readableStorage (page: Page): Promise<string> {
  return page.evaluate(() => JSON.stringify({
    session: Object.entries(sessionStorage),
    local: Object.entries(localStorage),
    cookie: document.cookie
  }))
}

t.test('status page in headless Chromium: login, live figures, drain', async (t) => {
  const upstreams = await startUpstreams(t, ['a', 'b', 'c'])
  const gw = await startAdminGateway(t, {
    upstreams,
    pools: {
      shop: { upstreams: upstreams.map((u, i) => ({ id: u.id, url: u.url, weight: i === 2 ? 2 : 1 })) },
      models: { upstreams: [{ id: 'm1', url: upstreams[0].url }, { id: 'm2', url: upstreams[1].url }] }
    },
    defaults: { pool: 'shop' },
    routes (app, metrics) {
      app.all('/models/*', { config: { sticky: { pool: 'models' } }, onResponse: metrics.responseHook('/models/*', 'models') }, (_q, reply) => reply.forward())
      app.all('/*', { config: { sticky: true }, onResponse: metrics.responseHook('/*', 'shop') }, (_q, reply) => reply.forward())
    }
  })
  // Sessions of different sizes per upstream: 9 shop clients (c has weight 2), 3 model clients.
  const clients: CookieJar[] = []
  for (let i = 0; i < 9; i++) {
    const jar = new CookieJar()
    await get(`${gw.url}/shop`, { jar })
    clients.push(jar)
  }
  const modelClients = Array.from({ length: 3 }, () => new CookieJar())
  for (const jar of modelClients) await get(`${gw.url}/models/x`, { jar })
  const expected = async (): Promise<AdminUpstreamView[]> => (await get(`${gw.admin}/upstreams`, { headers: gw.auth })).json()

  const { page, errors } = await openBrowser(t, { viewport: { width: 1240, height: 860 } })
  // The page refreshes from a timer every STATUS_PAGE_REFRESH_MS; with the page's clock under the test's control (it
  // runs at the real pace otherwise), a test that waits for the next refresh moves the clock on to it instead.
  await page.clock.install()
  const nextRefresh = (): Promise<void> => page.clock.fastForward(STATUS_PAGE_REFRESH_MS)
  const response = await page.goto(`${gw.admin}/`)
  t.equal(response?.status(), 200)
  t.match(response?.headers()['content-security-policy'], /default-src 'none'/)

  await t.test('a wrong token is refused at the login form', async (t) => {
    await page.locator('#token').fill('wrong-token-of-some-length')
    await page.locator('#login-form button').click()
    await page.locator('#login-error', { hasText: 'That token was not accepted.' }).waitFor()
    t.ok(await page.locator('#login').isVisible())
    t.ok(errors.every((e) => /401/.test(e)), 'the only console errors are the refused API calls')
    errors.length = 0
  })

  await t.test('the right token shows every upstream with its state and session count', async (t) => {
    await page.locator('#token').fill(ADMIN_TOKEN)
    await page.locator('#login-form button').click()
    await page.locator('tr[data-upstream="models/m2"]').waitFor()
    t.notOk(page.url().includes(ADMIN_TOKEN), 'the token is in no URL')
    const storage = await readableStorage(page)
    t.notOk(storage.includes(ADMIN_TOKEN.slice(0, 8)), `nothing of the token in sessionStorage, localStorage or cookies: ${storage}`)
    t.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0, 'web storage is empty')
    t.equal(await page.evaluate(() => document.cookie), '', 'no cookie either')
    for (const u of await expected()) {
      const row = page.locator(`tr[data-upstream="${u.pool}/${u.id}"]`)
      t.equal(await row.locator('.id').textContent(), u.id, `${u.pool}/${u.id}: id`)
      t.equal(await row.locator('.state').textContent(), u.state, `${u.pool}/${u.id}: state`)
      t.equal(await row.locator('.sessions').textContent(), String(u.sessions), `${u.pool}/${u.id}: sessions`)
      t.equal(await row.locator('.weight').textContent(), String(u.weight), `${u.pool}/${u.id}: weight`)
    }
    t.equal(await page.locator('section[data-pool="shop"] [data-kpi="sessions"] .v').textContent(), '9')
    t.equal(await page.locator('section[data-pool="models"] [data-kpi="sessions"] .v').textContent(), '3')
    t.equal(await page.locator('section[data-pool="shop"] svg rect.bar').count(), 3, 'one bar per upstream with sessions')
  })

  await t.test('a proxied app\'s page in the same tab finds nothing of the token; a reload asks for it again', async (t) => {
    // Issue #16 finding 3: the token was kept in sessionStorage, which every page of the origin (any proxied app) reads.
    const app = await page.goto(`${gw.url}/some-app/page`)
    t.equal((await app?.json() as { upstream?: string }).upstream !== undefined, true, 'a proxied application\'s page, same origin as the status page')
    const storage = await readableStorage(page)
    t.notOk(storage.includes(ADMIN_TOKEN.slice(0, 8)), `its script reads nothing of the token: ${storage}`)
    await page.goto(`${gw.admin}/`)
    await page.locator('#login').waitFor()
    t.ok(await page.locator('#login').isVisible(), 'the status page forgot the token with the page')
    await page.locator('#token').fill(ADMIN_TOKEN)
    await page.locator('#login-form button').click()
    await page.locator('tr[data-upstream="models/m2"]').waitFor()
    t.pass('signed in again')
  })

  await t.test('requests/s comes from two metric snapshots', async (t) => {
    for (let round = 0; round < 4; round++) await Promise.all(clients.map((jar) => get(`${gw.url}/shop/cart`, { jar })))
    await nextRefresh()
    const rps = page.locator('section[data-pool="shop"] [data-kpi="rps"] .v')
    await page.waitForFunction(() => {
      const text = document.querySelector('section[data-pool="shop"] [data-kpi="rps"] .v')?.textContent ?? ''
      return Number(text) > 0
    }, undefined, { timeout: STATUS_PAGE_REFRESH_MS * 3 })
    t.ok(Number(await rps.textContent()) > 0, `requests/s shown: ${await rps.textContent() ?? ''}`)
    t.equal(await page.locator('section[data-pool="shop"] [data-kpi="hits"] .v').textContent(), '100 %', 'all of them hits')
  })

  await t.test('a drain click drains the upstream; undrain brings it back', async (t) => {
    const row = page.locator('tr[data-upstream="shop/b"]')
    await row.locator('button[data-action="drain"]').click()
    await page.locator('tr[data-upstream="shop/b"] .state', { hasText: 'draining' }).waitFor()
    t.equal(gw.app.sticky.state('shop', 'b'), 'draining', 'the gateway drained it')
    t.equal((await get(`${gw.url}/new-client`)).json().upstream === 'b', false, 'and sends it no new client')
    t.equal(await page.locator('tr[data-upstream="shop/b"] button[data-action="undrain"]').textContent(), 'Undrain')
    // Live traffic until the next refresh, so the screenshot shows rates as an operator sees them.
    const shown = await page.locator('#updated').textContent()
    const deadline = Date.now() + STATUS_PAGE_REFRESH_MS * 2
    const trafficFrom = Date.now()
    let forwarded = false
    while (Date.now() < deadline && await page.locator('#updated').textContent() === shown) {
      await Promise.all([
        ...clients.map((jar) => get(`${gw.url}/shop/cart`, { jar })),
        ...modelClients.map((jar) => get(`${gw.url}/models/y`, { jar }))
      ])
      await new Promise((resolve) => setTimeout(resolve, 50))
      // Half a second of traffic, then on to the next refresh.
      if (!forwarded && Date.now() - trafficFrom >= 500) {
        forwarded = true
        await nextRefresh()
      }
    }
    await mkdir(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true })
    await page.locator('tr[data-upstream="shop/b"] button[data-action="undrain"]').click()
    await page.locator('tr[data-upstream="shop/b"] .state', { hasText: 'active' }).waitFor()
    t.equal(gw.app.sticky.state('shop', 'b'), 'active')
  })

  await t.test('log out forgets the token', async (t) => {
    await page.locator('#logout').click()
    t.ok(await page.locator('#login').isVisible())
    t.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0)
  })

  t.same(errors, [], 'no console errors, CSP violations or uncaught exceptions')
  const log = gw.logs.join('')
  t.notMatch(log, ADMIN_TOKEN, 'the token never reached a log')
})
