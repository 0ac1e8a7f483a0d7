/** Our signer writes and reads exactly what @fastify/cookie's signer does, so cookies issued before keep working. */
import { signerFactory } from '@fastify/cookie'
import fc from 'fast-check'
import t from 'tap'
import { createCookieSigner } from '../../lib/affinity/cookie-signer'

const secret = fc.string({ minLength: 32, maxLength: 64, unit: 'grapheme' })

t.test('same signatures, same verdicts, both ways, over rotating secrets', async (t) => {
  fc.assert(fc.property(fc.array(secret, { minLength: 1, maxLength: 3 }), fc.string({ maxLength: 120, unit: 'grapheme' }), fc.nat(), (secrets, value, pick) => {
    const ours = createCookieSigner(secrets)
    const theirs = signerFactory([...secrets])
    const signed = ours.sign(value)
    if (signed !== theirs.sign(value)) return false
    // Signed by an older secret: valid, to be renewed, in both.
    const older = signerFactory([secrets[pick % secrets.length]]).sign(value)
    const a = ours.unsign(older)
    const b = theirs.unsign(older)
    if (a.valid !== b.valid || a.renew !== b.renew || a.value !== b.value) return false
    // Any tampering: refused by both.
    const tampered = signed.slice(0, -1) + (signed.endsWith('A') ? 'B' : 'A')
    return !ours.unsign(tampered).valid && !theirs.unsign(tampered).valid
  }), { numRuns: 300 })
  t.pass('300 random secret lists and values')
})

t.test('values that are no signed value are refused without throwing', async (t) => {
  const ours = createCookieSigner(['s'.repeat(32)])
  for (const junk of ['', '.', 'abc', 'abc.', '.abc', 'a.b.c', 'x'.repeat(500)]) {
    t.same(ours.unsign(junk), { valid: false, renew: false, value: null }, JSON.stringify(junk.slice(0, 20)))
  }
})
