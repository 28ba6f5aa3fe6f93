// Issue 9, part 4: nothing a caller does crashes the process or corrupts the registry.
// Re-entrant JavaScript during getAllSockets, caller-sized allocations, end() that registers
// again, ids with lone surrogates, waitForState answered at top level, Node < 20.16 workers,
// and the caller's own exceptions. Real Baileys sockets wherever a real socket reaches the case.

import { describe, test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

import { registry, until, untilStatus, wsClosed } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket } from './support/baileys.mjs'

const {
  registerSocket, getSocket, hasSocket, getAllSockets, getSocketCount, unregisterSocket, clearAll,
  updateSessionState, getSessionState, getAllSessions, waitForState, createSocketWrapper
} = registry

const CHILD = fileURLToPath(new URL('./fixtures/hostile-child.mjs', import.meta.url))

/** Runs a scenario of hostile-child.mjs; returns its exit and its one JSON line. */
function child (scenario) {
  const r = spawnSync(process.execPath, ['--expose-gc', CHILD, scenario], {
    encoding: 'utf8',
    // A guard against a hang (the 2 MB key took minutes before), not a performance bound.
    timeout: 60_000
  })
  const lines = r.stdout.trim().split('\n').filter(Boolean)
  return { status: r.status, signal: r.signal, stderr: r.stderr, results: lines.map((l) => JSON.parse(l)) }
}

function assertChild (scenario, expected) {
  const r = child(scenario)
  assert.equal(r.signal, null, `${scenario}: killed by ${r.signal}\n${r.stderr}`)
  assert.equal(r.status, 0, `${scenario}: exit ${r.status}\n${r.stderr}`)
  assert.deepEqual(r.results, expected)
}

function assertCode (fn, code, ErrorType) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof ErrorType, `expected a ${ErrorType.name}, got ${err?.constructor?.name}: ${err?.message}`)
    assert.equal(err.code, code, err.message)
    return true
  })
}

/** The caller's own exception, passed through as is: the same object, no code added. */
function assertPassesThrough (fn, boom) {
  assert.throws(fn, (err) => {
    assert.equal(err, boom)
    assert.equal(err.code, undefined)
    return true
  })
}

let baileys
let server
const connect = (id, mode = 'open') => makeTestSocket({ baileys, url: server.url(mode, { id }) })

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
})
afterEach(() => clearAll())
after(async () => {
  clearAll()
  await server.close()
})

describe('getAllSockets with JavaScript that unregisters meanwhile', () => {
  test('a patched Map.prototype.set that unregisters every socket: no crash, a copy of the sockets at the call', () => {
    assertChild('all-sockets-unregister', [{ size: 4, keys: ['a', 'b', 'c', 'd'], same: true, count: 0 }])
  })
})

describe('getStats and getAllSessions with a setter on Array.prototype', () => {
  test('a setter for index 0 that calls them again and swallows the value: no crash, full answers', () => {
    assertChild('array-index-setter', [{
      outer: { total: 3, errors: 1, ids: ['a', 'b', 'c'], custom: 2 },
      innerAgree: true
    }])
  })
})

describe('the shared pages of a thread with accessors on Array.prototype', () => {
  test('a getter and setter for index 0 neither stand in for a version page nor swallow one', () => {
    assertChild('array-index-pages', [{ moved: true, same: true, ran: 0 }])
  })
})

