/**
 * An open-loop load generator at a fixed rate, for the latency phase of `npm run bench` (issue #17: added p99
 * below saturation). Requests are released on a fixed schedule, whatever the answers, and dealt round-robin over
 * keep-alive connections, so each connection carries rate ÷ connections requests a second.
 *
 * Why not autocannon's `-R`: it gives each connection a quota per second and sends it back to back from the
 * second's start, so every second opens with a closed-loop burst at full speed (the gateway saturated), then
 * idles; and it "corrects" coordinated omission with an expected interval of ⌈1 ÷ per-connection rate⌉ = 1 ms,
 * which adds a made-up sample per millisecond of every slower answer (p99 187 ms against a toy server at 3,000
 * req/s, where this pacer measured 2.5 ms).
 * wrk has no rate option at all.
 *
 * Latency runs from the moment the pacer releases a request (so a wait for its connection, busy with an earlier
 * answer, counts) to the end of its answer, at µs resolution. The pacer wakes on a 1 ms timer and releases every
 * request due by then: arrivals come in groups of about rate ÷ 1000, which queue at the gateway as real traffic
 * would. Its own lateness is reported apart (`lagP99Ms`), not counted in the latency.
 *
 * Plain sockets and a minimal HTTP/1.1 reader rather than an HTTP client library: this runs on the load core beside
 * the upstreams and Redis, at half of what the gateway serves closed-loop; on the benchmark's 2-core VM undici's
 * client took ~90 µs of CPU a request there (enough to saturate that core and queue requests in the pacer itself),
 * this reader 50–70 µs.
 *
 * Run as its own process (`node -r tsx/cjs bench/paced-load.ts`, pinned by bench/load.ts) with env: PACED_URL,
 * PACED_RATE (requests per second, all connections), PACED_SECONDS (measured), PACED_SETTLE_SECONDS (paced
 * before the measured part, not recorded), PACED_CONNECTIONS, PACED_HEADERS (JSON object). Prints one line
 * `PACED_JSON {...}` ({@link PacedReport}).
 */
import { connect, type Socket } from 'node:net'

/** What one paced window reports. */
export interface PacedReport {
  /** Requests the schedule released in the measured part. */
  readonly scheduled: number
  /** Requests sent before it (priming each connection, then the settling part). */
  readonly warmupRequests: number
  /** Answers received (any status). */
  readonly requests: number
  /** From the measured part's first release to its last answer, s: longer than asked when the gateway fell behind. */
  readonly durationS: number
  /** Answers with status ≥ 400 (not in the latency figures). */
  readonly badStatus: number
  /** Connection errors, and requests still unanswered when the drain time ran out. */
  readonly socketErrors: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** How late the pacer released requests (timer and event-loop delay), 99th percentile, ms. */
  readonly lagP99Ms: number
}

/** How long answers still in flight at the end of the schedule are waited for before counting as errors. */
const DRAIN_MS = 5000
/** Requests each connection sends, one after the other, before the paced schedule starts. */
const PRIME_PER_CONNECTION = 20
/** Request states. */
const PENDING = 0
const ANSWERED = 1
const BAD_STATUS = 2
const FAILED = 3

const HEAD_END = Buffer.from('\r\n\r\n')
const LAST_CHUNK = Buffer.from('\r\n0\r\n\r\n')

/** Called once per request: its status (0: failed) and when its answer ended. */
type Done = (status: number, at: bigint) => void

/**
 * One keep-alive connection sending the same GET: one request at a time (as a browser or undici without
 * pipelining), those given while it is busy wait their turn in order.
 */
class Connection {
  private readonly socket: Socket
  private readonly waiting: Done[] = []
  private current: Done | null = null
  private received: Buffer | null = null
  private broken = false

  constructor (port: number, host: string, private readonly request: Buffer) {
    this.socket = connect(port, host)
    this.socket.setNoDelay(true)
    this.socket.on('data', (chunk: Buffer) => { this.read(chunk) })
    const fail = (): void => {
      this.broken = true
      this.received = null
      const now = process.hrtime.bigint()
      for (const done of [...(this.current === null ? [] : [this.current]), ...this.waiting.splice(0)]) done(0, now)
      this.current = null
    }
    this.socket.on('error', fail)
    this.socket.on('close', fail)
  }

  send (done: Done): void {
    if (this.broken) done(0, process.hrtime.bigint())
    else if (this.current !== null) this.waiting.push(done)
    else this.write(done)
  }

  close (): void {
    this.socket.destroy()
  }

  private write (done: Done): void {
    this.current = done
    this.socket.write(this.request)
  }

  private read (chunk: Buffer): void {
    const buffer = this.received === null ? chunk : Buffer.concat([this.received, chunk])
    this.received = buffer
    const headEnd = buffer.indexOf(HEAD_END)
    if (headEnd < 0) return
    const head = buffer.toString('latin1', 0, headEnd).toLowerCase()
    const length = /\r\ncontent-length:[ \t]*(\d+)/.exec(head)
    let end: number
    if (length !== null) {
      end = headEnd + HEAD_END.length + Number(length[1])
      if (buffer.length < end) return
    } else if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) {
      // The first LAST_CHUNK at or after the head's own CRLF; chunk data of these small answers never holds it.
      const last = buffer.indexOf(LAST_CHUNK, headEnd + 2)
      if (last < 0) return
      end = last + LAST_CHUNK.length
    } else {
      this.socket.destroy(new Error('paced-load: an answer with neither content-length nor chunked encoding'))
      return
    }
    const at = process.hrtime.bigint()
    const done = this.current
    if (done === null) {
      this.socket.destroy(new Error('paced-load: an answer to no request'))
      return
    }
    // One request at a time: nothing of another answer can follow this one in the buffer.
    this.received = end < buffer.length ? buffer.subarray(end) : null
    this.current = null
    const next = this.waiting.shift()
    if (next !== undefined) this.write(next)
    done(Number(head.slice(9, 12)), at)
  }
}

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  // Nearest rank, as wrk and HdrHistogram report it.
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}

