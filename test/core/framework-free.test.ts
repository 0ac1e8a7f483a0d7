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
