'use strict'

// What the `pretest` provisioning scripts (ensure-redis.js, ensure-chromium.js) share: finding executables,
// one-line failures, and installing a Debian package with apt-get (running `apt-get update` first only when apt
// knows no candidate yet). No dependencies: runs before `npm ci` has been trusted with anything.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }

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
 * Prints one line to stderr and exits 1.
 * @param {string} line
 * @returns {never}
 */
function fail (line) {
  process.stderr.write(line + '\n')
  process.exit(1)
}

/**
 * Runs a command without a shell, capturing its output (at most 10 minutes: an apt install of chromium is large).
 * @param {string} cmd
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
function run (cmd, args, env) {
  return spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env, timeout: 600_000 })
}

/** @param {string} s @returns {string} the last non-empty line */
function oneLine (s) {
  return String(s).trim().split('\n').filter(Boolean).slice(-1)[0] || ''
}

/** @returns {boolean} true when this process may install packages with apt-get */
function canApt () {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  return isRoot && Boolean(findOnPath('apt-get')) && Boolean(findOnPath('apt-cache'))
}

/**
 * @param {string} pkg Debian package name
 * @returns {string | null} the version apt would install (epoch dropped), or null when it knows none
 */
function aptCandidate (pkg) {
  const r = run('apt-cache', ['policy', pkg])
  const m = /Candidate:\s*(\S+)/.exec(r.stdout || '')
  return !m || m[1] === '(none)' ? null : m[1].replace(/^\d+:/, '')
}

/**
 * Installs a Debian package with apt-get, updating the package lists first when apt knows no candidate.
 * @param {string} pkg Debian package name
 * @param {(version: string) => string | null} refuse why apt's candidate will not do, or null when it will
 * @returns {{ ok: true } | { ok: false, why: string, output: string }}
 */
function aptInstall (pkg, refuse) {
  let candidate = aptCandidate(pkg)
  if (!candidate) {
    const update = run('apt-get', ['-q', 'update'], APT_ENV)
    if (update.error || update.status !== 0) return failed('apt-get update', update)
    candidate = aptCandidate(pkg)
  }
  if (!candidate) return { ok: false, why: `apt knows no ${pkg} package`, output: '' }
  const refused = refuse(candidate)
  if (refused) return { ok: false, why: refused, output: '' }
  const install = run('apt-get', ['-q', '-y', 'install', pkg], APT_ENV)
  if (install.error || install.status !== 0) return failed(`apt-get install -y ${pkg}`, install)
  return { ok: true }
}

/**
 * @param {string} what
 * @param {import('node:child_process').SpawnSyncReturns<string>} r
 */
function failed (what, r) {
  return {
    ok: false,
    why: `"${what}" failed (${r.error ? r.error.message : `exit code ${r.status}`})`,
    output: `${r.stdout || ''}${r.stderr || ''}`.trim().split('\n').slice(-20).join('\n')
  }
}

module.exports = { aptInstall, canApt, fail, findOnPath, oneLine, run }
