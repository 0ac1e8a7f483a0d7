/**
 * Polls a condition until it holds or a bound passes: what tests wait with instead of sleeping a guessed time.
 */

/**
 * Polls `check` every 20 ms until it returns true or `timeoutMs` passes, then checks once more.
 * @returns whether it held
 */
export async function eventually (check: () => Promise<boolean> | boolean, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return check()
}
