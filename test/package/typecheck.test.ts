/**
 * `tsc --noEmit -p .` is clean: lib/, test/, examples/ and bench/ (the root tsconfig.json includes them all).
 * Tests load TypeScript through sucrase (.taprc) and `npm run demo`/`gateway`/`bench` through tsx, which strip types
 * without checking them, so without this test a type error in an example or the bench would pass CI.
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import t from 'tap'

const ROOT = path.resolve(__dirname, '..', '..')

// One tsc program over the whole repo: 10-20 s on an idle 2-core machine, over a minute when other test files
// (or other processes) share the cores; .taprc's 60 s would kill it mid-check.
t.setTimeout(180_000)

t.test('tsc --noEmit -p . reports no error (lib, test, examples, bench)', async (t) => {
  const tsc = path.join(ROOT, 'node_modules', '.bin', 'tsc')
  const result = await new Promise<{ code: number | null, output: string }>((resolve) => {
    // tap's process tracking gives every Node child of a test V8 block coverage; tsc runs none of lib/, and counting
    // every block of the compiler costs it about a quarter more CPU.
    const env = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
    execFile(tsc, ['--noEmit', '-p', '.', '--pretty', 'false'], { cwd: ROOT, env, timeout: 170_000, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, output: `${stdout}${stderr}` })
      })
  })
  t.equal(result.code, 0, 'tsc exits 0', { output: result.output })
  t.equal(result.output.trim(), '', 'tsc prints nothing', { output: result.output })
})
