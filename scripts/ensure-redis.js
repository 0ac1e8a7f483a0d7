#!/usr/bin/env node
'use strict'

// `pretest`: the suite spawns real redis-server processes (DESIGN §6), so make sure one is installed.
// Silent when redis-server >= 7.0 is on PATH; installs it with apt-get when running as root;
// otherwise prints one line saying what to install and exits 1. No dependencies: runs before `npm test`.
// The Sentinel tests run `redis-sentinel` (Debian package redis-sentinel): installed the same way when
// missing. It is the same binary as redis-server, so when it cannot be installed the tests fall back to
// `redis-server --sentinel`, and this script only says so in one line instead of failing.

const fs = require('node:fs')
const { aptInstall, canApt, fail, findOnPath, oneLine, run } = require('./debian-packages')

const MIN_MAJOR = 7
const MIN_MINOR = 0
const INSTALL_HINT =
  'fastify-sticky tests need redis-server (>= 7.0): install it, e.g. "sudo apt-get install redis-server"'

/**
 * Reads "major.minor" out of `redis-server --version` / `redis-cli --version` output or a Debian version.
 * @param {string} text e.g. "Redis server v=7.0.15 sha=...", "redis-cli 7.0.15" or "7.0.15-1~deb12u10"
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

/** @param {string} debianVersion @returns {string | null} why apt's candidate is too old, or null */
function refuseOld (debianVersion) {
  const v = parseVersion(debianVersion)
  return v && isSupported(v) ? null : `apt offers ${debianVersion}, older than 7.0`
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

function installServer () {
  process.stdout.write('fastify-sticky: redis-server not found, installing it with apt-get (Debian package redis-server)\n')
  const result = aptInstall('redis-server', refuseOld)
  if (!result.ok) {
    if (result.output) process.stderr.write(result.output + '\n')
    fail(`fastify-sticky: ${result.why}; ${INSTALL_HINT}`)
  }
  const installed = findOnPath('redis-server') || (fs.existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : null)
  if (!installed) fail(`fastify-sticky: apt-get installed redis-server, but it is not on PATH; ${INSTALL_HINT}`)
  return installed
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
  process.stdout.write('fastify-sticky: redis-sentinel not found, installing it with apt-get (Debian package redis-sentinel)\n')
  // Debian's policy-rc.d (containers) or a systemd unit may start a sentinel service on :26379; the tests never
  // use that port, so whether it runs does not matter.
  const result = aptInstall('redis-sentinel', refuseOld)
  const installed = findOnPath('redis-sentinel')
  if (!result.ok || !installed) {
    process.stdout.write(`fastify-sticky: ${result.ok ? 'redis-sentinel is still not on PATH' : result.why}; ${fallback}\n`)
    return
  }
  checkVersion(installed, 'redis-sentinel')
}

function main () {
  let server = findOnPath('redis-server')
  if (!server) {
    if (!canApt()) fail(INSTALL_HINT)
    server = installServer()
  }
  checkVersion(server, 'redis-server')

  // redis-cli ships with redis-server on Debian (redis-tools) and is used by the cluster tests;
  // not required on its own, but when present it must be as new as the server.
  const cli = findOnPath('redis-cli')
  if (cli) checkVersion(cli, 'redis-cli')

  ensureSentinel(server)
}

main()
