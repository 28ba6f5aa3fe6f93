// The drop-in contract of socket-factory.js (issue 2), against real Baileys 7 sockets
// connected to the loopback WhatsApp server.

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

import * as esm from '../index.js'
import { registry, sleep, until, untilStatus, wsClosed } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket, makeCreds, makeMemoryKeyStore, sharedCaches, silentLogger } from './support/baileys.mjs'

const {
  registerSocket, getSocket, getAllSockets, getSocketCount, hasSocket, unregisterSocket,
  updateSessionState, getSessionState, getAllSessions, getStats, createSocketWrapper, clearAll
} = registry

let baileys
let server

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
})

afterEach(() => clearAll())

after(async () => {
  clearAll()
  await server.close()
})

// Baileys keeps its handshake timer (connectTimeoutMs) running when a socket that never got
// an answer is ended, so silent-server sockets get a short one: the process can exit soon.
const connect = (id, mode = 'open') =>
  makeTestSocket({ baileys, url: server.url(mode, { id }), ...(mode === 'silent' ? { connectTimeoutMs: 1500 } : {}) })

/** A config for the real makeWASocket, as a bot would pass it to the wrapper. */
function wrapperConfig (sessionId, mode) {
  return {
    sessionId,
    waWebSocketUrl: server.url(mode, { id: sessionId }),
    auth: {
      creds: makeCreds(baileys, { registered: true }),
      keys: baileys.makeCacheableSignalKeyStore(makeMemoryKeyStore(), silentLogger, sharedCaches.signalKeyCache)
    },
    logger: silentLogger,
    fireInitQueries: false,
    markOnlineOnConnect: false,
    shouldSyncHistoryMessage: () => false,
    msgRetryCounterCache: sharedCaches.msgRetryCounterCache,
    callOfferCache: sharedCaches.callOfferCache,
    placeholderResendCache: sharedCaches.placeholderResendCache,
    userDevicesCache: sharedCaches.userDevicesCache
  }
}

function assertCode (fn, code, ErrorType = TypeError) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof ErrorType, `expected a ${ErrorType.name}, got ${err?.constructor?.name}: ${err?.message}`)
    assert.equal(err.code, code)
    assert.ok(err.message.length > 10, 'the message says what was wrong')
    return true
  })
}

test('ESM named imports and require() load the same functions', () => {
  const required = createRequire(import.meta.url)('../index.js')
  for (const name of ['registerSocket', 'getSocket', 'getAllSockets', 'getSocketCount', 'hasSocket', 'unregisterSocket',
    'updateSessionState', 'getSessionState', 'getAllSessions', 'getStats', 'createSocketWrapper', 'clearAll']) {
    assert.equal(typeof esm[name], 'function', `ESM export ${name}`)
    assert.equal(esm[name], required[name], `${name} is the same function both ways`)
  }
})

test('the four checks: 100 real sockets, count, identity, connected and disconnected stats', async () => {
  const sockets = new Map()
  for (let i = 0; i < 100; i++) {
    const id = `user_${i}`
    // Even sessions log in; odd ones are accepted then dropped by the server (428).
    const sock = connect(id, i % 2 === 0 ? 'open' : 'accept-close')
    assert.equal(registerSocket(id, sock), sock, 'registerSocket returns the same socket')
    sockets.set(id, sock)
  }
  await until(() => [...sockets.keys()].every((id) => {
    const s = getSessionState(id).status
    return s === 'open' || s === 'closed'
  }), 'every session to open or close', 15000)

  assert.equal(getSocketCount(), 100)
  for (const [id, sock] of sockets) assert.equal(getSocket(id), sock, `getSocket('${id}') is its own socket`)

  const stats = getStats()
  const even = [...sockets.keys()].filter((_, i) => i % 2 === 0)
  const odd = [...sockets.keys()].filter((_, i) => i % 2 === 1)
  assert.equal(stats.totalSessions, 100)
  assert.deepEqual(stats.connectedSessions, even)
  assert.deepEqual(stats.disconnectedSessions, odd)
  assert.equal(stats.activeSessions.length, 100)
  assert.deepEqual(stats.activeSessions.map((s) => s.sessionId), [...sockets.keys()], 'registration order')
  assert.deepEqual(stats.errorSessions.map((e) => e.sessionId), odd, 'each dropped session reports its error')
  for (const e of stats.errorSessions) assert.equal(e.error, 'Connection Terminated')
  assert.ok(Array.isArray(stats.inactiveSessions))
})

