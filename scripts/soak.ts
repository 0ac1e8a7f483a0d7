/**
 * Chaos soak (`npm run soak`, `--minutes N` or `--seconds N`, default 2 minutes): a real redis-server, three
 * upstream processes and two gateways (in-process Fastify apps with the plugin, one secret and prefix, the Redis
 * store) under steady, bounded traffic from many clients with cookie jars (GETs and small POSTs through both
 * gateways), while upstreams are killed and restarted at random (never all at once) and Redis is restarted. Every
 * response is checked; the run ends with a summary and exits non-zero when a target is missed:
 * - 5xx while at least one upstream was healthy: 0, apart from non-replayable requests (POST) in flight on an
 *   upstream killed under them, which are counted on their own (the upstream may have acted on them);
 * - clients whose upstream changed without their upstream dying: 0;
 * - gateways disagreeing on a binding (after the run, both gateways asked at once for each client): 0;
 * - heap growth of the process holding both gateways (after GC, warm-up to end): under `maxHeapGrowthMb`.
 * `runSoak()` is what test/hardening/soak.test.ts runs for 20 s. Loopback only; every loop is bounded by the
 * deadline; only processes this script started are ever killed, by their PID.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import v8 from 'node:v8'
import vm from 'node:vm'
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import sticky from '../lib/index'
import { launchEchoUpstream } from './echo-upstream'
import { freePort, pingRedis } from './loopback'

/** Options of {@link runSoak}. */
export interface SoakOptions {
  /** How long traffic and chaos run. @defaultValue 120 */
  seconds?: number
  /** Clients, each with its own cookie jar, one request at a time. @defaultValue 50 */
  clients?: number
  /** Seed of the chaos and traffic choices (printed, so a run can be replayed). @defaultValue random */
  seed?: number
  /** Heap growth above which the memory target is missed, in MB. @defaultValue 64 */
  maxHeapGrowthMb?: number
  /** Progress lines (every 10 s and at each chaos event); none by default. */
  log?: (line: string) => void
}

/** What a soak run saw. */
export interface SoakSummary {
  seed: number
  seconds: number
  clients: number
  requests: number
  ok: number
  /** 5xx answers while at least one upstream was healthy, not explained by a kill under a non-replayable request. */
  unexplained5xx: number
  /** 5xx answers to POSTs in flight on an upstream killed under them (not replayable by design). */
  inFlightOnKilled5xx: number
  /** 5xx while no upstream was healthy (the chaos never allows it; counted to prove it). */
  noHealthyUpstream5xx: number
  /** Answers that were neither 2xx nor 5xx, and transport failures between client and gateway. */
  otherFailures: number
  /** POST bodies that did not come back intact from the upstream. */
  corruptedBodies: number
  /** Clients whose upstream changed although it had not died since their previous answer. */
  unjustifiedMoves: number
  /** Clients moved off an upstream that died (expected). */
  justifiedMoves: number
  /** Clients the two gateways, asked at once after the run, sent to different upstreams. */
  disagreements: number
  /** Routing cookies that named an address or port of an upstream. */
  leakingCookies: number
  kills: number
  restarts: number
  redisRestarts: number
  heapBeforeMb: number
  heapAfterMb: number
  heapGrowthMb: number
  /** Samples of what went wrong, for the report (at most 10). */
  problems: string[]
  /** Whether every target was met. */
  passed: boolean
}

// ---- deterministic randomness ------------------------------------------------------------------------------------

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))


// Every child this script started, killed by PID when the script ends however it ends.
const children = new Set<ChildProcess>()
let exitHook = false
function track (child: ChildProcess): void {
  children.add(child)
  child.once('exit', () => children.delete(child))
  if (!exitHook) {
    exitHook = true
    process.once('exit', () => { for (const c of children) if (c.pid !== undefined) try { process.kill(c.pid, 'SIGKILL') } catch {} })
  }
}

async function stopChild (child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }, 2000)
  await exited
  clearTimeout(timer)
}

// ---- redis-server ------------------------------------------------------------------------------------------------

interface RedisProcess { readonly url: string, start (): Promise<void>, stop (): Promise<void> }


