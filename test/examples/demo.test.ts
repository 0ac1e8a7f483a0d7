import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { SHOPPERS_PER_CLICK } from '../../examples/demo/demo-controls'
import { startDemo } from '../../examples/demo/index'
import { STATUS_PAGE_REFRESH_MS } from '../../lib/admin/status-page'
import { openBrowser } from '../support/browser'
import { CookieJar, get, type HttpResponse } from '../support/http'

/** Where the screenshots go (gitignored). */
const ARTIFACTS = path.join(__dirname, '..', 'artifacts')

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

function servedBy (page: HttpResponse): string {
  const match = /<body data-upstream="([^"]+)">/.exec(page.body)
  if (match === null) throw new Error(`not a shop page (status ${page.status}): ${page.body.slice(0, 200)}`)
  return match[1]
}

function addToCart (url: string, jar: CookieJar, item: string): Promise<HttpResponse> {
  return get(`${url}/cart`, { jar, method: 'POST', headers: FORM, body: new URLSearchParams({ item }).toString() })
}

t.test('the demo: shops behind a sticky gateway on the in-memory store', async (t) => {
  const trace: string[] = []
  const demo = await startDemo({ port: 0, shopPorts: [0, 0, 0], trace: (line) => { trace.push(line) } })
  t.teardown(() => demo.close())
  const { url } = demo
  t.same(demo.shops.map((shop) => shop.id), ['a', 'b', 'c'])
  t.same(demo.spare, demo.shops[2], 'the last shop is a spare')
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)

  t.test('a browser stays on one upstream and keeps its cart', async (t) => {
    const jar = new CookieJar()
    const first = await get(`${url}/`, { jar })
    t.equal(first.status, 200)
    t.match(first.headers['content-type'], /^text\/html/)
    const upstream = servedBy(first)
    t.match(first.body, `Served by upstream ${upstream}`)
    t.match(first.body, 'Your cart is empty.')
    t.match(first.setCookies.find((line) => line.startsWith('sticky=')), /; Path=\/; HttpOnly; SameSite=Lax/, 'the routing cookie')
    t.ok(jar.has('shop_sid'), "the shop's own session cookie comes through too")

    const tea = await addToCart(url, jar, 'Green tea')
    t.same([tea.status, tea.headers.location], [303, '/'], 'POST /cart redirects to the page')
    t.equal((await addToCart(url, jar, '<Socks & "more">')).status, 303)

    for (let i = 0; i < 5; i++) {
      const page = await get(`${url}/`, { jar })
      t.equal(servedBy(page), upstream, `reload ${i + 1}: same upstream`)
      t.match(page.body, '1 ×</span> Green tea')
      t.match(page.body, '&#60;Socks &#38; &#34;more&#34;&#62;', 'user text is escaped')
      t.notMatch(page.body, '<Socks', 'never raw')
    }
    const api = await get(`${url}/api/cart`, { jar })
    t.same(api.json(), { upstream, items: [{ name: 'Green tea', quantity: 1 }, { name: '<Socks & "more">', quantity: 1 }], handedOver: false })

    t.equal((await addToCart(url, jar, '   ')).status, 400, 'an empty item is refused')
    const clear = await get(`${url}/cart/clear`, { jar, method: 'POST', headers: FORM, body: '' })
    t.same([clear.status, clear.headers.location], [303, '/'])
    t.same((await get(`${url}/api/cart`, { jar })).json(), { upstream, items: [], handedOver: false }, 'cleared')
  })

  t.test('fresh browsers are spread over the upstreams', async (t) => {
    const seen = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const page = await get(`${url}/`, { jar: new CookieJar() })
      t.ok(page.setCookies.some((line) => line.startsWith('sticky=')), `browser ${i + 1} gets a routing cookie`)
      seen.add(servedBy(page))
    }
    t.same([...seen].sort(), ['a', 'b'], `12 new sessions reached a and b, not the spare c: ${[...seen].join(', ')}`)
  })

  t.test('a browser that loses the sticky cookie may land elsewhere, with an empty cart there', async (t) => {
    const jar = new CookieJar()
    const before = servedBy(await get(`${url}/`, { jar }))
    await addToCart(url, jar, 'Dark chocolate')
    const sid = jar.get('shop_sid')
    jar.delete('sticky')
    const after = await get(`${url}/api/cart`, { jar })
    t.equal(after.status, 200)
    t.ok(jar.has('sticky'), 'a new routing cookie')
    const { upstream, items } = after.json()
    if (upstream === before) {
      t.same(items, [{ name: 'Dark chocolate', quantity: 1 }], 'back on the same upstream: the cart is there')
      t.equal(jar.get('shop_sid'), sid)
    } else {
      t.same(items, [], `moved from ${before} to ${upstream}: that upstream never saw this cart`)
      t.not(jar.get('shop_sid'), sid, 'and it started its own session')
    }
  })

  t.test('trace reports where each request went and why', async (t) => {
    t.ok(trace.some((line) => /^GET \/ → upstream [abc] \(new\) 200$/.test(line)), 'a new session')
    t.ok(trace.some((line) => /^POST \/cart → upstream [abc] \(hit\) 303$/.test(line)), 'a bound one')
  })

  t.test('the demo controls want the admin token', async (t) => {
    const form = (token: string): Promise<HttpResponse> => get(demo.controls, { method: 'POST', headers: FORM, body: new URLSearchParams({ token, action: 'spare' }).toString() })
    t.equal((await form('not-the-token')).status, 401)
    const listed = (await get(`${demo.statusPage}upstreams`, { headers: { authorization: `Bearer ${demo.adminToken}` } })).json() as Array<{ id: string }>
    t.same(listed.map((u) => u.id), ['a', 'b'], 'the spare is still out')
    t.equal((await get(`${url}/cart`, { method: 'POST', headers: FORM, body: 'item=Tea' })).status, 303, 'forms posted to the shop still pass through untouched')
  })
})