test('getSocket, hasSocket, getSocketCount: identity, unknown ids, and non-string ids like a Map', () => {
  const sock = connect('a', 'silent')
  assert.equal(getSocket('a'), null)
  assert.equal(hasSocket('a'), false)
  registerSocket('a', sock)
  assert.equal(getSocket('a'), sock)
  assert.equal(hasSocket('a'), true)
  assert.equal(getSocketCount(), 1)
  assert.equal(getSocket('b'), null)
  for (const bad of [undefined, null, 1, {}, Symbol('x')]) {
    assert.equal(getSocket(bad), null)
    assert.equal(hasSocket(bad), false)
    assert.equal(unregisterSocket(bad), false)
  }
  assert.equal(getSocketCount(), 1, 'bad lookups change nothing')
})

test('ids of any length and script are kept exactly (no truncation at buffer edges)', () => {
  const unique = new Set()
  for (let n = 245; n < 262; n++) {
    unique.add('a'.repeat(n)).add('é'.repeat(Math.floor(n / 2)) + 'x').add('a'.repeat(n - 2) + '😀').add('会话'.repeat(n))
  }
  unique.add('user:1@s.whatsapp.net').add('x'.repeat(100_000))
  const ids = [...unique]
  const sockets = ids.map((id) => registerSocket(id, { ev: { on () {}, off () {} }, end () {} }, { track: false }))
  assert.equal(getSocketCount(), ids.length, 'no two ids collapsed into one')
  ids.forEach((id, i) => {
    assert.equal(getSocket(id), sockets[i], `getSocket of a ${id.length}-char id`)
    assert.equal(hasSocket(id.slice(0, -1)), ids.includes(id.slice(0, -1)))
  })
  assert.deepEqual(Object.keys(getAllSessions()), ids)
  assert.deepEqual([...getAllSockets().keys()], ids)
})

test('getAllSockets returns a new Map copy that works with forEach', () => {
  const a = connect('a', 'silent')
  const b = connect('b', 'silent')
  registerSocket('a', a)
  registerSocket('b', b)
  const all = getAllSockets()
  assert.ok(all instanceof Map)
  const seen = []
  all.forEach((sock, id) => seen.push([id, sock]))
  assert.deepEqual(seen, [['a', a], ['b', b]])
  all.delete('a')
  all.set('c', {})
  assert.equal(getSocketCount(), 2, 'changing the copy does not change the registry')
  assert.equal(getSocket('a'), a)
  assert.notEqual(getAllSockets(), getAllSockets(), 'a new Map each time')
})

test('replacing a socket ends the old one and starts a fresh state', async () => {
  const first = connect('r', 'open')
  registerSocket('r', first)
  await untilStatus('r', 'open')
  updateSessionState('r', { plan: 'gold' })
  const before = getSessionState('r')
  await sleep(2)

  const second = connect('r', 'open')
  assert.equal(registerSocket('r', second), second)
  assert.equal(getSocket('r'), second)
  assert.equal(getSocketCount(), 1)
  await until(() => wsClosed(first), "the old socket's websocket to close")
  const fresh = getSessionState('r')
  assert.ok(fresh.createdAt > before.createdAt, 'a new createdAt')
  assert.equal(fresh.plan, undefined, 'the old state is gone')
  assert.equal(fresh.isConnected, false)
  assert.equal(fresh.error, null)
  await untilStatus('r', 'open')
  assert.equal(wsClosed(second), false, 'the new socket stays open')
})