async function startRedis (): Promise<RedisProcess> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' })
    track(child)
    const spawned = child
    for (let i = 0; i < 200; i++) {
      if (spawned.exitCode !== null) throw new Error(`redis-server exited with ${spawned.exitCode} (is redis-server >= 7 installed?)`)
      if (await pingRedis(port)) return
      await sleep(25)
    }
    throw new Error('redis-server did not answer PING within 5 s')
  }
  await start()
  return { url: `redis://127.0.0.1:${port}`, start, stop: () => stopChild(child, 'SIGTERM') }
}

// ---- upstream processes ------------------------------------------------------------------------------------------

interface UpstreamProcess {
  readonly id: string
  readonly url: string
  alive: boolean
  /** When the current process became ready (or died). */
  changedAt: number
  kill (): Promise<void>
  restart (): Promise<void>
}

async function startUpstream (id: string): Promise<UpstreamProcess> {
  let { child, port } = await launchEchoUpstream(id, 0, track)
  const upstream: UpstreamProcess = {
    id,
    url: `http://127.0.0.1:${port}`,
    alive: true,
    changedAt: Date.now(),
    async kill () {
      upstream.alive = false
      upstream.changedAt = Date.now()
      await stopChild(child, 'SIGKILL')
    },
    async restart () {
      await stopChild(child, 'SIGKILL')
      ;({ child } = await launchEchoUpstream(id, port, track))
      upstream.alive = true
      upstream.changedAt = Date.now()
    }
  }
  return upstream
}

// ---- gateways ----------------------------------------------------------------------------------------------------

async function startGateway (redisUrl: string, secret: string, prefix: string, upstreams: readonly UpstreamProcess[]): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify()
  // As a gateway should: bodies pass through unparsed.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
  await app.register(sticky, {
    secret,
    redis: redisUrl,
    prefix,
    // A restarted upstream is retried after 1 s; the chaos lets upstreams live 3 s before counting them healthy.
    pools: { shop: { upstreams: upstreams.map((u) => ({ id: u.id, url: u.url })), cooldown: '1s' } },
    timeouts: { connect: '2s', headers: '10s', body: '10s' },
    // Every client of the soak shares one address; its oracle counts bindings.
    newBindings: false
  })
  app.all('/*', { config: { sticky: true } }, (_request, reply) => reply.forward())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}

// ---- the run -----------------------------------------------------------------------------------------------------

/** How long a (re)started upstream must have been up to count as healthy: the gateways' cool-down and state poll. */
const HEALTHY_AFTER_MS = 3_000
/** A kill this long before a request started may still break it (a keep-alive socket closing as it is reused). */
const KILL_MARGIN_MS = 250

interface Death { readonly id: string, readonly at: number }

/**
 * Runs the soak and returns its summary (it never throws for a missed target: `passed` says).
 * @throws Error when redis-server or an upstream cannot be started
 */