describe('limits on what one updateSessionState reads', () => {
  test('an array claiming 2^32 - 1 elements is refused before anything is allocated', () => {
    assertChild('huge-array-length', [{ code: 'ERR_STATE_TOO_LARGE' }])
  })

  test('a 2 MB key nested 60 deep around 1,000 elements is refused at once', () => {
    assertChild('huge-key-deep', [{ code: 'ERR_STATE_TOO_LARGE', keys: false }])
  })

  test('each limit: at the limit accepted, past it ERR_STATE_TOO_LARGE (RangeError) and nothing changed', () => {
    registerSocket('lim', connect('lim'), { track: false })
    const before = getSessionState('lim')
    const tooLarge = (updates) => {
      assertCode(() => updateSessionState('lim', updates), 'ERR_STATE_TOO_LARGE', RangeError)
      assert.deepEqual(getSessionState('lim'), before, 'nothing changed')
    }
    const nest = (levels) => {
      let v = 1
      for (let i = 0; i < levels; i++) v = { v }
      return v
    }
    // Depth: 64 nested objects under a key.
    tooLarge({ deep: nest(65) })
    // Values: the array itself counts one.
    tooLarge({ many: new Array(100_000).fill(0) })
    tooLarge(Object.fromEntries(Array.from({ length: 100_001 }, (_, i) => [`k${i}`, i])))
    // Key bytes (UTF-8): 4,096.
    tooLarge({ ['k'.repeat(4097)]: 1 })
    tooLarge({ ['é'.repeat(2049)]: 1 })
    tooLarge({ nested: { ['k'.repeat(4097)]: 1 } })
    // String bytes (UTF-8): 16 MiB, `error` included.
    const STRING_MAX = 16 * 1024 * 1024
    tooLarge({ s: 'x'.repeat(STRING_MAX + 1) })
    tooLarge({ s: 'é'.repeat(STRING_MAX / 2 + 1) })
    tooLarge({ error: 'x'.repeat(STRING_MAX + 1) })
    tooLarge({ error: new Error('x'.repeat(STRING_MAX + 1)) })
    // All keys and strings together: 32 MiB.
    const chunk = 'x'.repeat(STRING_MAX)
    tooLarge({ a: chunk, b: chunk })

    updateSessionState('lim', { many: new Array(99_999).fill(0) })
    updateSessionState('lim', { deep: nest(64), ['k'.repeat(4096)]: 1, s: 'x'.repeat(STRING_MAX) })
    updateSessionState('lim', { a: chunk, b: chunk.slice(0, STRING_MAX - 64) })
    const s = getSessionState('lim')
    assert.equal(s.many.length, 99_999)
    assert.equal(s.s.length, STRING_MAX)
    assert.equal(s.b.length, STRING_MAX - 64)
    let d = s.deep
    for (let i = 0; i < 64; i++) d = d.v
    assert.equal(d, 1)
  })

  test('circular values are still ERR_INVALID_STATE_VALUE, and paths in messages are built only for the error', () => {
    registerSocket('paths', connect('paths'), { track: false })
    const circular = { a: [1] }
    circular.a.push({ back: circular })
    assertCode(() => updateSessionState('paths', { circular }), 'ERR_INVALID_STATE_VALUE', TypeError)
    assert.throws(() => updateSessionState('paths', { plan: { tiers: [0, { f () {} }] } }), (e) => {
      assert.equal(e.code, 'ERR_INVALID_STATE_VALUE')
      assert.match(e.message, /^state value at 'plan\.tiers\[1\]\.f' is a function;/)
      return true
    })
    // Keys of the largest size, 60 deep around 1,000 elements, the last one refused: the message
    // names the path with every key cut short.
    const key = 'k'.repeat(4096)
    let v = Array.from({ length: 1000 }, (_, i) => (i === 999 ? Symbol('no') : i))
    for (let i = 0; i < 60; i++) v = { [key]: v }
    assert.throws(() => updateSessionState('paths', { v }), (e) => {
      assert.equal(e.code, 'ERR_INVALID_STATE_VALUE')
      const cut = `${'k'.repeat(40)}... (4096 bytes)`
      assert.equal(e.message.split("'")[1], `v${`.${cut}`.repeat(60)}[999]`)
      return true
    })
    assert.equal('v' in getSessionState('paths'), false)
  })
})