test('unregisterSocket removes the socket and its state and ends it; unknown ids do nothing', async () => {
  const sock = connect('u', 'open')
  registerSocket('u', sock)
  await untilStatus('u', 'open')
  assert.equal(unregisterSocket('u'), true)
  assert.equal(getSocket('u'), null)
  assert.equal(getSessionState('u'), null)
  assert.equal(getSocketCount(), 0)
  await until(() => wsClosed(sock), 'the socket to be ended')
  assert.equal(unregisterSocket('u'), false)
  assert.equal(unregisterSocket('never-registered'), false)
})

test('updateSessionState merges every key, keeps unknown keys and moves lastActivity', async () => {
  registerSocket('s', connect('s', 'silent'), { track: false })
  const initial = getSessionState('s')
  assert.equal(typeof initial.createdAt, 'number')
  assert.ok(Math.abs(initial.createdAt - Date.now()) < 1000, 'createdAt is epoch ms')
  assert.equal(initial.lastActivity, initial.createdAt)
  assert.equal(initial.isConnected, false)
  assert.equal(initial.error, null)
  await sleep(5)
  updateSessionState('s', { isConnected: true, phone: '+15550001', meta: { tags: ['a', 'b'], n: 2 } })
  const s = getSessionState('s')
  assert.equal(s.isConnected, true)
  assert.equal(s.phone, '+15550001')
  assert.deepEqual(s.meta, { tags: ['a', 'b'], n: 2 })
  assert.ok(s.lastActivity > initial.lastActivity, 'lastActivity moved')
  assert.equal(s.createdAt, initial.createdAt)
  updateSessionState('s', { error: new Error('boom') })
  assert.equal(getSessionState('s').error, 'boom', 'an Error is kept as its message')
  updateSessionState('s', { error: null, phone: undefined })
  assert.equal(getSessionState('s').error, null)
  assert.equal('phone' in getSessionState('s'), false, 'undefined removes a custom key')
  assert.equal(getSessionState('s').meta.n, 2, 'other keys are kept')
  updateSessionState('nobody', { isConnected: true })
  assert.equal(getSessionState('nobody'), null, 'an unknown id does nothing')
})

test('getSessionState returns a new plain object; changing it does not change the registry', () => {
  registerSocket('p', connect('p', 'silent'), { track: false })
  updateSessionState('p', { list: [1, 2] })
  const s = getSessionState('p')
  assert.equal(Object.getPrototypeOf(s), Object.prototype)
  s.isConnected = true
  s.list.push(3)
  assert.equal(getSessionState('p').isConnected, false)
  assert.deepEqual(getSessionState('p').list, [1, 2])
  assert.equal(getSessionState('missing'), null)
})

test('getAllSessions returns { [sessionId]: state } for every session', () => {
  registerSocket('x', connect('x', 'silent'), { track: false })
  registerSocket('y', connect('y', 'silent'), { track: false })
  updateSessionState('y', { isConnected: true })
  const all = getAllSessions()
  assert.deepEqual(Object.keys(all), ['x', 'y'])
  assert.equal(all.y.isConnected, true)
  assert.deepEqual(all.x, getSessionState('x'))
})

test('getStats reports ISO-8601 times and the errorSessions', () => {
  registerSocket('ok', connect('ok', 'silent'), { track: false })
  registerSocket('bad', connect('bad', 'silent'), { track: false })
  updateSessionState('ok', { isConnected: true })
  updateSessionState('bad', { error: 'auth failed' })
  const stats = getStats()
  assert.equal(stats.totalSessions, 2)
  for (const row of stats.activeSessions) {
    const state = getSessionState(row.sessionId)
    assert.equal(row.createdAt, new Date(state.createdAt).toISOString())
    assert.equal(row.lastActivity, new Date(state.lastActivity).toISOString())
    assert.equal(row.isConnected, state.isConnected)
    assert.equal(row.error, state.error)
  }
  assert.deepEqual(stats.errorSessions, [{ sessionId: 'bad', error: 'auth failed' }])
  assert.deepEqual(stats.connectedSessions, ['ok'])
  assert.deepEqual(stats.disconnectedSessions, ['bad'])
})

