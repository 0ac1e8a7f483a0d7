/**
 * The package as users get it: `npm pack` (whose `prepack` builds dist/), the tarball's contents, publint and
 * attw on the tarball, then the tarball installed into scratch consumer projects — an ES module and a CommonJS
 * JavaScript app, a TypeScript app checked and compiled with moduleResolution node16 and bundler — each serving
 * sticky requests through real upstreams, for each entry point (the plugin, `/express`, `/http-proxy`).
 * Offline: consumers reach their dependencies through links into this repo's node_modules, and attw and publint read the tarball file only.
 */
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { builtinModules } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'

const ROOT = path.resolve(__dirname, '..', '..')
const BIN = path.join(ROOT, 'node_modules', '.bin')
const FIXTURES = path.join(__dirname, 'fixtures')

// Honest budget: the build (tsc over lib/), attw and two consumer tsc runs take 30-40 s on an idle 2-core
// machine and up to two minutes when other test files share the cores; .taprc's 60 s would kill it mid-build.
t.setTimeout(240_000)

/** The package's entry points: export key, name users import, folder under dist/ (and lib/). */
const ENTRY_POINTS = [
  { key: '.', name: 'fastify-sticky', dist: '' },
  { key: './express', name: 'fastify-sticky/express', dist: 'express/' },
  { key: './http-proxy', name: 'fastify-sticky/http-proxy', dist: 'http-proxy/' },
  { key: './upstream', name: 'fastify-sticky/upstream', dist: 'upstream/' }
] as const

interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

function run (command: string, args: string[], cwd: string, timeoutMs = 120_000, npmMode: 'offline' | 'prefer-offline' = 'offline'): Promise<RunResult> {
  const env = {
    ...process.env,
    // The nested npm stays offline and quiet; no colours in output that assertions read.
    ...(npmMode === 'offline' ? { npm_config_offline: 'true' } : { npm_config_prefer_offline: 'true' }),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    // tap's process tracking would give every Node child V8 block coverage: none of them runs lib/ (the consumers
    // run dist/ from the tarball), and counting the blocks of npm, tsc and attw costs them about a quarter more CPU.
    _TAPJS_PROCESSINFO_COVERAGE_: '0'
  }
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr })
    })
  })
}

function show (result: RunResult): string {
  return `exit ${String(result.code)}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`
}

/** A consumer's JSON summary: the last line it prints. */
function summary (t: Test, result: RunResult): Record<string, any> | undefined {
  t.equal(result.code, 0, 'exits 0', { output: show(result) })
  try {
    return JSON.parse(result.stdout.trim().split('\n').pop() ?? '')
  } catch {
    t.fail('prints a JSON summary line', { output: show(result) })
    return undefined
  }
}

/** A new binding with its routing cookie on the first request, a hit on the same upstream with the cookie. */
function assertSticky (t: Test, result: RunResult, consumer: string): void {
  const out = summary(t, result)
  if (out === undefined) return
  t.equal(out.consumer, consumer)
  t.match(out.first, { status: 200, decision: 'new', setCookie: true, httpOnly: true }, 'first request: a new binding and its cookie')
  t.ok(['a', 'b'].includes(out.first.upstream), `first request answered by upstream ${String(out.first.upstream)}`)
  t.match(out.second, { status: 200, decision: 'hit', upstream: out.first.upstream, setCookie: false }, 'second request: same upstream')
}

/** Bare specifiers imported or required by the shipped code and declarations (comments left out). */
function bareSpecifiers (dir: string): Set<string> {
  const found = new Set<string>()
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.(?:js|mjs|d\.ts|d\.mts)$/.test(entry.name)) continue
    const code = fs.readFileSync(path.join(entry.parentPath, entry.name), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    for (const match of code.matchAll(/(?:\bfrom\s+|\bimport\s+|\b(?:import|require)\s*\(\s*)['"]([^'"\s./][^'"\s]*)['"]/g)) {
      found.add(match[1])
    }
  }
  return found
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fastify-sticky-package-'))
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }))
const modules = path.join(work, 'node_modules')
const installed = path.join(modules, 'fastify-sticky')
let tarball = ''
let packedFiles: string[] = []
let manifest: Record<string, any> = {}
const tsDir = path.join(work, 'ts')
let tscNode16: Promise<RunResult>
let tscBundler: Promise<RunResult>

