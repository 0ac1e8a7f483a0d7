import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { Test } from 'tap'

/** An upstream running in its own process, so a test can kill it the way a crash would. */
export interface UpstreamProcess {
  readonly id: string
  readonly url: string
  readonly port: number
  /** SIGKILLs the process (no goodbye to open connections) and waits for it to exit. */
  kill (): Promise<void>
  /** Starts it again on the same port. */
  restart (): Promise<void>
}

// Echoes like helpers/upstreams.ts: JSON { upstream, method, url, headers, body }; /health answers per HEALTH env.
const SERVER = `
const http = require('node:http')
const id = process.env.UPSTREAM_ID
let healthy = true
const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    if (req.url === '/health') { res.statusCode = healthy ? 200 : 503; res.end(); return }
    if (req.url === '/health/fail') { healthy = false; res.end('ok'); return }
    if (req.url === '/health/ok') { healthy = true; res.end('ok'); return }
    res.setHeader('content-type', 'application/json')
    res.setHeader('x-upstream-id', id)
    res.end(JSON.stringify({ upstream: id, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }))
  })
})
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready ' + server.address().port + '\\n'))
`

async function launch (id: string, port: number): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['-e', SERVER], { env: { ...process.env, UPSTREAM_ID: id, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] })
  const ready = await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`upstream ${id} did not start`)), 10_000)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      out += chunk
      const match = /ready (\d+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(Number(match[1])) }
    })
    child.once('exit', () => { clearTimeout(timer); reject(new Error(`upstream ${id} exited at start`)) })
  })
  return { child, port: ready }
}

/** Starts upstream processes on free loopback ports; every one is killed in `t.teardown`. */
export async function startUpstreamProcesses (t: Test, ids: string[]): Promise<UpstreamProcess[]> {
  const result: UpstreamProcess[] = []
  const children = new Set<ChildProcess>()
  t.teardown(async () => {
    await Promise.all([...children].map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
    }))
  })
  for (const id of ids) {
    let { child, port } = await launch(id, 0)
    children.add(child)
    result.push({
      id,
      port,
      url: `http://127.0.0.1:${port}`,
      async kill () {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGKILL')
        await once(child, 'exit')
      },
      async restart () {
        await this.kill()
        ;({ child } = await launch(id, port))
        children.add(child)
      }
    })
  }
  return result
}