test('createSocketWrapper creates, registers and follows real connection.update events', async () => {
  const created = createSocketWrapper(baileys.default)
  const sock = created(wrapperConfig('w1', 'accept-close'))
  assert.equal(sock._sessionId, 'w1')
  assert.equal(getSocket('w1'), sock)
  const start = getSessionState('w1')
  assert.equal(start.isConnected, false)
  assert.equal(start.status, 'connecting')
  // The server accepts then closes: Baileys reports close with "Connection Terminated" (428).
  const closed = await untilStatus('w1', 'closed')
  assert.equal(closed.isConnected, false)
  assert.equal(closed.error, 'Connection Terminated')
  assert.equal(closed.lastDisconnect.code, 428)

  const opened = created(wrapperConfig('w2', 'open'))
  const open = await untilStatus('w2', 'open')
  assert.equal(open.isConnected, true)
  assert.equal(open.error, null)
  assert.equal(getSocket('w2'), opened)
})

test('createSocketWrapper accepts config.auth.sessionId and refuses a missing id', () => {
  let calls = 0
  // Stands in for makeWASocket: makes a real socket, ignoring the wrapper's config.
  const factory = () => {
    calls++
    return makeTestSocket({ baileys, url: server.url('silent') })
  }
  const created = createSocketWrapper(factory)
  assertCode(() => created({}), 'ERR_MISSING_SESSION_ID')
  assertCode(() => created({ sessionId: '' }), 'ERR_MISSING_SESSION_ID')
  assertCode(() => created(undefined), 'ERR_MISSING_SESSION_ID')
  assert.equal(calls, 0, 'makeWASocket is not called without an id')
  const sock = created({ auth: { sessionId: 'nested' } })
  assert.equal(calls, 1)
  assert.equal(getSocket('nested'), sock)
  assert.equal(sock._sessionId, 'nested')
  assertCode(() => createSocketWrapper('not a function'), 'ERR_INVALID_FACTORY')
  // An exception from makeWASocket reaches the caller unchanged.
  const boom = new Error('factory failed')
  assert.throws(() => createSocketWrapper(() => { throw boom })({ sessionId: 'z' }), (e) => e === boom)
  assert.equal(getSocket('z'), null)
})

test('clearAll unregisters and ends every socket', async () => {
  const socks = ['c1', 'c2', 'c3'].map((id) => registerSocket(id, connect(id, 'open')))
  await untilStatus('c3', 'open')
  clearAll()
  assert.equal(getSocketCount(), 0)
  assert.deepEqual(getAllSessions(), {})
  assert.equal(getStats().totalSessions, 0)
  await until(() => socks.every(wsClosed), 'every socket to be ended')
})

