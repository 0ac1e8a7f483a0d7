/**
 * The gateway builds a comparison runs (`npm run bench:ab`, `npm run bench:ir`): `plain`, a script path, or a git
 * revision checked out and compiled in its own worktree; and the bench scripts both commands start.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { ROOT } from './processes'

/** Where revisions are checked out and built (ignored by git, as all of bench/results/tmp/). */
const WORKTREES_DIR = join(ROOT, 'bench', 'results', 'tmp', 'ab')
/** bench/tsconfig.json's output: the upstreams and the plain baseline. */
const COMPILED_BENCH = join(ROOT, 'bench', 'results', 'tmp', 'compiled', 'bench')
/** The benchmark's upstreams (bench/upstreams.ts), compiled. */
export const UPSTREAMS_SCRIPT = join(COMPILED_BENCH, 'upstreams.js')
/** The plain @fastify/reply-from baseline (bench/plain-gateway.ts), compiled. */
export const PLAIN_SCRIPT = join(COMPILED_BENCH, 'plain-gateway.js')
/** Written in a revision's dist/ once it compiled cleanly (as scripts/ensure-build.js does): the build is reused. */
const BUILD_STAMP = join('dist', '.build-stamp')

/** Thrown when `--a`/`--b` names no build: a usage error, not a failure. */
export class BuildSpecError extends Error {}

const log = (line: string): void => { process.stdout.write(line + '\n') }

/** A gateway build under comparison. */
export interface Build {
  /** How it is shown: what the user typed, and what it resolved to. */
  readonly label: string
  /** Absolute path of the script Node runs. */
  readonly script: string
}

/**
 * Runs git in the repository (or `cwd`).
 * @returns its trimmed stdout
 * @throws when git exits non-zero
 */
function git (args: readonly string[], cwd = ROOT): string {
  const result = spawnSync('git', args, { cwd, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`bench: git ${args.join(' ')} failed: ${(result.stderr ?? '').trim() || `exit ${result.status}`}`)
  return result.stdout.trim()
}

/** @returns the full SHA of a revision, or null when git does not know it */
function revisionSha (spec: string): string | null {
  // `--end-of-options` keeps a spec starting with "-" from being read as an option.
  const result = spawnSync('git', ['rev-parse', '--verify', '--quiet', '--end-of-options', `${spec}^{commit}`], { cwd: ROOT, encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim() : null
}

/**
 * Turns `--a`/`--b` into a script: `plain`, an existing file, else a git revision (built on first use).
 * @throws BuildSpecError when the spec is neither
 */
export function resolveBuild (spec: string): Build {
  if (spec === 'plain') return { label: `plain (${relative(ROOT, PLAIN_SCRIPT)})`, script: PLAIN_SCRIPT }
  const asPath = resolve(process.cwd(), spec)
  if (existsSync(asPath) && statSync(asPath).isFile()) return { label: spec, script: asPath }
  const sha = revisionSha(spec)
  if (sha === null) throw new BuildSpecError(`${JSON.stringify(spec)} is neither "plain", a file, nor a git revision`)
  const script = buildRevision(sha)
  const subject = git(['log', '-1', '--format=%h %s', sha])
  return { label: `${spec} (${subject.length > 72 ? subject.slice(0, 71) + '…' : subject})`, script }
}

/**
 * Checks a revision out as a detached worktree in bench/results/tmp/ab/<sha> and compiles it there, unless a
 * build of it is already there. Removes nothing: a directory in the way is reported, not replaced.
 * @returns the absolute path of the revision's dist/gateway/cli.js
 * @throws when the checkout or the compile fails
 */
export function buildRevision (sha: string): string {
  const dir = join(WORKTREES_DIR, sha)
  const script = join(dir, 'dist', 'gateway', 'cli.js')
  const short = sha.slice(0, 7)
  if (!existsSync(dir)) {
    mkdirSync(WORKTREES_DIR, { recursive: true })
    log(`bench: checking out ${short} in ${relative(ROOT, dir)}`)
    git(['worktree', 'add', '--detach', dir, sha])
  }
  // The directory is inside this repository's tree: without its own .git, git would answer for the repository.
  const top = existsSync(join(dir, '.git')) ? spawnSync('git', ['rev-parse', '--show-toplevel', 'HEAD'], { cwd: dir, encoding: 'utf8' }) : null
  const [topLevel, head] = top?.status === 0 ? top.stdout.trim().split('\n') : []
  if (topLevel === undefined || realpathSync(topLevel) !== realpathSync(dir) || head !== sha) {
    throw new Error(`bench: ${relative(ROOT, dir)} exists but is not a worktree of ${short}; move it away (or \`git worktree remove\` it) and run again`)
  }
  if (existsSync(join(dir, BUILD_STAMP)) && existsSync(script)) {
    log(`bench: reusing the build of ${short} in ${relative(ROOT, dir)}`)
    return script
  }
  const modules = join(dir, 'node_modules')
  if (!isPresent(modules)) symlinkSync(join(ROOT, 'node_modules'), modules, 'dir')
  log(`bench: compiling ${short} (tsc -p tsconfig.build.json)`)
  const result = spawnSync(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' })
  if (result.status !== 0) throw new Error(`bench: compiling ${short} in ${relative(ROOT, dir)} failed (exit ${result.status ?? result.signal})`)
  if (!existsSync(script)) throw new Error(`bench: ${short} has no dist/gateway/cli.js after compiling (no gateway command at that revision?)`)
  writeFileSync(join(dir, BUILD_STAMP), new Date().toISOString() + '\n')
  return script
}

/** @returns true when something (a dangling symlink included) is at `path` */
function isPresent (path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch {
    return false
  }
}

/**
 * Compiles the upstreams and the plain baseline with bench/tsconfig.json (as prepareGatewayRunner does), without
 * scripts/ensure-build.js: a build given as a path is compared as it is.
 * @throws when tsc fails
 */
export function compileBenchScripts (): void {
  const result = spawnSync(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'bench/tsconfig.json'], { cwd: ROOT, stdio: 'inherit' })
  if (result.status !== 0) throw new Error('bench: tsc -p bench/tsconfig.json failed')
}