describe('end() that registers its id again', () => {
  /** A bot socket whose end() makes and registers a new one while `budget.left` lasts. */
  function reconnectingBot (id, log, budget) {
    const sock = connect(id)
    log.push({ sock, ends: 0 })
    const entry = log.at(-1)
    const end = sock.end.bind(sock)
    sock.end = (error) => {
      entry.ends++
      const result = end(error)
      if (budget.left-- > 0) registerSocket(id, reconnectingBot(id, log, budget))
      return result
    }
    return sock
  }

  test('20 nested re-registrations: every replaced socket ended once, the latest registered and tracked', async () => {
    const log = []
    const budget = { left: 0 }
    registerSocket('re', reconnectingBot('re', log, budget))
    budget.left = 20
    registerSocket('re', reconnectingBot('re', log, budget))
    assert.equal(log.length, 22)
    assert.deepEqual(log.map((e) => e.ends), [...new Array(21).fill(1), 0])
    const last = log.at(-1).sock
    assert.equal(getSocket('re'), last)
    assert.equal(getSocketCount(), 1)
    assert.deepEqual([...getAllSockets().keys()], ['re'])
    const s = await untilStatus('re', 'open')
    assert.equal(s.connects, 1)
    assert.equal(s.tracked, true)
    await until(() => log.slice(0, -1).every((e) => wsClosed(e.sock)), 'every replaced socket to close')

    clearAll()
    assert.equal(log.at(-1).ends, 1)
    assert.equal(getSocketCount(), 0)
    assert.equal(getSessionState('re'), null)
    assert.deepEqual(Object.keys(getAllSessions()), [])
  })

  test('unregisterSocket: the socket its end() registers stays registered and tracked', async () => {
    const log = []
    const budget = { left: 0 }
    registerSocket('un', reconnectingBot('un', log, budget))
    budget.left = 1
    assert.equal(unregisterSocket('un'), true)
    assert.deepEqual(log.map((e) => e.ends), [1, 0])
    assert.equal(getSocket('un'), log[1].sock)
    assert.equal(getSessionState('un').connects, 0)
    await untilStatus('un', 'open')
  })

  test('clearAll ends every socket it found once; one registered by those end() calls stays', async () => {
    const log = []
    const budget = { left: 0 }
    registerSocket('c1', reconnectingBot('c1', log, budget))
    const other = connect('c2')
    registerSocket('c2', other)
    budget.left = 1
    clearAll()
    assert.deepEqual(log.map((e) => e.ends), [1, 0])
    assert.equal(getSocketCount(), 1)
    assert.equal(getSocket('c1'), log[1].sock)
    assert.equal(hasSocket('c2'), false)
    assert.deepEqual(Object.keys(getAllSessions()), ['c1'])
    await untilStatus('c1', 'open')
    await until(() => wsClosed(other) && wsClosed(log[0].sock), 'the cleared sockets to close')
    clearAll()
    assert.equal(getSocketCount(), 0)
    assert.deepEqual(Object.keys(getAllSessions()), [])
  })

  test('ev.on that registers another socket for the id: the first is ended once and keeps no registry listener', async () => {
    const first = connect('on')
    const second = connect('on')
    let ends = 0
    const end = first.end.bind(first)
    first.end = (e) => { ends++; return end(e) }
    const on = first.ev.on
    let once = true
    first.ev.on = function (...args) {
      if (once) {
        once = false
        registerSocket('on', second)
      }
      return on.apply(this, args)
    }
    registerSocket('on', first)
    assert.equal(ends, 1)
    assert.equal(getSocket('on'), second)
    const probe = () => {}
    const inner = on.call(first.ev, 'registry.test.probe', probe)
    first.ev.off('registry.test.probe', probe)
    assert.deepEqual(inner.listeners('connection.update').filter((f) => f.name.startsWith('registry')), [])
    await untilStatus('on', 'open')
  })
})

