// Lifecycle events (issue 4): onStateChange, waitForState and the health timer, driven by
// real Baileys 7 sockets against the loopback WhatsApp server, in the main thread and in
// worker threads.

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket, waitForConnection } from './support/baileys.mjs'
import { TestWorker, terminateAll, until, sleep, SOCKET_OPTIONS } from './fixtures/threads-client.mjs'

const registry = createRequire(import.meta.url)('../index.js')
const {
  registerSocket, unregisterSocket, updateSessionState, getSessionState, getStats, clearAll,
  onStateChange, waitForState, configure
} = registry

const DEFAULT_IDLE_AFTER_MS = 600_000
const DEFAULT_STUCK_AFTER_MS = 60_000

let baileys
let server
const unsubscribes = []

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
})

afterEach(async () => {
  for (const u of unsubscribes.splice(0)) u()
  await terminateAll()
  clearAll()
})

after(async () => {
  configure({ idleAfterMs: DEFAULT_IDLE_AFTER_MS, stuckAfterMs: DEFAULT_STUCK_AFTER_MS })
  clearAll()
  await server.close()
})

function connect (id, mode = 'open') {
  // Baileys' handshake timer (connectTimeoutMs, 20 s by default) outlives end() on a socket
  // the server never answered: keep it short so it cannot hold the process open.
  const extra = mode === 'silent' ? { connectTimeoutMs: 2000 } : {}
  return makeTestSocket({ baileys, url: server.url(mode, { id }), ...SOCKET_OPTIONS, ...extra })
}

/** Subscribes a recording listener (unsubscribed after the test). */
function listen (filter = () => true) {
  const changes = []
  const unsubscribe = onStateChange((c) => { if (filter(c)) changes.push(c) })
  unsubscribes.push(unsubscribe)
  return { changes, unsubscribe }
}

const forId = (changes, id) => changes.filter((c) => c.sessionId === id)

/** Resolves with 'settled' if `promise` settles before the event loop turns once. */
function settlesAtOnce (promise) {
  return Promise.race([
    promise.then(() => 'settled', () => 'settled'),
    new Promise((resolve) => setImmediate(resolve, 'later'))
  ])
}

function assertSyncCode (fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof TypeError, `a TypeError, got ${err?.constructor?.name}: ${err?.message}`)
    assert.equal(err.code, code)
    return true
  })
}

// ---------------------------------------------------------------------------------------
// onStateChange

test('onStateChange: registered, status (a real socket opens, then closes), removed', async () => {
  const { changes } = listen((c) => c.sessionId === 'ev_life')
  const sock = connect('ev_life')
  registerSocket('ev_life', sock)
  assert.equal(changes.length, 0, 'listeners run after the call that made the change, never inside it')
  await waitForConnection(sock, 'open')
  await until(() => changes.length >= 2, 'registered + status(open)')
  assert.equal(server.drop('ev_life'), 1, 'the server dropped the connection')
  await until(() => changes.length >= 3, 'status(closed)')
  assert.equal(unregisterSocket('ev_life'), true)
  await until(() => changes.length >= 4, 'removed')
  await sleep(50)

  assert.deepEqual(changes.map((c) => `${c.type}:${c.current?.status ?? null}`),
    ['registered:connecting', 'status:open', 'status:closed', 'removed:null'])
  for (const c of changes) {
    assert.deepEqual(Object.keys(c).sort(), ['current', 'previous', 'sessionId', 'threadId', 'type'])
    assert.equal(c.sessionId, 'ev_life')
    assert.equal(c.threadId, 0)
  }
  const [registered, opened, closed, removed] = changes
  assert.equal(registered.previous, null)
  assert.equal(registered.current.isConnected, false)
  assert.equal(opened.previous.status, 'connecting')
  assert.equal(opened.previous.isConnected, false)
  assert.equal(opened.current.isConnected, true)
  assert.equal(opened.current.connects, 1)
  assert.match(opened.current.me.id, /@s\.whatsapp\.net$/)
  assert.equal(closed.previous.status, 'open')
  assert.equal(closed.current.isConnected, false)
  assert.equal(closed.current.lastDisconnect.code, 428, 'a dropped connection closes with 428')
  assert.equal(closed.current.lastDisconnect.reason, 'connectionClosed')
  assert.equal(removed.previous.status, 'closed')
  assert.equal(removed.previous.disconnects, 1)
  assert.equal(removed.current, null)
})

