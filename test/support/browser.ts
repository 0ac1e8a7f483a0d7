import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { TeardownOwner } from './teardown-owner'

/** Debian's chromium (`apt-get install chromium`); `scripts/ensure-chromium.js` provisions it. */
export const CHROMIUM_PATH = '/usr/bin/chromium'

/** Headless, offline, quiet: no GPU, no QUIC, no first-run UI, no background traffic to Google services. */
export const CHROMIUM_ARGS: readonly string[] = Object.freeze([
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
])

/** A headless Chromium page owned by one test (see {@link openBrowser}). */
export interface TestBrowser {
  readonly context: BrowserContext
  readonly page: Page
  /**
   * Everything the page reported as an error so far: console errors (CSP violations and failed loads show up here
   * too) and uncaught exceptions.
   */
  readonly errors: string[]
}

/**
 * Starts Debian's chromium through playwright-core with a fresh profile (`--user-data-dir` in a new temporary
 * folder), closed and removed at `t` teardown. Chromium exits on its own if the test process dies: playwright
 * drives it over a pipe, and it quits when the pipe closes.
 * @throws Error in one line saying how to install chromium when it is missing
 * @example
 * const { page, errors } = await openBrowser(t)
 * await page.goto(`${gateway.url}/_sticky/`)
 * t.same(errors, [])
 */
export async function openBrowser (t: TeardownOwner, options: { viewport?: { width: number, height: number } } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`browser tests need Debian's chromium at ${CHROMIUM_PATH}: run "node scripts/ensure-chromium.js" (as root it installs it with apt-get)`)
  }
  const profile = await mkdtemp(path.join(os.tmpdir(), 'fastify-sticky-chromium-'))
  let context: BrowserContext | undefined
  t.teardown(async () => {
    await context?.close()
    await rm(profile, { recursive: true, force: true })
  })
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS],
    viewport: options.viewport ?? { width: 1280, height: 820 },
    timeout: 20_000
  })
  const page = context.pages()[0] ?? await context.newPage()
  page.setDefaultTimeout(10_000)
  const errors: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (error) => { errors.push(`pageerror: ${error.message}`) })
  return { context, page, errors }
}