/** A consumer project: its own package.json (module type) and the given fixtures. */
function project (name: string, type: 'module' | 'commonjs', files: Record<string, string>): string {
  const dir = path.join(work, name)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type }))
  for (const [file, fixture] of Object.entries(files)) fs.copyFileSync(path.join(FIXTURES, fixture), path.join(dir, file))
  return dir
}

function tsc (config: string, compilerOptions: Record<string, unknown>, files: string[]): Promise<RunResult> {
  fs.writeFileSync(path.join(tsDir, config), JSON.stringify({
    // skipLibCheck, as most applications set it (the declarations' own imports are checked by a test below).
    compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: true, types: ['node'], ...compilerOptions },
    files
  }))
  return run(path.join(BIN, 'tsc'), ['-p', config], tsDir)
}

t.before(async () => {
  const packed = await run('npm', ['pack', '--json', '--pack-destination', work], ROOT, 180_000)
  if (packed.code !== 0) throw new Error(`npm pack failed\n${show(packed)}`)
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))
  tarball = path.join(work, info.filename)
  packedFiles = info.files.map((file: { path: string }) => file.path)
  t.comment(`${info.filename}: ${info.size} bytes packed, ${info.unpackedSize} unpacked, ${info.entryCount} files`)

  // Installed as npm would (the package has no install scripts), beside links to its declared dependencies
  // only: an import the package does not declare fails in the consumers.
  fs.mkdirSync(installed, { recursive: true })
  const untar = await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'], work)
  if (untar.code !== 0) throw new Error(`tar failed\n${show(untar)}`)
  manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'))
  const links = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {}), 'fastify', '@types/node'])
  for (const name of links) {
    fs.mkdirSync(path.dirname(path.join(modules, name)), { recursive: true })
    fs.symlinkSync(path.join(ROOT, 'node_modules', name), path.join(modules, name), 'dir')
  }

  // The two type checks are the slowest steps: started now, awaited by their tests.
  project('ts', 'module', { 'app.mts': 'ts-app.mts', 'app-cjs.cts': 'ts-app-cjs.cts', 'entries.mts': 'ts-entries.mts' })
  tscNode16 = tsc('tsconfig.node16.json', { module: 'node16', moduleResolution: 'node16', outDir: 'out-node16' }, ['app.mts', 'app-cjs.cts', 'entries.mts'])
  tscBundler = tsc('tsconfig.bundler.json', { module: 'preserve', moduleResolution: 'bundler', outDir: 'out-bundler' }, ['app.mts', 'entries.mts'])
})

t.test('the tarball holds dist/, README.md, LICENSE and package.json only', async (t) => {
  // The gateway's config schema ships for editors (exported as fastify-sticky/gateway-config.schema.json).
  const stray = packedFiles.filter((file) => !['package.json', 'README.md', 'LICENSE', 'dist/gateway/config.schema.json'].includes(file) &&
    !/^dist\/.+\.(?:js|mjs|d\.ts|d\.mts|js\.map|mjs\.map)$/.test(file))
  t.same(stray, [], 'nothing else is packed')
  const entries = ENTRY_POINTS.flatMap((entry) => ['js', 'mjs', 'd.ts', 'd.mts'].map((ext) => `dist/${entry.dist}index.${ext}`))
  for (const file of [...entries, 'README.md', 'LICENSE']) {
    t.ok(packedFiles.includes(file), `${file} is packed`)
  }
})

t.test('the shipped code and types import only declared dependencies and Node builtins', async (t) => {
  const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})])
  const builtins = new Set(builtinModules)
  const undeclared = [...bareSpecifiers(path.join(installed, 'dist'))].filter((specifier) => {
    const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]
    return !declared.has(name) && !specifier.startsWith('node:') && !builtins.has(name)
  })
  t.same(undeclared, [], 'every bare import is a dependency')
})

t.test('each entry point exports what its lib/ source exports (dist/ was built from this source)', async (t) => {
  for (const entry of ENTRY_POINTS) {
    const source: Record<string, unknown> = require(`../../lib/${entry.dist}index`)
    const shipped: Record<string, unknown> = require(path.join(installed, 'dist', entry.dist, 'index.js'))
    t.equal(typeof shipped, typeof source, `${entry.name}: require() gives a ${typeof source}, as from the source`)
    t.same(Object.keys(shipped).sort(), Object.keys(source).sort(), `${entry.name}: the same export names`)
  }
})