test('onStateChange: replacing a socket emits registered with the previous state', async () => {
  const { changes } = listen((c) => c.sessionId === 'ev_replace')
  registerSocket('ev_replace', connect('ev_replace'))
  await waitForState('ev_replace', 'open', { timeoutMs: 5000 })
  registerSocket('ev_replace', connect('ev_replace', 'silent'))
  const again = await until(() => changes.filter((c) => c.type === 'registered')[1], 'the second registered event')
  assert.equal(again.previous.status, 'open')
  assert.equal(again.current.status, 'connecting')
  assert.equal(changes.filter((c) => c.type === 'removed').length, 0, 'a replacement is not a removal')
})

test('onStateChange: changes made in a worker reach a listener in the main thread', async () => {
  const calls = []
  unsubscribes.push(onStateChange((c) => {
    if (c.sessionId === 'ev_worker') calls.push({ change: c })
  }))
  const worker = new TestWorker()
  await worker.call('connect', { id: 'ev_worker', url: server.url('open', { id: 'ev_worker' }), waitFor: 'open' })
  await until(() => calls.length >= 2, 'registered + status from the worker')
  assert.deepEqual(calls.map((c) => `${c.change.type}:${c.change.current.status}`), ['registered:connecting', 'status:open'])
  for (const { change } of calls) {
    assert.equal(change.threadId, worker.threadId)
    assert.equal(change.current.threadId, worker.threadId)
  }
  await worker.terminate()
  const removed = await until(() => calls.find((c) => c.change.type === 'removed'), 'removed when the worker ends')
  assert.equal(removed.change.threadId, worker.threadId)
})

test('onStateChange: a listener in a worker hears changes made in the main thread', async () => {
  const worker = new TestWorker()
  await worker.call('subscribe')
  registerSocket('ev_to_worker', connect('ev_to_worker'))
  await waitForState('ev_to_worker', 'open', { timeoutMs: 5000 })
  const reports = await until(() => {
    const r = worker.reported('state', (m) => m.change.sessionId === 'ev_to_worker')
    return r.length >= 2 ? r : null
  }, 'two events in the worker')
  assert.deepEqual(reports.map((r) => `${r.change.type}:${r.change.current.status}`), ['registered:connecting', 'status:open'])
  for (const r of reports) assert.equal(r.change.threadId, 0, 'the session belongs to the main thread')
})

test('onStateChange: a listener that throws does not stop the others nor crash the process', async () => {
  const warnings = []
  const onWarning = (w) => { if (w.name === 'BaileysSocketRegistryWarning') warnings.push(w) }
  process.on('warning', onWarning)
  try {
    let thrown = 0
    unsubscribes.push(onStateChange((c) => {
      if (c.sessionId !== 'ev_throw') return
      thrown++
      throw new Error(`listener exploded on ${c.type}`)
    }))
    const { changes } = listen((c) => c.sessionId === 'ev_throw')
    unsubscribes.push(onStateChange((c) => {
      if (c.sessionId !== 'ev_throw') return
      thrown++
      // eslint-disable-next-line no-throw-literal
      throw 'not even an Error'
    }))
    registerSocket('ev_throw', connect('ev_throw'))
    await waitForState('ev_throw', 'open', { timeoutMs: 5000 })
    await until(() => changes.length >= 2 && warnings.length >= 4, () => `2 events and 4 warnings (got ${changes.length}, ${warnings.length})`)
    assert.deepEqual(changes.map((c) => c.type), ['registered', 'status'], 'the listener between the two throwing ones got every event')
    assert.equal(thrown, 4)
    await sleep(20)
    assert.equal(warnings.length, 4, 'one warning per throw')
    const messages = warnings.map((w) => w.message)
    assert.ok(messages.some((m) => m.includes('listener exploded on registered')), messages.join(' | '))
    assert.ok(messages.some((m) => m.includes('listener exploded on status')), messages.join(' | '))
    assert.equal(messages.filter((m) => m.includes('not even an Error')).length, 2)
    // Still alive and working.
    assert.equal(getStats().totalSessions, 1)
    assert.equal(unregisterSocket('ev_throw'), true)
    await until(() => changes.length === 3, 'removed after the throws')
  } finally {
    process.off('warning', onWarning)
  }
})