describe('ids with lone surrogates', () => {
  const lone = ['user\uD800', 'user\uDC00', 'x'.repeat(200) + '\uD800']

  test('refused with ERR_INVALID_SESSION_ID where an id is taken; never found where one is looked up', async () => {
    const real = 'user\uFFFD'
    const sock = connect('lone')
    registerSocket(real, sock)
    updateSessionState(real, { plan: 'kept' })
    const before = getSessionState(real)
    for (const id of lone) {
      const other = connect('lone2')
      assertCode(() => registerSocket(id, other), 'ERR_INVALID_SESSION_ID', TypeError)
      assertCode(() => registerSocket(id, other, { track: false }), 'ERR_INVALID_SESSION_ID', TypeError)
      other.end(undefined)
      assert.throws(() => waitForState(id, 'open'), (e) => e.code === 'ERR_INVALID_SESSION_ID')
      let made = 0
      const wrapper = createSocketWrapper(() => { made++; return connect('never') })
      assertCode(() => wrapper({ sessionId: id }), 'ERR_INVALID_SESSION_ID', TypeError)
      assertCode(() => wrapper({ auth: { sessionId: id } }), 'ERR_INVALID_SESSION_ID', TypeError)
      assert.equal(made, 0)
      assert.equal(getSocket(id), null)
      assert.equal(hasSocket(id), false)
      assert.equal(getSessionState(id), null)
      assert.equal(unregisterSocket(id), false)
      updateSessionState(id, { plan: 'changed' })
    }
    assert.equal(getSocket(real), sock)
    assert.equal(getSocketCount(), 1)
    assert.deepEqual(getSessionState(real), before)
    assert.equal(wsClosed(sock), false, 'the real session was not ended')
    // A legitimate U+FFFD still works everywhere, on the short and the long read.
    const longReal = 'y'.repeat(200) + '\uFFFD'
    registerSocket(longReal, connect('lone3'), { track: false })
    assert.equal(hasSocket(longReal), true)
    assert.equal(getSessionState(longReal).tracked, false)
    assert.equal(hasSocket('y'.repeat(200) + '\uDFFF'), false)
    await untilStatus(real, 'open')
  })
})

describe('waitForState answered at top level', () => {
  test('a wait without timeoutMs settles when the same thread answers it, even with nothing else alive', () => {
    assertChild('wait-then-update', [{ resolved: 'open' }])
    assertChild('wait-then-unregister', [{ rejected: 'ERR_SESSION_REMOVED' }])
  })

  test('an unanswered wait without timeoutMs still lets the process exit', () => {
    assertChild('wait-unanswered', [{ exited: true }])
  })
})

describe('Node versions without process.getBuiltinModule (before 20.16)', () => {
  test('a worker still records its own threadId, handed over by the package loader', async () => {
    const loader = fileURLToPath(new URL('../index.js', import.meta.url))
    const code = `
      const { parentPort, threadId } = require('node:worker_threads')
      delete process.getBuiltinModule
      const r = require(${JSON.stringify(loader)})
      r.registerSocket('gbm', {}, { track: false })
      parentPort.postMessage({
        threadId,
        recorded: r.getSessionState('gbm').threadId,
        simulated: typeof process.getBuiltinModule,
        leftover: '__baileysSocketRegistryThreadId' in globalThis
      })
      r.clearAll()
    `
    const worker = new Worker(code, { eval: true })
    const [message] = await Promise.all([
      new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject)),
      new Promise((resolve) => worker.once('exit', resolve))
    ])
    assert.ok(message.threadId > 0)
    assert.deepEqual(message, { threadId: message.threadId, recorded: message.threadId, simulated: 'undefined', leftover: false })
  })
})