t.test('publint finds nothing', async (t) => {
  const result = await run(path.join(BIN, 'publint'), ['run', tarball, '--strict'], work)
  t.equal(result.code, 0, 'exits 0', { output: show(result) })
  t.match(result.stdout, /All good!/, 'no error, warning or suggestion', { output: show(result) })
})

t.test('attw finds nothing, for node10, node16 (CJS and ESM) and bundler', async (t) => {
  // Given a tarball file, attw reads that file only (the registry is used with --from-npm).
  // The JSON schema is data for editors, not a module with types: attw has nothing to check there.
  const result = await run(path.join(BIN, 'attw'), [tarball, '--format', 'json', '--exclude-entrypoints', './gateway-config.schema.json'], work)
  t.equal(result.code, 0, 'exits 0', { output: show(result) })
  const report = JSON.parse(result.stdout)
  t.ok(report.analysis.types, 'the package ships its own types')
  t.same(report.problems ?? {}, {}, 'no problem', { output: result.stdout })
  t.same(Object.keys(report.analysis.entrypoints).sort(), ['.', './express', './http-proxy', './package.json', './upstream'], 'every entry point analysed')
  for (const entry of ENTRY_POINTS) {
    const resolutions = report.analysis.entrypoints[entry.key].resolutions
    for (const mode of ['node10', 'node16-cjs', 'node16-esm', 'bundler']) {
      t.ok(resolutions[mode]?.resolution?.isTypeScript, `"${entry.name}" resolves to types under ${mode}`)
    }
  }
})

t.test('an ES module JavaScript app: import sticky from \'fastify-sticky\'', async (t) => {
  const dir = project('esm', 'module', { 'app.mjs': 'esm-app.mjs' })
  assertSticky(t, await run(process.execPath, ['app.mjs'], dir), 'esm')
})

t.test('a CommonJS JavaScript app: require(\'fastify-sticky\')', async (t) => {
  const dir = project('cjs', 'commonjs', { 'app.cjs': 'cjs-app.cjs' })
  assertSticky(t, await run(process.execPath, ['app.cjs'], dir), 'cjs')
})

/** The Express door and the http-proxy integration, each: a new session with its cookie, then a hit. */
function assertEntries (t: Test, result: RunResult, consumer: string): void {
  const out = summary(t, result)
  if (out === undefined) return
  t.equal(out.consumer, consumer)
  t.match(out.express, { first: { status: 200, url: '/cart', setCookie: true }, second: { status: 200, upstream: out.express.first.upstream, setCookie: false } },
    'fastify-sticky/express: a cookie, then the same upstream')
  t.match(out.httpProxy, { first: { status: 200, url: '/cart', setCookie: true }, second: { status: 200, upstream: out.httpProxy.first.upstream, setCookie: false } },
    'fastify-sticky/http-proxy: the prefix stripped, a cookie, then the same upstream')
}

t.test('ES module and CommonJS apps: fastify-sticky/express and fastify-sticky/http-proxy', async (t) => {
  assertEntries(t, await run(process.execPath, ['app.mjs'], project('entries-esm', 'module', { 'app.mjs': 'entries-esm.mjs' })), 'entries-esm')
  assertEntries(t, await run(process.execPath, ['app.cjs'], project('entries-cjs', 'commonjs', { 'app.cjs': 'entries-cjs.cjs' })), 'entries-cjs')
})

function assertTsEntries (t: Test, result: RunResult): void {
  t.match(summary(t, result), {
    consumer: 'ts-entries',
    express: { status: 200, upstream: 'a', setCookie: true },
    httpProxy: { status: 200, upstream: 'a', url: '/api/cart', setCookie: true }
  }, 'both entry points serve sticky requests from TypeScript')
}

t.test('a TypeScript app, moduleResolution node16 (an ES module and a CommonJS file)', async (t) => {
  const checked = await tscNode16
  t.equal(checked.code, 0, 'type-checks and compiles', { output: show(checked) })
  assertSticky(t, await run(process.execPath, ['out-node16/app.mjs'], tsDir), 'ts-esm')
  t.match(summary(t, await run(process.execPath, ['out-node16/app-cjs.cjs'], tsDir)),
    { consumer: 'ts-cjs', registered: true, pools: ['shop'] }, 'the CommonJS file registers the plugin')
  assertTsEntries(t, await run(process.execPath, ['out-node16/entries.mjs'], tsDir))
})