export async function runSoak (options: SoakOptions = {}): Promise<SoakSummary> {
  const seconds = options.seconds ?? 120
  const clientCount = options.clients ?? 50
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const maxHeapGrowthMb = options.maxHeapGrowthMb ?? 64
  const log = options.log ?? (() => {})
  const random = mulberry32(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]

  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const heapAfterGc = (): number => {
    for (let i = 0; i < 3; i++) gc()
    return process.memoryUsage().heapUsed / 1024 / 1024
  }

  const redis = await startRedis()
  const upstreams: UpstreamProcess[] = []
  const gateways: Array<{ app: FastifyInstance, url: string }> = []
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: clientCount })
  const summary: SoakSummary = {
    seed, seconds, clients: clientCount, requests: 0, ok: 0, unexplained5xx: 0, inFlightOnKilled5xx: 0, noHealthyUpstream5xx: 0,
    otherFailures: 0, corruptedBodies: 0, unjustifiedMoves: 0, justifiedMoves: 0, disagreements: 0, leakingCookies: 0,
    kills: 0, restarts: 0, redisRestarts: 0, heapBeforeMb: 0, heapAfterMb: 0, heapGrowthMb: 0, problems: [], passed: false
  }
  const problem = (text: string): void => { if (summary.problems.length < 10) summary.problems.push(text) }

  try {
    for (const id of ['u1', 'u2', 'u3']) upstreams.push(await startUpstream(id))
    const secret = randomBytes(32).toString('base64url')
    const prefix = `soak-${randomUUID()}:`
    for (let i = 0; i < 2; i++) gateways.push(await startGateway(redis.url, secret, prefix, upstreams))
    const addresses = upstreams.flatMap((u) => [u.url, u.url.replace('http://', '')])
    log(`soak: seed ${seed}, ${seconds} s, ${clientCount} clients, redis ${redis.url}, gateways ${gateways.map((g) => g.url).join(' ')}`)

    const deaths: Death[] = []
    const diedBetween = (id: string | undefined, from: number, to: number): boolean =>
      deaths.some((d) => (id === undefined || d.id === id) && d.at >= from - KILL_MARGIN_MS && d.at <= to)
    const healthyCount = (at: number): number => upstreams.filter((u) => u.alive && at - u.changedAt >= HEALTHY_AFTER_MS).length

    interface Client { readonly index: number, cookie: string | undefined, upstream: string | undefined, lastOkStart: number, moved: boolean, unjustified: boolean, sent: number }
    const clients: Client[] = Array.from({ length: clientCount }, (_, index) => ({ index, cookie: undefined, upstream: undefined, lastOkStart: 0, moved: false, unjustified: false, sent: 0 }))

    const send = async (client: Client, gateway: string, method: 'GET' | 'POST', body: string | undefined): Promise<{ status: number, upstream?: string, body?: string, error?: string }> => {
      try {
        const response = await request(`${gateway}/c${client.index}/r${client.sent}`, {
          method,
          dispatcher: agent,
          headers: { ...(client.cookie === undefined ? {} : { cookie: `sticky=${client.cookie}` }), ...(body === undefined ? {} : { 'content-type': 'text/plain' }) },
          body,
          headersTimeout: 15_000,
          bodyTimeout: 15_000
        })
        const text = await response.body.text()
        for (const line of [response.headers['set-cookie'] ?? []].flat()) {
          if (addresses.some((address) => line.includes(address))) summary.leakingCookies++
          const pair = line.split(';')[0]
          if (pair.startsWith('sticky=')) client.cookie = pair.slice('sticky='.length)
        }
        if (response.statusCode !== 200) return { status: response.statusCode, body: text }
        const echo = JSON.parse(text) as { upstream: string, body: string }
        return { status: 200, upstream: echo.upstream, body: echo.body }
      } catch (error) {
        return { status: 0, error: (error as Error).message }
      }
    }

    // Steady bounded traffic: each client sends one request at a time, through either gateway, then pauses.
    const warmUpEnds = Date.now() + 3_000
    const deadline = warmUpEnds + seconds * 1000
    const runClient = async (client: Client): Promise<void> => {
      await sleep(random() * 200)
      while (Date.now() < deadline) {
        const gateway = pick(gateways).url
        const method = random() < 0.7 ? 'GET' : 'POST'
        const payload = method === 'POST' ? `client ${client.index} request ${client.sent} ${randomBytes(6).toString('hex')}` : undefined
        const started = Date.now()
        client.sent++
        const answer = await send(client, gateway, method, payload)
        const ended = Date.now()
        summary.requests++
        if (answer.status === 200) {
          summary.ok++
          if (method === 'POST' && answer.body !== payload) {
            summary.corruptedBodies++
            problem(`client ${client.index}: POST body came back as ${JSON.stringify(answer.body).slice(0, 80)}`)
          }
          if (client.upstream !== undefined && answer.upstream !== client.upstream) {
            if (diedBetween(client.upstream, client.lastOkStart, ended)) {
              client.moved = true
            } else {
              client.unjustified = true
              problem(`client ${client.index} moved ${client.upstream} → ${answer.upstream} at +${ended - warmUpEnds} ms without its upstream dying`)
            }
          }
          client.upstream = answer.upstream
          client.lastOkStart = started
        } else if (answer.status >= 500) {
          if (healthyCount(started) === 0) summary.noHealthyUpstream5xx++
          else if (method === 'POST' && diedBetween(client.upstream, started, ended)) summary.inFlightOnKilled5xx++
          else {
            summary.unexplained5xx++
            problem(`client ${client.index}: ${method} answered ${answer.status} at +${started - warmUpEnds} ms (bound to ${client.upstream ?? 'none'}): ${(answer.body ?? '').slice(0, 120)}`)
          }
        } else {
          summary.otherFailures++
          problem(`client ${client.index}: ${method} got ${answer.status} ${answer.error ?? (answer.body ?? '').slice(0, 120)}`)
        }
        await sleep(20 + random() * 100)
      }
    }

    // Chaos: upstream kills and restarts (never the last healthy one), Redis restarts.
    const runChaos = async (): Promise<void> => {
      let nextRedisRestart = warmUpEnds + 6_000 + random() * 4_000
      await sleep(Math.max(0, warmUpEnds - Date.now()))
      while (Date.now() < deadline - 1_000) {
        await sleep(1_000 + random() * 1_000)
        if (Date.now() >= deadline - 1_000) break
        const now = Date.now()
        if (now >= nextRedisRestart) {
          const downFor = 300 + random() * 900
          log(`soak: +${((now - warmUpEnds) / 1000).toFixed(1)} s redis down for ${downFor.toFixed(0)} ms`)
          await redis.stop()
          await sleep(downFor)
          await redis.start()
          summary.redisRestarts++
          nextRedisRestart = Date.now() + 6_000 + random() * 6_000
          continue
        }
        const dead = upstreams.filter((u) => !u.alive)
        const healthy = upstreams.filter((u) => u.alive && now - u.changedAt >= HEALTHY_AFTER_MS)
        // A kill quota (one at the start, then one per 5 s) keeps the chaos from being all restarts: with ticks of
        // at most 2 s and three upstreams, any 20 s run kills at least three times whatever the seed draws.
        const killsDue = summary.kills < 1 + (now - warmUpEnds) / 5_000
        const killNow = healthy.length >= 2 && (dead.length === 0 || killsDue)
        if (dead.length > 0 && !killNow) {
          const victim = pick(dead)
          await victim.restart()
          summary.restarts++
          log(`soak: +${((Date.now() - warmUpEnds) / 1000).toFixed(1)} s restarted ${victim.id}`)
        } else if (healthy.length >= 2) {
          // Never all at once: a kill leaves at least one upstream that has been up long enough for the gateways.
          const victim = pick(healthy)
          deaths.push({ id: victim.id, at: Date.now() })
          await victim.kill()
          summary.kills++
          log(`soak: +${((Date.now() - warmUpEnds) / 1000).toFixed(1)} s killed ${victim.id}`)
        }
      }
    }

    const progress = setInterval(() => log(`soak: ${summary.requests} requests, ${summary.ok} ok, ${summary.unexplained5xx} unexplained 5xx, ${summary.kills} kills, ${summary.redisRestarts} redis restarts`), 10_000)
    progress.unref()
    const heapProbe = (async () => {
      await sleep(Math.max(0, warmUpEnds - Date.now()))
      summary.heapBeforeMb = heapAfterGc()
    })()
    await Promise.all([...clients.map(runClient), runChaos(), heapProbe])
    clearInterval(progress)

    // Everything back up, then both gateways asked at once for each client: they must agree.
    for (const upstream of upstreams) if (!upstream.alive) await upstream.restart()
    await sleep(HEALTHY_AFTER_MS)
    for (const client of clients) {
      const [first, second] = await Promise.all(gateways.map((g) => send({ ...client }, g.url, 'GET', undefined)))
      const again = await Promise.all(gateways.map((g) => send({ ...client }, g.url, 'GET', undefined)))
      const seen = [first, second, ...again].map((a) => a.upstream ?? `status ${a.status}`)
      if (new Set(seen).size !== 1) {
        summary.disagreements++
        problem(`client ${client.index}: gateways answered ${seen.join(', ')}`)
      }
    }
    summary.unjustifiedMoves = clients.filter((c) => c.unjustified).length
    summary.justifiedMoves = clients.filter((c) => c.moved && !c.unjustified).length
    summary.heapAfterMb = heapAfterGc()
    summary.heapGrowthMb = summary.heapAfterMb - summary.heapBeforeMb
  } finally {
    await Promise.allSettled(gateways.map((g) => g.app.close()))
    await agent.close().catch(() => {})
    await Promise.allSettled(upstreams.map((u) => u.kill()))
    await redis.stop()
  }
  summary.passed = summary.requests > 0 && summary.unexplained5xx === 0 && summary.noHealthyUpstream5xx === 0 && summary.otherFailures === 0 &&
    summary.corruptedBodies === 0 && summary.unjustifiedMoves === 0 && summary.disagreements === 0 && summary.leakingCookies === 0 &&
    summary.heapGrowthMb < maxHeapGrowthMb
  return summary
}