t.test('the demo in headless Chromium: a cart survives an evacuation; a spare added at run time gets its share', async (t) => {
  const demo = await startDemo({ port: 0, shopPorts: [0, 0, 0] })
  t.teardown(() => demo.close())
  const { context, page: shop, errors } = await openBrowser(t, { viewport: { width: 1240, height: 900 } })
  await mkdir(ARTIFACTS, { recursive: true })
  const servedHere = async (): Promise<string> => await shop.locator('body').getAttribute('data-upstream') ?? ''
  const cartLines = async (): Promise<string[]> => (await shop.locator('.cart li').allTextContents()).map((line) => line.replace(/\s+/g, ' ').trim())

  await shop.goto(demo.url)
  const before = await servedHere()
  t.match(before, /^[ab]$/, `the browser lands on ${before}`)
  await shop.locator('form.product', { hasText: 'Green tea' }).locator('button').click()
  await shop.locator('form.product', { hasText: 'Dark chocolate' }).locator('button').click()
  await shop.locator('form.product', { hasText: 'Green tea' }).locator('button').click()
  const cart = await cartLines()
  t.same(cart, ['2 × Green tea', '1 × Dark chocolate'])

  // The status page in a second tab, its refresh timer under the test's control.
  const status = await context.newPage()
  // Errors of the other tabs too (openBrowser listens on its first page).
  context.on('page', (tab) => {
    tab.on('console', (message) => { if (message.type() === 'error') errors.push(`console: ${message.text()}`) })
    tab.on('pageerror', (error) => { errors.push(`pageerror: ${error.message}`) })
  })
  status.on('console', (message) => { if (message.type() === 'error') errors.push(`console: ${message.text()}`) })
  status.on('pageerror', (error) => { errors.push(`pageerror: ${error.message}`) })
  await status.clock.install()
  await status.goto(demo.statusPage)
  await status.locator('#token').fill(demo.adminToken)
  await status.locator('#login-form button').click()
  await status.locator(`tr[data-upstream="shop/${before}"]`).waitFor()
  t.equal(await status.locator('tr[data-upstream="shop/c"]').count(), 0, 'the spare is not in the pool yet')
  const untilJobDone = async (kind: string): Promise<void> => {
    for (let i = 0; i < 20 && await status.locator(`#moves tr[data-job^="${kind}-"] .job-state`, { hasText: 'done' }).count() === 0; i++) {
      await status.clock.fastForward(STATUS_PAGE_REFRESH_MS)
      await status.waitForTimeout(50)
    }
    await status.locator(`#moves tr[data-job^="${kind}-"] .job-state`, { hasText: 'done' }).waitFor()
  }

  await t.test('Evacuate on its upstream: the cart moves along', async (t) => {
    await status.locator(`tr[data-upstream="shop/${before}"] button[data-action="evacuate"]`).click()
    await untilJobDone('evacuate')
    const job = status.locator('#moves tr[data-job^="evacuate-"]')
    t.equal(await job.locator('.moved').textContent(), '1', 'the moves panel: one session moved')
    t.equal(await job.locator('.failed').textContent(), '', 'none stayed')
    t.equal(await status.locator(`tr[data-upstream="shop/${before}"] .state`).textContent(), 'draining')
    t.equal(await status.locator(`tr[data-upstream="shop/${before}"] .sessions`).textContent(), '0')
    await status.screenshot({ path: path.join(ARTIFACTS, 'demo-status-evacuated.png'), fullPage: true })

    await shop.reload()
    const after = await servedHere()
    t.not(after, before, `served by ${after} now`)
    t.same(await cartLines(), cart, 'the same cart')
    t.ok(await shop.locator('#handed-over').isVisible(), 'the page says the cart was handed over')
    await shop.screenshot({ path: path.join(ARTIFACTS, 'demo-shop-after-evacuation.png'), fullPage: true })
    await shop.locator('form.product', { hasText: 'Oat cookies' }).locator('button').click()
    t.same(await cartLines(), [...cart, '1 × Oat cookies'], 'and it goes on there')
    cart.push('1 × Oat cookies')
  })

  await t.test('shoppers and the spare from the demo controls, then Rebalance: c gets its share', async (t) => {
    const controls = await context.newPage()
    await controls.goto(demo.controls)
    await controls.locator('#token').fill(demo.adminToken)
    await controls.locator('button[value="shoppers"]').click()
    await controls.locator('#flash', { hasText: `${SHOPPERS_PER_CLICK} shoppers started` }).waitFor()
    await controls.locator('#token').fill(demo.adminToken)
    await controls.locator('button[value="spare"]').click()
    await controls.locator('#flash', { hasText: 'Upstream c joined pool shop' }).waitFor()
    t.equal(await controls.locator('#members').textContent(), 'a, b, c')
    await controls.close()

    await status.locator(`tr[data-upstream="shop/${before}"] button[data-action="undrain"]`).click()
    await status.locator('tr[data-upstream="shop/c"]').waitFor()
    await status.locator('section[data-pool="shop"] h2 button[data-action="rebalance"]').click()
    await untilJobDone('rebalance')
    const counts = Object.fromEntries(await Promise.all(['a', 'b', 'c'].map(async (id) => [id, Number(await status.locator(`tr[data-upstream="shop/${id}"] .sessions`).textContent())])))
    const total = SHOPPERS_PER_CLICK + 1
    for (const id of ['a', 'b', 'c']) t.ok(Math.abs(counts[id] - total / 3) <= 1, `${id}: ${counts[id]} of ${total} sessions`)
    await status.screenshot({ path: path.join(ARTIFACTS, 'demo-status-rebalanced.png'), fullPage: true })
    await shop.reload()
    t.same(await cartLines(), cart, `this browser's cart is whole on ${await servedHere()}`)
  })

  t.same(errors, [], 'no console errors, CSP violations or uncaught exceptions')
})