describe("the caller's own exceptions", () => {
  const boom = new Error('boom')

  test('updateSessionState: a throwing getter, Proxy trap or toJSON passes through and nothing is applied', () => {
    registerSocket('own', connect('own'), { track: false })
    updateSessionState('own', { plan: 'a' })
    const before = getSessionState('own')
    const cases = [
      { plan: 'b', isConnected: true, get later () { throw boom } },
      { plan: 'b', nested: { deeper: [1, { get x () { throw boom } }] } },
      { plan: 'b', when: { toJSON () { throw boom } } },
      new Proxy({ plan: 'b' }, { ownKeys () { throw boom } }),
      new Proxy({ plan: 'b', status: 'open' }, { get (t, k) { if (k === 'status') throw boom; return t[k] } }),
      { plan: 'b', error: { get message () { throw boom } } }
    ]
    for (const updates of cases) {
      assertPassesThrough(() => updateSessionState('own', updates), boom)
      assert.deepEqual(getSessionState('own'), before)
    }
  })

  test('registerSocket: a throwing option getter leaves the old socket registered and running', async () => {
    const old = connect('keep')
    registerSocket('keep', old)
    await untilStatus('keep', 'open')
    const before = getSessionState('keep')
    const next = connect('keep')
    assertPassesThrough(() => registerSocket('keep', next, { get takeover () { throw boom } }), boom)
    assert.equal(getSocket('keep'), old)
    assert.deepEqual(getSessionState('keep'), before)
    assert.equal(wsClosed(old), false)
    next.end(undefined)
  })

  test('createSocketWrapper: a throwing factory, config getter or socket setter registers nothing', () => {
    const count = getSocketCount()
    assertPassesThrough(() => createSocketWrapper(() => { throw boom })({ sessionId: 'w1' }), boom)
    let made = 0
    const wrapper = createSocketWrapper(() => { made++; return connect('w2') })
    assertPassesThrough(() => wrapper({ get sessionId () { throw boom } }), boom)
    assert.equal(made, 0)
    // A real socket behind a Proxy that refuses `_sessionId`.
    let real
    const proxied = createSocketWrapper(() => {
      real = connect('w3')
      return new Proxy(real, { set () { throw boom } })
    })
    assertPassesThrough(() => proxied({ sessionId: 'w3' }), boom)
    real.end(undefined)
    assert.equal(getSocketCount(), count)
    for (const id of ['w1', 'w2', 'w3']) assert.equal(getSessionState(id), null)
  })

  test('waitForState: a throwing option getter throws before any wait starts', () => {
    registerSocket('wt', connect('wt'), { track: false })
    assertPassesThrough(() => waitForState('wt', 'open', { get timeoutMs () { throw boom } }), boom)
  })

  test('onStateChange: patched builtins cannot leave a listener subscribed, and unsubscribe needs none of them', async () => {
    // Found by the fuzz test: the unsubscribe function was made with Function.prototype.bind
    // after subscribing, so a throwing bind left the listener subscribed for good.
    const { onStateChange } = registry
    const bind = Function.prototype.bind
    let calls = 0
    Function.prototype.bind = function () { throw boom } // eslint-disable-line no-extend-native
    let unsubscribe
    try {
      unsubscribe = onStateChange(() => calls++)
    } finally {
      Function.prototype.bind = bind // eslint-disable-line no-extend-native
    }
    registerSocket('ub', connect('ub'), { track: false })
    await until(() => calls === 1, 'the registered event')
    assert.equal(unsubscribe(), true)
    assert.equal(unsubscribe(), false)
    unregisterSocket('ub')
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(calls, 1, 'no event after unsubscribe')
  })
})

test('a Rust panic inside a native call throws ERR_INTERNAL and the process carries on', () => {
  // No caller input reaches a panic on purpose, so the addon's hidden test hook
  // (`__bench.panic`, src/fast.rs) panics inside the same guard (js::guard) every raw native
  // callback runs in. In a child process: a panic that escaped the guard would abort it.
  const script = `
    const r = require(${JSON.stringify(fileURLToPath(new URL('..', import.meta.url)))})
    const out = {}
    try {
      r.__bench.panic()
      out.thrown = null
    } catch (e) {
      out.thrown = { code: e.code, name: e.name, message: e.message }
    }
    // The registry still works after the panic.
    r.registerSocket('after-panic', { ev: { on () {}, off () {} }, end () {} }, { track: false })
    r.updateSessionState('after-panic', { isConnected: true })
    out.after = [r.getSocketCount(), r.getSessionState('after-panic').isConnected]
    r.clearAll()
    console.log(JSON.stringify(out))
  `
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.signal, null, `killed by ${r.signal}\n${r.stderr}`)
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stderr}`)
  const out = JSON.parse(r.stdout.trim())
  assert.deepEqual(out.thrown, {
    code: 'ERR_INTERNAL',
    name: 'Error',
    message: 'the registry failed inside (please report it): a panic on purpose (__bench.panic)'
  })
  assert.deepEqual(out.after, [1, true])
})
