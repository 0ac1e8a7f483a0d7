/**
 * An echo upstream in its own process, so a test or the soak can kill it the way a crash would. It answers JSON
 * `{ upstream, method, url, headers, body }` with an `x-upstream-id` header; `/health` answers 200 or 503, and
 * `/health/fail` and `/health/ok` switch it.
 */
import { spawn, type ChildProcess } from 'node:child_process'

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
server.keepAliveTimeout = 5000
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready ' + server.address().port + '\\n'))
`

/**
 * Starts an echo upstream process on 127.0.0.1 and waits until it listens (at most 10 s).
 * @param port - 0 for a free port, or the port of a previous run (a restart)
 * @param started - called with the child as soon as it is spawned, so the caller can track it for cleanup
 * @returns the child and the port it listens on
 */
export async function launchEchoUpstream (id: string, port: number, started: (child: ChildProcess) => void = () => {}): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['-e', SERVER], { env: { ...process.env, UPSTREAM_ID: id, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] })
  started(child)
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