test('onStateChange: unsubscribe() stops delivery, returns true, then false', async () => {
  const a = listen((c) => c.sessionId.startsWith('ev_unsub'))
  const b = listen((c) => c.sessionId.startsWith('ev_unsub'))
  const selfResults = []
  const self = onStateChange((c) => {
    if (c.sessionId.startsWith('ev_unsub')) selfResults.push(self())
  })
  unsubscribes.push(self)
  registerSocket('ev_unsub_1', connect('ev_unsub_1'))
  await until(() => a.changes.length === 1 && b.changes.length === 1, 'the first event for both listeners')
  assert.equal(a.unsubscribe(), true)
  assert.equal(a.unsubscribe(), false)
  assert.deepEqual(selfResults, [true], 'unsubscribing from inside the listener works')
  assert.equal(self(), false, 'already unsubscribed from inside')
  registerSocket('ev_unsub_2', connect('ev_unsub_2'))
  await waitForState('ev_unsub_1', 'open', { timeoutMs: 5000 })
  await waitForState('ev_unsub_2', 'open', { timeoutMs: 5000 })
  await until(() => b.changes.length >= 4, 'the other listener keeps getting events')
  await sleep(30)
  assert.equal(a.changes.length, 1, 'nothing after unsubscribe')
  assert.deepEqual(selfResults, [true], 'called once')
  assert.equal(b.unsubscribe(), true)
})

test('onStateChange: bad listeners throw synchronously', () => {
  for (const bad of [undefined, null, 'listener', 42, {}]) assertSyncCode(() => onStateChange(bad), 'ERR_INVALID_LISTENER')
})

test('a process holding subscriptions (main thread and a worker) exits by itself', async () => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/events-exit-child.mjs', import.meta.url)), server.url('open', { id: 'exit_child' })],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const [code, signal] = await new Promise((resolve) => child.once('close', (c, s) => resolve([c, s])))
  assert.equal(signal, null, `the child was not killed by the timeout (stderr: ${stderr})`)
  assert.equal(code, 0, `exit code (stderr: ${stderr})`)
  assert.equal(stderr, '', 'nothing on stderr')
  const report = JSON.parse(stdout.trim())
  assert.deepEqual(report.seen.slice(0, 2), ['registered:connecting', 'status:open'], 'the subscription was live')
  assert.equal(report.workerCode, 0, 'the worker with a subscription ended by itself')
  assert.equal(report.waitSettled, false, 'a waitForState without timeout was still pending, and the process exited anyway')
})

// ---------------------------------------------------------------------------------------
// waitForState

test('waitForState resolves at once when the session already has the status', async () => {
  registerSocket('wait_now', connect('wait_now', 'silent'))
  const connecting = waitForState('wait_now', 'connecting')
  assert.equal(await settlesAtOnce(connecting), 'settled')
  assert.equal((await connecting).status, 'connecting')

  registerSocket('wait_now_open', connect('wait_now_open'))
  await waitForState('wait_now_open', 'open', { timeoutMs: 5000 })
  const open = waitForState('wait_now_open', 'open', { timeoutMs: 1000 })
  assert.equal(await settlesAtOnce(open), 'settled')
  const state = await open
  assert.equal(state.status, 'open')
  assert.equal(state.isConnected, true)
  assert.deepEqual(state, getSessionState('wait_now_open'))
})

test('waitForState resolves when a real socket reaches open', async () => {
  const sock = connect('wait_open')
  registerSocket('wait_open', sock)
  assert.equal(getSessionState('wait_open').status, 'connecting')
  const waiting = waitForState('wait_open', 'open', { timeoutMs: 5000 })
  assert.equal(await settlesAtOnce(waiting), 'later', 'still connecting: it waits')
  const state = await waiting
  assert.equal(state.status, 'open')
  assert.equal(state.isConnected, true)
  assert.equal(state.connects, 1)
  assert.ok(sock.ws.isOpen, 'the socket really is open')
  // Several waiters on the same change all resolve.
  registerSocket('wait_open_2', connect('wait_open_2'))
  const all = await Promise.all([1, 2, 3].map(() => waitForState('wait_open_2', 'open', { timeoutMs: 5000 })))
  assert.deepEqual(all.map((s) => s.status), ['open', 'open', 'open'])
})

