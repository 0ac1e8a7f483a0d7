/**
 * The logger the core writes to: the subset of pino's interface it uses, so Fastify's logger, a pino instance or
 * `console`-like adapters all fit. Framework-free.
 */

/** A log method: an object of fields (or a message alone), then the message. */
export type CoreLogMethod = (fields: unknown, message?: string) => void

/** What the core logs through. */
export interface CoreLogger {
  readonly warn: CoreLogMethod
  readonly info: CoreLogMethod
  readonly debug: CoreLogMethod
}
