/**
 * The `fastify-sticky` command as an operator runs it: the compiled bin in a process of its own.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { GATEWAY_COMMAND, startGatewayCommand } from '../support/example-process'
import { get } from '../support/http'
import { startUpstreams } from '../support/upstreams'

t.test('npm run gateway: prints a listening line; a bad variable stops it with one line', async (t) => {
  const upstreams = await startUpstreams(t, ['a'])
  const good = startGatewayCommand(t, { UPSTREAMS: `a=${upstreams[0].url}` })
  const listening = (await good.waitFor(/listening on (http:\/\/\S+)/))[1]
  t.match(good.output().out, /in-memory store; random STICKY_SECRET/, 'says which store, warns about the random secret, even with LOG_LEVEL=silent')
  t.equal((await get(`${listening}/x`)).json().upstream, 'a')
  t.equal(await good.signal('SIGTERM'), 0, 'SIGTERM closes cleanly')

  const bad = startGatewayCommand(t, { UPSTREAMS: 'nonsense' })
  t.equal(await bad.exited(), 2)
  const err = bad.output().err
  t.equal(err.trim().split('\n').length, 1, 'exactly one line')
  t.match(err, /^gateway: UPSTREAMS must be/)
})

t.test('npm run gateway runs the compiled command, which the package installs as its bin', async (t) => {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'))
  t.equal(pkg.bin['fastify-sticky'], './dist/gateway/cli.js')
  t.match(pkg.scripts.gateway, /node dist\/gateway\/cli\.js$/, 'no TypeScript loader at run time')
  t.match(readFileSync(GATEWAY_COMMAND, 'utf8'), /^#!\/usr\/bin\/env node\n/, 'runnable as a bin')
})

t.test('--help, --version and an unknown argument', async (t) => {
  const help = startGatewayCommand(t, {}, ['--help'])
  t.equal(await help.exited(), 0)
  t.match(help.output().out, /^Usage: fastify-sticky/)
  for (const name of ['UPSTREAMS', 'REDIS_URL', 'STICKY_SECRET', 'ADMIN_PORT', 'WORKERS']) t.match(help.output().out, name, `names ${name}`)
  const version = startGatewayCommand(t, {}, ['--version'])
  t.equal(await version.exited(), 0)
  t.equal(version.output().out, `fastify-sticky ${JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')).version}\n`)
  const unknown = startGatewayCommand(t, { UPSTREAMS: 'a=http://127.0.0.1:1' }, ['--bogus'])
  t.equal(await unknown.exited(), 2)
  t.equal(unknown.output().err, 'gateway: unknown argument "--bogus"; see fastify-sticky --help\n')
})