test('waitForState rejects with ERR_WAIT_TIMEOUT when the status does not come in time', async () => {
  registerSocket('wait_silent', connect('wait_silent', 'silent'))
  const started = Date.now()
  await assert.rejects(waitForState('wait_silent', 'open', { timeoutMs: 200 }), (err) => {
    assert.equal(err.code, 'ERR_WAIT_TIMEOUT')
    assert.match(err.message, /wait_silent/)
    assert.match(err.message, /'open'/)
    assert.match(err.message, /200 ms/)
    return true
  })
  const elapsed = Date.now() - started
  assert.ok(elapsed >= 190 && elapsed < 1500, `timed out after ${elapsed} ms`)
  assert.equal(getSessionState('wait_silent').status, 'connecting')
  await assert.rejects(waitForState('wait_silent', 'qr', { timeoutMs: 0 }), { code: 'ERR_WAIT_TIMEOUT' })
})

test('waitForState rejects with ERR_SESSION_REMOVED when the session is unregistered meanwhile', async () => {
  registerSocket('wait_removed', connect('wait_removed', 'silent'))
  const waiting = waitForState('wait_removed', 'open')
  const result = assert.rejects(waiting, (err) => {
    assert.equal(err.code, 'ERR_SESSION_REMOVED')
    assert.match(err.message, /wait_removed/)
    return true
  })
  await sleep(20)
  assert.equal(unregisterSocket('wait_removed'), true)
  await result
})

test('waitForState rejects with ERR_STATE_UNREACHABLE when the session is logged out (401) while waiting for open', async () => {
  registerSocket('wait_401', connect('wait_401', 'fail401'))
  await assert.rejects(waitForState('wait_401', 'open', { timeoutMs: 5000 }), (err) => {
    assert.equal(err.code, 'ERR_STATE_UNREACHABLE')
    assert.match(err.message, /loggedOut/)
    assert.match(err.message, /'open'/)
    return true
  })
  const s = getSessionState('wait_401')
  assert.equal(s.status, 'loggedOut')
  assert.equal(s.lastDisconnect.code, 401)
  // Once logged out: at once for 'open', and 'loggedOut' itself resolves.
  const again = waitForState('wait_401', 'open')
  assert.equal(await settlesAtOnce(again), 'settled')
  await assert.rejects(again, { code: 'ERR_STATE_UNREACHABLE' })
  assert.equal((await waitForState('wait_401', 'loggedOut')).status, 'loggedOut')
})

test('waitForState rejects with ERR_SESSION_NOT_FOUND for an unknown id', async () => {
  let promise
  assert.doesNotThrow(() => { promise = waitForState('wait_nobody', 'open', { timeoutMs: 100 }) })
  assert.ok(promise instanceof Promise)
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, 'ERR_SESSION_NOT_FOUND')
    assert.match(err.message, /wait_nobody/)
    return true
  })
})

test('waitForState: bad arguments throw synchronously with their codes', () => {
  registerSocket('wait_args', connect('wait_args', 'silent'))
  assertSyncCode(() => waitForState('', 'open'), 'ERR_INVALID_SESSION_ID')
  assertSyncCode(() => waitForState(42, 'open'), 'ERR_INVALID_SESSION_ID')
  assertSyncCode(() => waitForState(undefined, 'open'), 'ERR_INVALID_SESSION_ID')
  for (const status of ['ready', 'OPEN', '', 1, null, undefined]) {
    assertSyncCode(() => waitForState('wait_args', status), 'ERR_INVALID_OPTIONS')
  }
  assertSyncCode(() => waitForState('wait_args', 'open', 'soon'), 'ERR_INVALID_OPTIONS')
  for (const timeoutMs of [-1, Number.NaN, Infinity, '100', true]) {
    assertSyncCode(() => waitForState('wait_args', 'open', { timeoutMs }), 'ERR_INVALID_OPTIONS')
  }
})