test('bad input throws an Error with a stable code and changes nothing', () => {
  const sock = connect('keep', 'silent')
  registerSocket('keep', sock, { track: false })
  updateSessionState('keep', { plan: 'basic' })
  const before = getSessionState('keep')

  assertCode(() => registerSocket('', sock), 'ERR_INVALID_SESSION_ID')
  assertCode(() => registerSocket(42, sock), 'ERR_INVALID_SESSION_ID')
  assertCode(() => registerSocket(undefined, sock), 'ERR_INVALID_SESSION_ID')
  assertCode(() => registerSocket('n', null), 'ERR_INVALID_SOCKET')
  assertCode(() => registerSocket('n', 'socket'), 'ERR_INVALID_SOCKET')
  assertCode(() => registerSocket('n', sock, 5), 'ERR_INVALID_OPTIONS')
  assertCode(() => registerSocket('n', sock, { track: 'yes' }), 'ERR_INVALID_OPTIONS')
  assertCode(() => updateSessionState('keep', 5), 'ERR_INVALID_STATE_UPDATE')
  assertCode(() => updateSessionState('keep', [1]), 'ERR_INVALID_STATE_UPDATE')
  assertCode(() => updateSessionState('keep', { isConnected: 'yes' }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { status: 'bogus' }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { createdAt: 'yesterday' }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { createdAt: 1e20 }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { error: 5 }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { plan: 'x', fn: () => 1 }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { big: 1n }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { sym: Symbol('s') }), 'ERR_INVALID_STATE_VALUE')
  const circular = { a: 1 }
  circular.self = circular
  assertCode(() => updateSessionState('keep', { circular }), 'ERR_INVALID_STATE_VALUE')
  assertCode(() => updateSessionState('keep', { threadId: 9 }), 'ERR_READ_ONLY_STATE_KEY')
  assertCode(() => updateSessionState('keep', { connects: 9 }), 'ERR_READ_ONLY_STATE_KEY')
  assertCode(() => registry.onStateChange('not a function'), 'ERR_INVALID_LISTENER')
  assertCode(() => registry.configure({ idleAfterMs: -5 }), 'ERR_INVALID_OPTIONS')

  assert.equal(getSocketCount(), 1)
  assert.equal(getSocket('keep'), sock)
  assert.equal(getSocket('n'), null)
  const after = getSessionState('keep')
  assert.equal(after.plan, 'basic', 'a refused update applies nothing, not even its valid keys')
  assert.equal(after.lastActivity, before.lastActivity)
})

test('__proto__, constructor and prototype keys never change a prototype', () => {
  registerSocket('proto', connect('proto', 'silent'), { track: false })
  const attacks = [
    JSON.parse('{"__proto__": {"polluted": true}}'),
    { constructor: { prototype: { polluted: true } } },
    { prototype: { polluted: true } },
    { nested: JSON.parse('{"deeper": {"__proto__": {"polluted": true}}}') }
  ]
  for (const updates of attacks) {
    assertCode(() => updateSessionState('proto', updates), 'ERR_FORBIDDEN_STATE_KEY')
  }
  assert.equal({}.polluted, undefined)
  assert.equal(Object.prototype.polluted, undefined)
  const state = getSessionState('proto')
  assert.equal(Object.getPrototypeOf(state), Object.prototype)
  assert.equal(state.polluted, undefined)
  // A session id spelled like a prototype key is just a key.
  registerSocket('__proto__', connect('pp', 'silent'), { track: false })
  const all = getAllSessions()
  assert.equal(Object.getPrototypeOf(all), Object.prototype)
  assert.ok(Object.hasOwn(all, '__proto__'))
  assert.equal(hasSocket('__proto__'), true)
})

test('hostile values cannot crash the process or corrupt the registry', () => {
  // A Proxy whose every property read throws: no real socket behaves like this, which is
  // exactly why it is a plain stand-in here.
  const hostile = new Proxy({}, { get () { throw new Error('trap') } })
  const weird = [undefined, null, NaN, -0, 1n, Symbol('s'), '', 'x'.repeat(10_000), [], {}, () => {}, hostile]
  const fns = Object.entries(registry).filter(([name, f]) => typeof f === 'function' &&
    !['clearAll', 'waitForState', 'saveSnapshot', 'loadSnapshot', 'connectCluster'].includes(name))
  for (const [name, fn] of fns) {
    for (const a of weird) {
      for (const b of weird) {
        try {
          const r = fn(a, b)
          if (typeof r === 'function' && name === 'onStateChange') r()
        } catch (err) {
          assert.ok(err instanceof Error, `${name} threw a non-Error`)
          assert.ok(typeof err.code === 'string' || err.message === 'trap', `${name} threw without a code: ${err.message}`)
        }
      }
    }
  }
  // Whatever got registered above is consistent and can be cleared.
  assert.equal(getSocketCount(), getAllSockets().size)
  assert.equal(getStats().totalSessions, Object.keys(getAllSessions()).length)
  clearAll()
  assert.equal(getSocketCount(), 0)
  assert.equal(getStats().totalSessions, 0)
})