/** @returns the summary as the lines the script prints */
export function formatSummary (s: SoakSummary): string {
  const target = (value: number, ok: boolean): string => `${value}${ok ? '' : '   <-- MISSED'}`
  return [
    `soak summary (seed ${s.seed}, ${s.seconds} s, ${s.clients} clients)`,
    `  requests                                     ${s.requests} (${s.ok} ok, about ${(s.requests / (s.seconds + 3)).toFixed(0)}/s)`,
    `  chaos                                        ${s.kills} upstream kills, ${s.restarts} restarts, ${s.redisRestarts} Redis restarts`,
    `  5xx while >= 1 upstream healthy (target 0)   ${target(s.unexplained5xx, s.unexplained5xx === 0)}`,
    `  5xx to POSTs in flight on a killed upstream  ${s.inFlightOnKilled5xx} (not replayable by design)`,
    `  5xx with no healthy upstream                 ${target(s.noHealthyUpstream5xx, s.noHealthyUpstream5xx === 0)}`,
    `  other failures (4xx, transport)              ${target(s.otherFailures, s.otherFailures === 0)}`,
    `  corrupted POST bodies                        ${target(s.corruptedBodies, s.corruptedBodies === 0)}`,
    `  clients moved without a death (target 0)     ${target(s.unjustifiedMoves, s.unjustifiedMoves === 0)}`,
    `  clients moved off a dead upstream            ${s.justifiedMoves}`,
    `  gateways disagreeing (target 0)              ${target(s.disagreements, s.disagreements === 0)}`,
    `  routing cookies naming an upstream           ${target(s.leakingCookies, s.leakingCookies === 0)}`,
    `  heap before / after / growth                 ${s.heapBeforeMb.toFixed(1)} / ${s.heapAfterMb.toFixed(1)} / ${s.heapGrowthMb.toFixed(1)} MB`,
    ...s.problems.map((p) => `  ! ${p}`),
    s.passed ? 'soak: all targets met' : 'soak: TARGET MISSED'
  ].join('\n')
}