// ---------------------------------------------------------------------------------------
// Health

test('health: a socket that stays connecting longer than stuckAfterMs emits one stuck event', async () => {
  const { changes } = listen((c) => c.type === 'stuck')
  try {
    // Opened under the default threshold, so a slow machine cannot make it stuck.
    registerSocket('stuck_open', connect('stuck_open'))
    await waitForState('stuck_open', 'open', { timeoutMs: 5000 })
    assert.deepEqual(configure({ stuckAfterMs: 200 }), { idleAfterMs: DEFAULT_IDLE_AFTER_MS, stuckAfterMs: 200 })
    const registeredAt = Date.now()
    registerSocket('stuck_silent', connect('stuck_silent', 'silent'))
    const stuck = await until(() => changes.find((c) => c.sessionId === 'stuck_silent'), 'a stuck event', 3000)
    assert.ok(Date.now() - registeredAt >= 200, 'not before stuckAfterMs')
    assert.equal(stuck.type, 'stuck')
    assert.equal(stuck.threadId, 0)
    assert.equal(stuck.current.status, 'connecting')
    assert.equal(stuck.previous.status, 'connecting')
    await sleep(400)
    assert.equal(forId(changes, 'stuck_silent').length, 1, 'reported once')
    assert.equal(forId(changes, 'stuck_open').length, 0, 'an open session is not stuck')
    assert.equal(getSessionState('stuck_silent').status, 'connecting')
  } finally {
    assert.equal(configure({ stuckAfterMs: DEFAULT_STUCK_AFTER_MS }).stuckAfterMs, DEFAULT_STUCK_AFTER_MS)
  }
})

test('health: configure({ idleAfterMs }) moves quiet sessions into getStats().inactiveSessions', async () => {
  try {
    registerSocket('idle_a', connect('idle_a'))
    await waitForState('idle_a', 'open', { timeoutMs: 5000 })
    assert.deepEqual(getStats().inactiveSessions, [], 'nothing is idle under the 10-minute default')
    assert.deepEqual(configure({ idleAfterMs: 300 }), { idleAfterMs: 300, stuckAfterMs: DEFAULT_STUCK_AFTER_MS })
    assert.equal(getStats().idleAfterMs, 300)
    await until(() => getStats().inactiveSessions.includes('idle_a'), 'idle_a to be listed as inactive', 3000)
    assert.ok(Date.now() - getSessionState('idle_a').lastActivity > 300)
    registerSocket('idle_b', connect('idle_b', 'silent'))
    updateSessionState('idle_a', { poked: true })
    const stats = getStats()
    assert.equal(stats.inactiveSessions.includes('idle_a'), false, 'activity takes it out again')
    assert.equal(stats.inactiveSessions.includes('idle_b'), false, 'a new session is not idle')
    await until(() => getStats().inactiveSessions.length === 2, 'both to be inactive', 3000)
  } finally {
    assert.equal(configure({ idleAfterMs: DEFAULT_IDLE_AFTER_MS }).idleAfterMs, DEFAULT_IDLE_AFTER_MS)
  }
  assert.deepEqual(getStats().inactiveSessions, [])
})

test('configure: bad values throw synchronously and change nothing', () => {
  for (const bad of [0, -5, Number.NaN, Infinity, '100', 1e13]) {
    assertSyncCode(() => configure({ idleAfterMs: bad }), 'ERR_INVALID_OPTIONS')
    assertSyncCode(() => configure({ stuckAfterMs: bad }), 'ERR_INVALID_OPTIONS')
  }
  assertSyncCode(() => configure('fast'), 'ERR_INVALID_OPTIONS')
  // One good value next to a bad one is not applied either.
  assertSyncCode(() => configure({ idleAfterMs: 5, stuckAfterMs: -1 }), 'ERR_INVALID_OPTIONS')
  assert.deepEqual(configure(), { idleAfterMs: DEFAULT_IDLE_AFTER_MS, stuckAfterMs: DEFAULT_STUCK_AFTER_MS })
})
