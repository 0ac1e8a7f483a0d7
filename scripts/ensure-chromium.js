#!/usr/bin/env node
'use strict'

// `pretest`: the status page is tested in a real headless browser (DESIGN §6): Debian's chromium, driven by
// playwright-core through `executablePath` (playwright never downloads a browser here). Silent when
// /usr/bin/chromium runs; installs the Debian package with apt-get when running as root; otherwise prints one
// line saying what to install and exits 1. No dependencies: runs before `npm test`.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const CHROMIUM = '/usr/bin/chromium'
// playwright-core speaks the DevTools protocol of current Chromium releases; much older ones miss commands it uses.
const MIN_MAJOR = 120
const INSTALL_HINT =
  'fastify-sticky tests need Debian\'s chromium at /usr/bin/chromium (for the status page test): install it, e.g. "sudo apt-get install chromium"'

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
 * Runs a command without a shell, capturing its output.
 * @param {string} cmd
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
function run (cmd, args, env) {
  return spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env, timeout: 600_000 })
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

/** @returns {boolean} whether apt knows a chromium package to install */
function aptHasCandidate () {
  const r = run('apt-cache', ['policy', 'chromium'])
  const m = /Candidate:\s*(\S+)/.exec(r.stdout || '')
  return Boolean(m && m[1] !== '(none)')
}

function installWithApt () {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  process.stdout.write('fastify-sticky: chromium not found, installing it with apt-get (Debian package chromium)\n')
  if (!aptHasCandidate()) {
    const update = run('apt-get', ['-q', 'update'], env)
    if (update.error || update.status !== 0) reportAptFailure('apt-get update', update)
  }
  if (!aptHasCandidate()) fail(`fastify-sticky: apt knows no chromium package; ${INSTALL_HINT}`)
  const install = run('apt-get', ['-q', '-y', 'install', 'chromium'], env)
  if (install.error || install.status !== 0) reportAptFailure('apt-get install -y chromium', install)
  if (!fs.existsSync(CHROMIUM)) fail(`fastify-sticky: apt-get installed chromium, but ${CHROMIUM} is missing; ${INSTALL_HINT}`)
}

function checkVersion () {
  const r = run(CHROMIUM, ['--version'])
  if (r.error || r.status !== 0) {
    fail(`fastify-sticky tests need a working ${CHROMIUM}, but "${CHROMIUM} --version" failed: ` +
      oneLine(r.error ? r.error.message : r.stderr || r.stdout || `exit code ${r.status}`))
  }
  const m = /Chromium\s+(\d+)\./.exec(r.stdout)
  if (!m) fail(`fastify-sticky: could not read the version of ${CHROMIUM} from: ${oneLine(r.stdout)}`)
  if (Number(m[1]) < MIN_MAJOR) fail(`fastify-sticky tests need chromium >= ${MIN_MAJOR}, found ${m[1]} at ${CHROMIUM}: upgrade it`)
}

function main () {
  if (!fs.existsSync(CHROMIUM)) {
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
    if (!isRoot || !findOnPath('apt-get') || !findOnPath('apt-cache')) fail(INSTALL_HINT)
    installWithApt()
  }
  checkVersion()
}

main()
