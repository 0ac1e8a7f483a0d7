#!/usr/bin/env node
'use strict'

// `pretest`: tap builds its Test class with the plugins it ships, and `.taprc` leaves some out (the TypeScript
// loader among them: sucrase replaces it). tap notices the difference and rebuilds at the start of a run, but that
// run still starts its test processes with the old plugins' loaders, so the first `npm test` after `npm ci` would
// load every test through ts-node as well. Rebuilding here, before tap starts, makes that first run like every
// other. Silent and instant when the build is already right.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const excluded = [...fs.readFileSync(path.join(root, '.taprc'), 'utf8').matchAll(/^\s*-\s*'!(@tapjs\/[a-z-]+)'\s*$/gm)].map((m) => m[1])
const built = path.join(path.dirname(require.resolve('@tapjs/test/package.json', { paths: [root] })), 'test-built', 'dist', 'esm', 'index.js')
const source = fs.existsSync(built) ? fs.readFileSync(built, 'utf8') : ''
const stale = source === '' || excluded.some((name) => source.includes(`'${name}'`) || source.includes(`"${name}"`))
if (stale) {
  process.stdout.write('fastify-sticky: rebuilding tap with the plugins .taprc names\n')
  const result = spawnSync(path.join(root, 'node_modules', '.bin', 'tap'), ['build'], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
}
