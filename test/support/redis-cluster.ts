import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { TeardownOwner } from './teardown-owner'
import { startRedis, type RedisServer } from './redis'
import { freePort } from '../../scripts/loopback'

/** A local Redis Cluster of real redis-server processes owned by one test (see {@link startRedisCluster}). */
export interface RedisClusterServers {
  /** The masters, each with its loopback port and PID. */
  readonly nodes: readonly RedisServer[]
  /** `{ host: '127.0.0.1', port }` of every node: ioredis `Cluster` startup nodes. */
  readonly startupNodes: ReadonlyArray<{ host: string, port: number }>
}

/** Options of {@link startRedisCluster}. */
export interface StartRedisClusterOptions {
  /** Number of masters (no replicas). @defaultValue 3 */
  masters?: number
}

const CLUSTER_OK_TIMEOUT_MS = 15_000

/**
 * Starts `masters` cluster-enabled redis-server processes on free loopback ports (no persistence, each with its
 * own temporary directory for nodes.conf and a cluster bus port of its own), joins them with
 * `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes` and waits for `cluster_state:ok` on every node.
 * Teardown kills each process by PID and removes the directories.
 *
 * @param t - the test that owns the cluster
 * @returns the running cluster
 * @throws Error when a node does not start, `redis-cli --cluster create` fails, or the cluster is not ok within 15 s
 * @example
 * const cluster = await startRedisCluster(t)
 * const client = new Cluster(cluster.startupNodes)
 */
export async function startRedisCluster (t: TeardownOwner, options: StartRedisClusterOptions = {}): Promise<RedisClusterServers> {
  const masters = options.masters ?? 3
  const dirs: string[] = []
  const nodes: RedisServer[] = []
  // Registered first, so it runs last (tap runs teardowns last-in first-out), after startRedis has killed the
  // nodes; stop() is idempotent and awaited again here, so no node ever runs without its directory.
  t.teardown(async () => {
    await Promise.all(nodes.map((node) => node.stop()))
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  })
  await Promise.all(Array.from({ length: masters }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sticky-cluster-'))
    dirs.push(dir)
    // The bus port is given explicitly: the default (port + 10000) may be taken, or above 65535.
    const busPort = await freePort()
    nodes.push(await startRedis(t, {
      args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(busPort),
        '--cluster-node-timeout', '2000', '--dir', dir,
        // A stopped master leaves its slots unserved, not the whole cluster: the others keep answering theirs.
        '--cluster-require-full-coverage', 'no']
    }))
  }))
  const addresses = nodes.map((node) => `127.0.0.1:${node.port}`)
  await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'])
  const deadline = Date.now() + CLUSTER_OK_TIMEOUT_MS
  for (const node of nodes) {
    for (;;) {
      const info = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(node.port), 'cluster', 'info'])
      if (/cluster_state:ok/.test(info) && /cluster_known_nodes:(\d+)/.exec(info)?.[1] === String(masters)) break
      if (Date.now() > deadline) throw new Error(`Redis Cluster node ${node.port} not ok within ${CLUSTER_OK_TIMEOUT_MS} ms:\n${info}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return { nodes, startupNodes: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })) }
}

/**
 * Runs a command (no shell) and resolves with its stdout.
 * @throws Error with its output when it exits non-zero or does not end within 15 s
 */
export function run (command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.once('error', (error) => { clearTimeout(timer); reject(error) })
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}:\n${out}`))
    })
  })
}

