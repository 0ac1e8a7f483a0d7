#!/usr/bin/env node
'use strict'

// `pretest`: the suite spawns real redis-server processes (DESIGN §6), so make sure one is installed.
// Silent when redis-server >= 7.0 is on PATH; installs it with apt-get when running as root;
// otherwise prints one line saying what to install and exits 1. No dependencies: runs before `npm test`.
// The Sentinel tests run `redis-sentinel` (Debian package redis-sentinel): installed the same way when
// missing. It is the same binary as redis-server, so when it cannot be installed the tests fall back to
// `redis-server --sentinel`, and this script only says so in one line instead of failing.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const MIN_MAJOR = 7
const MIN_MINOR = 0
const INSTALL_HINT =
  'fastify-sticky tests need redis-server (>= 7.0): install it, e.g. "sudo apt-get install redis-server"'

/**
 * Finds an executable on PATH, like `command -v`.
 * @param {string} name
 * @returns {string | null} absolute path, or null when not found
 */
function findOnPath (name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      if (fs.statSync(candidate).isFile()) return candidate
    } catch {}
  }
  return null
}

/**
 * Reads "major.minor" out of `redis-server --version` / `redis-cli --version` output.
 * @param {string} text e.g. "Redis server v=7.0.15 sha=..." or "redis-cli 7.0.15"
 * @returns {{ major: number, minor: number, text: string } | null}
 */
function parseVersion (text) {
  const m = /(?:v=|redis-cli\s+|^)(\d+)\.(\d+)(?:\.\d+)?/m.exec(text)
  return m ? { major: Number(m[1]), minor: Number(m[2]), text: `${m[1]}.${m[2]}` } : null
}

/** @param {{ major: number, minor: number }} v */
function isSupported (v) {
  return v.major > MIN_MAJOR || (v.major === MIN_MAJOR && v.minor >= MIN_MINOR)
}

/**
 * Prints one line to stderr and exits 1.
 * @param {string} line
 * @returns {never}
 */
function fail (line) {
  process.stderr.write(line + '\n')
  process.exit(1)
}

/**
 * Runs a command without a shell, capturing its output.
 * @param {string} cmd
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
function run (cmd, args, env) {
  return spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env })
}

/**
 * Checks `<binary> --version` is >= 7.0; exits 1 with one line when it is not.
 * @param {string} binary path or name
 * @param {string} label how to name it in the error line
 */
function checkVersion (binary, label) {
  const r = run(binary, ['--version'])
  if (r.error || r.status !== 0) {
    fail(`fastify-sticky tests need ${label} (>= 7.0), but "${binary} --version" failed: ` +
      oneLine(r.error ? r.error.message : r.stderr || r.stdout || `exit code ${r.status}`))
  }
  const v = parseVersion(r.stdout)
  if (!v) fail(`fastify-sticky tests need ${label} (>= 7.0), but could not read the version from: ${oneLine(r.stdout)}`)
  if (!isSupported(v)) {
    fail(`fastify-sticky tests need ${label} >= 7.0, found ${v.text} at ${binary}: upgrade it (e.g. from packages.redis.io)`)
  }
}

/** @param {string} s */
function oneLine (s) {
  return String(s).trim().split('\n').filter(Boolean).slice(-1)[0] || ''
}

/**
 * Prints the tail of a failed apt command's output (errors stay visible, successes stay quiet).
 * @param {string} what
 * @param {import('node:child_process').SpawnSyncReturns<string>} r
 */
function reportAptFailure (what, r) {
  const out = `${r.stdout || ''}${r.stderr || ''}`.trim().split('\n').slice(-20).join('\n')
  if (out) process.stderr.write(out + '\n')
  fail(`fastify-sticky: "${what}" failed (${r.error ? r.error.message : `exit code ${r.status}`}); ${INSTALL_HINT}`)
}

/**
 * Reads the candidate version of a Debian package from `apt-cache policy`.
 * @param {string} [pkg] package name
 * @returns {{ major: number, minor: number, text: string } | null} null when apt knows no candidate
 */
