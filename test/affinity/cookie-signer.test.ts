/** Our signer writes and reads exactly what @fastify/cookie's signer does, so cookies issued before keep working. */
import { signerFactory } from '@fastify/cookie'
import fc from 'fast-check'
import t from 'tap'
import { createHmac } from 'node:crypto'
import { createCookieSigner, hmacSha256Base64 } from '../../lib/affinity/cookie-signer'

// ASCII secrets take the one-shot-hash construction, others an Hmac object: both kinds, short and longer than a block.
const secret = fc.oneof(
  fc.string({ minLength: 32, maxLength: 64, unit: 'grapheme' }),
  fc.string({ minLength: 32, maxLength: 100, unit: 'grapheme-ascii' })
)

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

t.test('HMAC-SHA256 from one-shot hashes equals Node\'s Hmac, for any secret and value', async (t) => {
  let ascii = 0
  fc.assert(fc.property(
    fc.oneof(fc.string({ maxLength: 150, unit: 'grapheme-ascii' }), fc.string({ maxLength: 150, unit: 'grapheme' }), fc.string({ maxLength: 150, unit: 'binary' })),
    fc.oneof(fc.string({ maxLength: 200, unit: 'grapheme-ascii' }), fc.string({ maxLength: 200, unit: 'grapheme' }), fc.string({ maxLength: 200, unit: 'binary' })),
    (key, value) => {
      if (/^[\x00-\x7f]*$/.test(key)) ascii++
      const hmac = hmacSha256Base64(key)
      // Twice: the scratch buffer of the outer hash is reused.
      const expected = createHmac('sha256', Buffer.from(key, 'utf8')).update(value).digest('base64')
      return hmac(value) === expected && hmac(value) === expected
    }), { numRuns: 3000 })
  t.ok(ascii > 500, `${ascii} of 3000 ASCII secrets`)
  t.equal(hmacSha256Base64('k'.repeat(65))('v'), createHmac('sha256', 'k'.repeat(65)).update('v').digest('base64'), 'a key longer than a block is hashed first')
})