t.test('startDemo: a taken port rejects, and close() is safe to call twice', async (t) => {
  const demo = await startDemo({ port: 0, shopPorts: [0] })
  t.teardown(() => demo.close())
  const port = Number(new URL(demo.url).port)
  await t.rejects(startDemo({ port, shopPorts: [0] }), { code: 'EADDRINUSE' }, 'gateway port taken')
  await t.rejects(startDemo({ port: 0, shopPorts: [0, port] }), { code: 'EADDRINUSE' }, 'shop port taken')
  await t.rejects(startDemo({ port: 0, shopPorts: [] }), RangeError)
  t.equal((await get(`${demo.url}/api/cart`)).json().upstream, 'a', 'the running demo is untouched')
  await demo.close()
  await demo.close()
  await t.rejects(get(`${demo.url}/`), 'closed')
})

t.test('npm run demo: prints what to open, traces requests, stops on Ctrl-C', async (t) => {
  const tsx = require.resolve('tsx/cli')
  const child = spawn(process.execPath, [tsx, 'examples/demo/index.ts'], {
    env: { ...process.env, PORT: '0', SHOP_PORTS: '0,0,0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => { out += chunk })
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => { err += chunk })
  // Resolves with the first match of `re` in the output so far or to come (trace lines follow the response).
  const waitFor = (re: RegExp): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const look = (): void => {
      const match = re.exec(out)
      if (match === null) return
      clearTimeout(timer)
      child.stdout.off('data', look)
      child.off('exit', early)
      resolve(match)
    }
    const early = (): void => { clearTimeout(timer); reject(new Error(`exited early: ${out}${err}`)) }
    const timer = setTimeout(() => { child.stdout.off('data', look); reject(new Error(`no ${re} in: ${out}${err}`)) }, 20_000)
    child.stdout.on('data', look)
    child.once('exit', early)
    look()
  })
  const [, url] = await waitFor(/^fastify-sticky demo: open (http:\/\/127\.0\.0\.1:\d+) \(upstreams a, b, c on \d+(?:-|, )\d+.*; in-memory store\)\. Ctrl-C to stop\.$/m)
  t.equal((await get(`${url}/`)).status, 200)
  t.ok(await waitFor(/^ {2}GET \/ → upstream [abc] \(new\) 200$/m), 'one trace line per request')
  child.kill('SIGINT')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'Ctrl-C closes cleanly')
  t.match(out, /stopping\n$/)
  t.equal(err, '', 'nothing on stderr')
  await t.rejects(get(`${url}/`), 'the gateway is gone')
})

t.test('npm run demo: a bad variable is one line and exit 1', async (t) => {
  const tsx = require.resolve('tsx/cli')
  const child = spawn(process.execPath, [tsx, 'examples/demo/index.ts'], {
    env: { ...process.env, PORT: '0', SHOP_PORTS: '0,x' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let err = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => { err += chunk })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.equal(err, 'fastify-sticky demo: SHOP_PORTS must be a comma list of 1-8 port numbers, got "0,x"\n')
})
