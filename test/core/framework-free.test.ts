/**
 * The core is what every front door shares: loading it must load nothing of Fastify, reply-from, Express or undici
 * (an Express user installs none of them), and no module of a front door.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'

const root = path.resolve(__dirname, '../..')

t.test('lib/core loads no framework and no front door', async (t) => {
  const probe = "require('./lib/core/sticky-core.ts'); process.stdout.write(JSON.stringify(Object.keys(require.cache)))"
  const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', probe], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 0, run.stderr)
  const loaded = JSON.parse(run.stdout) as string[]
  t.ok(loaded.some((file) => file.endsWith(path.join('lib', 'core', 'sticky-core.ts'))), 'the probe loaded the core')
  const forbidden = loaded.filter((file) => /node_modules[\\/](fastify|@fastify[\\/]reply-from|express|undici)[\\/]/.test(file) ||
    /[\\/]lib[\\/](fastify|express|http-proxy)[\\/]/.test(file))
  t.same(forbidden, [], 'nothing of fastify, reply-from, express, undici or a front door')
})

// Types too: a type import of Fastify in the core would tie its declarations (and a TypeScript Express user's
// compile) to Fastify's. Every import of every module of lib/core, type-only ones included. (@fastify/cookie is its
// cookie parser and @fastify/error its error classes: neither loads Fastify, as the probe above shows.)
t.test('lib/core names no framework and no front door, not even in types', async (t) => {
  const { readFileSync, readdirSync } = await import('node:fs')
  const importRe = /^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm
  const coreDir = path.join(root, 'lib', 'core')
  const imports: Array<[string, string]> = []
  for (const name of readdirSync(coreDir)) {
    if (!name.endsWith('.ts')) continue
    for (const [, specifier] of readFileSync(path.join(coreDir, name), 'utf8').matchAll(importRe)) imports.push([name, specifier])
  }
  t.ok(imports.length > 40, `read the core's imports (${imports.length})`)
  const named = imports.filter(([, specifier]) => /^(fastify|@fastify\/reply-from|@fastify\/http-proxy|express|undici)(\/|$)/.test(specifier) ||
    /^\.\.\/(fastify|express|http-proxy)\//.test(specifier))
  t.same(named, [], 'no fastify, reply-from, http-proxy, express, undici or front door')
})
