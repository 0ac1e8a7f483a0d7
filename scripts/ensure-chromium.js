#!/usr/bin/env node
'use strict'

// `pretest`: the status page is tested in a real headless browser (DESIGN §6): Debian's chromium, driven by
// playwright-core through `executablePath` (playwright never downloads a browser here). Silent when
// /usr/bin/chromium runs; installs the Debian package with apt-get when running as root; otherwise prints one
// line saying what to install and exits 1. No dependencies: runs before `npm test`.

const fs = require('node:fs')
const { aptInstall, canApt, fail, oneLine, run } = require('./debian-packages')

const CHROMIUM = '/usr/bin/chromium'
// playwright-core speaks the DevTools protocol of current Chromium releases; much older ones miss commands it uses.
const MIN_MAJOR = 120
const INSTALL_HINT =
  'fastify-sticky tests need Debian\'s chromium at /usr/bin/chromium (for the status page test): install it, e.g. "sudo apt-get install chromium"'

function install () {
  process.stdout.write('fastify-sticky: chromium not found, installing it with apt-get (Debian package chromium)\n')
  const result = aptInstall('chromium', () => null)
  if (!result.ok) {
    if (result.output) process.stderr.write(result.output + '\n')
    fail(`fastify-sticky: ${result.why}; ${INSTALL_HINT}`)
  }
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
    if (!canApt()) fail(INSTALL_HINT)
    install()
  }
  checkVersion()
}

main()