function numberFromEnv (name: string, min: number): number {
  const n = Number(process.env[name])
  if (process.env[name] === undefined || !Number.isFinite(n) || n < min) {
    throw new Error(`paced-load: ${name} must be a number ≥ ${min}, got ${JSON.stringify(process.env[name])}`)
  }
  return n
}

async function main (): Promise<void> {
  const url = new URL(process.env.PACED_URL ?? '')
  if (url.protocol !== 'http:') throw new Error(`paced-load: PACED_URL must be an http: URL, got ${JSON.stringify(process.env.PACED_URL)}`)
  const rate = numberFromEnv('PACED_RATE', 1)
  const seconds = numberFromEnv('PACED_SECONDS', 0.1)
  const settleSeconds = numberFromEnv('PACED_SETTLE_SECONDS', 0)
  const connections = Math.round(numberFromEnv('PACED_CONNECTIONS', 1))
  const headers = JSON.parse(process.env.PACED_HEADERS ?? '{}') as Record<string, string>
  const request = Buffer.from(`GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('') + '\r\n', 'latin1')
  const pool = Array.from({ length: connections }, () => new Connection(Number(url.port || 80), url.hostname, request))

  const settling = Math.round(rate * settleSeconds)
  const total = Math.round(rate * seconds)
  const count = settling + total
  // Per request, in release order, settling ones included.
  const state = new Uint8Array(count)
  const latencyUs = new Float64Array(count)
  const lagUs = new Float64Array(count)
  const answeredAtNs = new Float64Array(count)

  // Before the clock starts, every connection is open (a connect is not a latency) and this process's request
  // path is compiled: started cold straight at the rate, the pacer fell behind for its first 0.3–1 s and the
  // queue took as long to drain (p99 in the hundreds of ms). Closed loop, about 0.2 s.
  await Promise.all(pool.map(async (connection) => {
    for (let i = 0; i < PRIME_PER_CONNECTION; i++) {
      const status = await new Promise<number>((resolve) => { connection.send((s) => { resolve(s) }) })
      if (status === 0) throw new Error(`paced-load: could not get an answer from ${url.origin}`)
    }
  }))

  const intervalNs = 1e9 / rate
  const start = process.hrtime.bigint()
  let pending = 0
  let idle: (() => void) | null = null
  const send = (i: number): void => {
    const releasedAt = process.hrtime.bigint()
    pending++
    pool[i % connections].send((status, at) => {
      latencyUs[i] = Number(at - releasedAt) / 1000
      answeredAtNs[i] = Number(at - start)
      state[i] = status === 0 ? FAILED : status >= 400 ? BAD_STATUS : ANSWERED
      if (--pending === 0 && idle !== null) idle()
    })
  }

  // One schedule: the settling part runs straight into the measured part, with no gap in the arrivals; every
  // request runs the same code, so that nothing changes in this process where the measured part starts.
  let released = 0
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsedNs = Number(process.hrtime.bigint() - start)
      const due = Math.min(count, Math.floor(elapsedNs / intervalNs) + 1)
      for (; released < due; released++) {
        lagUs[released] = Math.max(0, elapsedNs - released * intervalNs) / 1000
        send(released)
      }
      if (released < count) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await new Promise<void>((resolve) => {
    if (pending === 0) return resolve()
    idle = resolve
    setTimeout(resolve, DRAIN_MS).unref()
  })

  const latencies: number[] = []
  let answered = 0
  let badStatus = 0
  let socketErrors = 0
  let lastAnswerNs = 0
  for (let i = settling; i < count; i++) {
    // Still pending after the drain time counts as a socket error (a timeout), as in wrk.
    if (state[i] === PENDING || state[i] === FAILED) {
      socketErrors++
      continue
    }
    answered++
    lastAnswerNs = Math.max(lastAnswerNs, answeredAtNs[i])
    if (state[i] === BAD_STATUS) badStatus++
    else latencies.push(latencyUs[i])
  }
  const sorted = Float64Array.from(latencies).sort()
  const measuredFromNs = settling * intervalNs
  const report: PacedReport = {
    scheduled: total,
    warmupRequests: connections * PRIME_PER_CONNECTION + settling,
    requests: answered,
    durationS: ((lastAnswerNs > measuredFromNs ? lastAnswerNs : Number(process.hrtime.bigint() - start)) - measuredFromNs) / 1e9,
    badStatus,
    socketErrors,
    p50Ms: percentile(sorted, 0.5) / 1000,
    p99Ms: percentile(sorted, 0.99) / 1000,
    lagP99Ms: percentile(lagUs.subarray(settling).sort(), 0.99) / 1000
  }
  process.stdout.write('PACED_JSON ' + JSON.stringify(report) + '\n')
  // Requests left unanswered would keep their sockets (and this process) open.
  for (const connection of pool) connection.close()
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`)
    process.exit(1)
  })
}
