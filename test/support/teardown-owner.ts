/**
 * What the support modules need of a test: somewhere to register clean-up. A tap `Test` is one; so is a bench's or
 * a script's own list. The modules under test/support import nothing of tap, so bench/ and scripts/ can use them.
 */

/** Whatever runs teardowns: a tap `Test`, or a bench's own list. */
export interface TeardownOwner {
  teardown (fn: () => unknown): void
}