function aptCandidate (pkg = 'redis-server') {
  const r = run('apt-cache', ['policy', pkg])
  const m = /Candidate:\s*(\S+)/.exec(r.stdout || '')
  if (!m || m[1] === '(none)') return null
  // Debian versions look like "5:7.0.15-1~deb12u10": drop the epoch before reading major.minor.
  return parseVersion(m[1].replace(/^\d+:/, ''))
}

function installWithApt () {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  process.stdout.write('fastify-sticky: redis-server not found, installing it with apt-get (Debian package redis-server)\n')

  let candidate = aptCandidate()
  if (!candidate) {
    const update = run('apt-get', ['-q', 'update'], env)
    if (update.error || update.status !== 0) reportAptFailure('apt-get update', update)
    candidate = aptCandidate()
  }
  if (!candidate) fail(`fastify-sticky: apt knows no redis-server package; ${INSTALL_HINT}`)
  if (!isSupported(candidate)) {
    fail(`fastify-sticky tests need redis-server >= 7.0, but apt offers ${candidate.text}: install a newer one (e.g. from packages.redis.io)`)
  }

  const install = run('apt-get', ['-q', '-y', 'install', 'redis-server'], env)
  if (install.error || install.status !== 0) reportAptFailure('apt-get install -y redis-server', install)

  const installed = findOnPath('redis-server') || (fs.existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : null)
  if (!installed) fail(`fastify-sticky: apt-get installed redis-server, but it is not on PATH; ${INSTALL_HINT}`)
  return installed
}

/** @returns {boolean} true when this process may install packages with apt-get */
function canApt () {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  return isRoot && Boolean(findOnPath('apt-get')) && Boolean(findOnPath('apt-cache'))
}

/**
 * Makes sure `redis-sentinel` is on PATH: installs Debian's redis-sentinel package (the same version as
 * redis-server, whose binary it links to) when root; otherwise says in one line that the Sentinel tests
 * will run `redis-server --sentinel` instead. Never fails the test run: the fallback is the same binary.
 * @param {string} server path of redis-server
 */
function ensureSentinel (server) {
  const existing = findOnPath('redis-sentinel')
  if (existing) {
    checkVersion(existing, 'redis-sentinel')
    return
  }
  const fallback = `the Sentinel tests will run "${server} --sentinel" instead`
  if (!canApt()) {
    process.stdout.write(`fastify-sticky: redis-sentinel not found (install the redis-sentinel package); ${fallback}\n`)
    return
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  process.stdout.write('fastify-sticky: redis-sentinel not found, installing it with apt-get (Debian package redis-sentinel)\n')
  let candidate = aptCandidate('redis-sentinel')
  if (!candidate) {
    run('apt-get', ['-q', 'update'], env)
    candidate = aptCandidate('redis-sentinel')
  }
  if (!candidate || !isSupported(candidate)) {
    process.stdout.write(`fastify-sticky: apt offers no redis-sentinel >= 7.0; ${fallback}\n`)
    return
  }
  // Debian's policy-rc.d (containers) or a systemd unit may start a sentinel service on :26379; the tests never
  // use that port, so whether it runs does not matter.
  const install = run('apt-get', ['-q', '-y', 'install', 'redis-sentinel'], env)
  if (install.error || install.status !== 0 || !findOnPath('redis-sentinel')) {
    const why = install.error ? install.error.message : oneLine(`${install.stderr || ''}${install.stdout || ''}`) || `exit code ${install.status}`
    process.stdout.write(`fastify-sticky: "apt-get install -y redis-sentinel" failed (${why}); ${fallback}\n`)
    return
  }
  checkVersion(findOnPath('redis-sentinel'), 'redis-sentinel')
}

function main () {
  let server = findOnPath('redis-server')
  if (!server) {
    if (!canApt()) fail(INSTALL_HINT)
    server = installWithApt()
  }
  checkVersion(server, 'redis-server')

  // redis-cli ships with redis-server on Debian (redis-tools) and is used by the cluster tests;
  // not required on its own, but when present it must be as new as the server.
  const cli = findOnPath('redis-cli')
  if (cli) checkVersion(cli, 'redis-cli')

  ensureSentinel(server)
}

main()