t.test('a TypeScript app, moduleResolution bundler', async (t) => {
  const checked = await tscBundler
  t.equal(checked.code, 0, 'type-checks and compiles', { output: show(checked) })
  assertSticky(t, await run(process.execPath, ['out-bundler/app.mjs'], tsDir), 'ts-esm')
  assertTsEntries(t, await run(process.execPath, ['out-bundler/entries.mjs'], tsDir))
})

t.test('npx fastify-sticky: the command from the tarball, installed by npm itself into a fresh folder', async (t) => {
  // Not under `work`, whose node_modules links the dependencies: only what npm installs here is found.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fastify-sticky-command-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'operator', private: true }))
  // `npm ci` fills the cache with tarballs, not with the registry's package documents a range install reads: those
  // come from the registry once (CI reaches it), then from the cache.
  const install = await run('npm', ['install', tarball], dir, 120_000, 'prefer-offline')
  t.equal(install.code, 0, 'npm install <tarball> (the cache first, the registry for what it lacks)', { output: show(install) })
  const help = await run('npx', ['--no-install', 'fastify-sticky', '--help'], dir)
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: fastify-sticky/, '--help')
  t.equal((await run('npx', ['--no-install', 'fastify-sticky', '--version'], dir)).stdout, `fastify-sticky ${String(manifest.version)}\n`, '--version')
  // Fastify is an optional peer dependency (Express users go without it): the command says what to install.
  const withoutFastify = await run('npx', ['--no-install', 'fastify-sticky'], dir)
  t.equal(withoutFastify.code, 2)
  t.match(withoutFastify.stderr, /^gateway: the fastify-sticky command runs on Fastify, .*: npm install fastify@5\n$/)

  const fastify = await run('npm', ['install', 'fastify@5'], dir, 120_000, 'prefer-offline')
  t.equal(fastify.code, 0, 'npm install fastify@5', { output: show(fastify) })
  // A config file checked by the installed command, and the schema an editor is pointed at, where the docs say.
  fs.writeFileSync(path.join(dir, 'gateway.yaml'), '# yaml-language-server: $schema=node_modules/fastify-sticky/dist/gateway/config.schema.json\npools:\n  web: { upstreams: [{ id: a, url: "http://127.0.0.1:9" }] }\nroutes:\n  - match: { prefix: / }\n')
  const check = await run('npx', ['--no-install', 'fastify-sticky', '--config', 'gateway.yaml', '--check'], dir)
  t.equal(check.code, 0, '--check from the installed package', { output: show(check) })
  t.match(check.stdout, /gateway\.yaml: valid \(1 pool, 1 route\)/)
  const schema = await run(process.execPath, ['-e', 'process.stdout.write(require(require.resolve("fastify-sticky/gateway-config.schema.json")).title)'], dir)
  t.equal(schema.stdout, 'fastify-sticky gateway configuration', 'the schema is exported as fastify-sticky/gateway-config.schema.json')
  t.ok(fs.existsSync(path.join(dir, 'node_modules', 'fastify-sticky', 'dist', 'gateway', 'config.schema.json')), 'and sits where the docs point editors')
  const gateway = spawn(path.join(dir, 'node_modules', '.bin', 'fastify-sticky'), [], {
    cwd: dir, env: { ...process.env, UPSTREAMS: 'a=http://127.0.0.1:9', PORT: '0', LOG_LEVEL: 'silent' }, stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { if (gateway.exitCode === null && gateway.signalCode === null) gateway.kill('SIGKILL') })
  let out = ''
  gateway.stdout.setEncoding('utf8')
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000)
    gateway.stdout.on('data', (chunk: string) => {
      out += chunk
      if (out.includes('\n')) { clearTimeout(timer); resolve(out.split('\n')[0]) }
    })
  })
  t.match(line, /^gateway listening on http:\/\/127\.0\.0\.1:\d+ \(in-memory store; /, 'serves')
  const exited = once(gateway, 'exit')
  gateway.kill('SIGTERM')
  t.same(await exited, [0, null], 'SIGTERM: exit 0')
})