function parseArgs (argv: readonly string[]): SoakOptions {
  const options: SoakOptions = {}
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1])
    const need = (name: string): number => {
      if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} needs a positive number, got ${JSON.stringify(argv[i + 1])}`)
      i++
      return value
    }
    switch (argv[i]) {
      case '--minutes': options.seconds = need('--minutes') * 60; break
      case '--seconds': options.seconds = need('--seconds'); break
      case '--clients': options.clients = Math.floor(need('--clients')); break
      case '--seed': options.seed = Math.floor(need('--seed')); break
      case '--max-heap-growth-mb': options.maxHeapGrowthMb = need('--max-heap-growth-mb'); break
      default: throw new Error(`unknown argument ${argv[i]} (known: --minutes N, --seconds N, --clients N, --seed N, --max-heap-growth-mb N)`)
    }
  }
  return options
}

if (require.main === module) {
  let options: SoakOptions
  try {
    options = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(`soak: ${(error as Error).message}`)
    process.exit(2)
  }
  // Ctrl-C: the exit hook kills every child this script started.
  process.once('SIGINT', () => process.exit(130))
  runSoak({ ...options, log: (line) => console.log(line) }).then((summary) => {
    console.log(formatSummary(summary))
    process.exitCode = summary.passed ? 0 : 1
  }, (error: unknown) => {
    console.error('soak: could not run:', error)
    process.exitCode = 2
  })
}
