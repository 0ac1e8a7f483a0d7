import t from 'tap'
import { redactCredentials } from '../../lib/redact-credentials'

t.test('redactCredentials: the userinfo of every URL becomes ***', async (t) => {
  const cases: Array<[string, string]> = [
    ['redis://:supersecret@127.0.0.1:6379', 'redis://***@127.0.0.1:6379'],
    ['rediss://user:pass@redis.internal:6380/2', 'rediss://***@redis.internal:6380/2'],
    ['redis://default@host', 'redis://***@host'],
    ['HTTPS://U:P@H', 'HTTPS://***@H'],
    ['REDIS_URL must be a redis:// or rediss:// URL, got "redis://:supersecret@bad host"', 'REDIS_URL must be a redis:// or rediss:// URL, got "redis://***@bad host"'],
    ['a=http://u:pw@127.0.0.1:1,b=http://127.0.0.1:2', 'a=http://***@127.0.0.1:1,b=http://127.0.0.1:2'],
    ['a=http://127.0.0.1:1,b=http://u:pw@127.0.0.1:2', 'a=http://127.0.0.1:1,b=http://***@127.0.0.1:2'],
    ['first redis://:one@h1 then redis://:two@h2', 'first redis://***@h1 then redis://***@h2'],
    // Mistyped passwords: unencoded '@', '/', '?', '#' and spaces are still the password's.
    ['redis://:p@ss@host', 'redis://***@host'],
    ['redis://:pa/ss#?@host:6379/0', 'redis://***@host:6379/0'],
    ['redis://:my secret@host', 'redis://***@host'],
    // What WHATWG URL parsers take for an authority too.
    ['http:\\\\u:p@h', 'http:\\\\***@h'],
    ['http:u:p@h', 'http:***@h'],
    ['ws:/u:p@h', 'ws:/***@h']
  ]
  for (const [text, expected] of cases) t.equal(redactCredentials(text), expected, text)
})

t.test('redactCredentials: text without URL credentials comes back unchanged', async (t) => {
  for (const text of [
    '',
    'no URL @ all',
    'redis://127.0.0.1:6379',
    'mailto:ops@example.com',
    'rows: ops@example.com',
    'redis://h:1\nops@example.com on the next line',
    'UPSTREAMS must be set: a comma list of id=url, e.g. UPSTREAMS=a=http://127.0.0.1:4001,b=http://127.0.0.1:4002'
  ]) {
    t.equal(redactCredentials(text), text, JSON.stringify(text))
  }
})

t.test('redactCredentials: no password survives, whatever surrounds it', async (t) => {
  const secret = 'Zq9/x?y#w@v s"q'
  const shapes = [
    (s: string) => `redis://:${s}@host:6379`,
    (s: string) => `got ${JSON.stringify(`redis://user:${s}@host`)}, expected more`,
    (s: string) => `a=http://u:${s}@127.0.0.1:1,b=http://127.0.0.1:2`,
    (s: string) => `(cause: connect to rediss://admin:${s}@10.0.0.1:6380 failed)`
  ]
  for (const shape of shapes) {
    const text = shape(secret)
    const out = redactCredentials(text)
    for (const part of ['Zq9', 'x?y', 'w@v']) t.notOk(out.includes(part), `${JSON.stringify(out)} holds nothing of the password`)
  }
})
