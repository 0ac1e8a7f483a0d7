/**
 * nginx and HAProxy peer rows, only where their binaries are installed (the benchmark never installs them):
 * one process, one worker/thread, pinned to the gateway core, forwarding every request to the first upstream over
 * keep-alive connections, no stickiness (as shared/PERF-ANCHORS.md's (b) and a non-sticky HAProxy). They are read
 * by CPU µs per request: at 50 connections the load core, not they, sets their req/s.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { probe } from './probe'
import { ROOT, freePort, startProcess, stopProcess, type Started } from './processes'

/** A native proxy the benchmark can run. */
export interface PeerSpec {
  readonly name: 'nginx' | 'haproxy'
  readonly label: string
  readonly binary: string
}

export const PEERS: readonly PeerSpec[] = [
  { name: 'nginx', label: 'nginx', binary: 'nginx' },
  { name: 'haproxy', label: 'HAProxy', binary: 'haproxy' }
]

/** @returns the binary's path when `command -v` finds it, else null */
export function peerBinary (binary: string): string | null {
  const out = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' })
  const path = (out.stdout ?? '').trim()
  return out.status === 0 && path !== '' ? path : null
}

/** @returns the version line of a peer, for the report */
export function peerVersion (peer: PeerSpec, path: string): string {
  const out = spawnSync(path, ['-v'], { encoding: 'utf8' })
  return ((out.stderr ?? '') + (out.stdout ?? '')).split('\n').find((line) => line.trim() !== '')?.trim() ?? peer.name
}

function nginxConfig (dir: string, port: number, upstream: URL): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream one { server ${upstream.host}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://one; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`
}

function haproxyConfig (port: number, upstream: URL): string {
  return `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:${port}
  default_backend one
backend one
  http-reuse always
  server u1 ${upstream.host}
`
}

/**
 * Starts a peer pinned to `core`, forwarding to `upstreamUrl`, and waits until it answers.
 * @returns the process and its URL
 */
export async function startPeer (peer: PeerSpec, path: string, upstreamUrl: string, core: number): Promise<{ proc: Started, url: string }> {
  const dir = join(ROOT, 'bench', 'results', 'tmp', `${peer.name}-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  const upstream = new URL(upstreamUrl)
  const config = join(dir, `${peer.name}.conf`)
  writeFileSync(config, peer.name === 'nginx' ? nginxConfig(dir, port, upstream) : haproxyConfig(port, upstream))
  const args = peer.name === 'nginx' ? ['-e', 'stderr', '-p', dir, '-c', config] : ['-db', '-f', config]
  const { proc } = await startProcess({ name: peer.name, command: path, args, core })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      if ((await probe(url, '_')).status === 200) break
    } catch {}
    if (proc.child.exitCode !== null || Date.now() > deadline) {
      await stopProcess(proc)
      throw new Error(`bench: ${peer.name} did not answer on ${url}: ${proc.tail.join(' | ')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { proc, url }
}
