#!/usr/bin/env node
'use strict'

// `npm run gateway`, `npm run bench` and `pretest` run the compiled package (dist/), as a production user does:
// rebuilt here when any source under lib/ (or a tsconfig) is newer than the last build, so a fresh clone or an
// edit never runs stale JavaScript. Silent and instant when dist/ is current. `--force` (`npm run build`) always
// builds. dist/ is emptied first: a module moved or removed in lib/ must not stay behind in it.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const stamp = path.join(root, 'dist', '.build-stamp')

function newestMtime (dir) {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : fs.statSync(full).mtimeMs)
  }
  return newest
}

const sources = Math.max(newestMtime(path.join(root, 'lib')), ...['tsconfig.json', 'tsconfig.build.json', 'package.json'].map((f) => fs.statSync(path.join(root, f)).mtimeMs))
const built = fs.existsSync(stamp) ? fs.statSync(stamp).mtimeMs : 0
if (process.argv.includes('--force') || built < sources) {
  if (!process.argv.includes('--force')) process.stderr.write('fastify-sticky: building dist/ (lib/ changed since the last build)\n')
  fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true })
  const result = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) process.exit(result.status ?? 1)
  fs.writeFileSync(stamp, new Date().toISOString() + '\n')
}
