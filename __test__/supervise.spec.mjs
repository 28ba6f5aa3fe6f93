// Supervised sessions (issue 10): superviseSession makes a session's sockets by policy, on
// every tested Baileys build, with real sockets against the loopback server.
//
// - Each row of the policy table, with exact counts of makeSocket calls (small, jitter-free
//   delays: `jitter: 'none'` waits the backoff's ceiling itself, so delays are exact too).
// - Pairing: QR, then 515, then open, with exactly one extra socket.
// - 401, 403, 411 and 440 stop: no further socket within 10 s.
// - stop() during a backoff wait, during a connect, and while makeSocket's promise is pending.
// - makeSocket throwing or rejecting is a failed attempt, never an unhandled rejection.
// - restart(), and how the rest of the API treats a supervised id.

import { describe, test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { spawn } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'

import { registry, sleep, until, untilStatus, wsClosed } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { BUILDS, loadBaileys, makeTestSocket, makeCreds } from './support/baileys.mjs'

const {
  superviseSession, registerSocket, createSocketWrapper, unregisterSocket, clearAll, getSocket, hasSocket,
  getSessionState, onStateChange
} = registry

// Baileys keeps the handshake and query timers of a socket ended mid-request: short ones.
const SOCKET_OPTIONS = Object.freeze({ connectTimeoutMs: 3000, defaultQueryTimeoutMs: 1500 })
/** A fast, exact backoff: waits of 20, 40, 80, 80, ... ms. */
const FAST = Object.freeze({ baseMs: 20, factor: 2, maxMs: 80, jitter: 'none' })
// How long a test keeps watching to prove that no further socket comes.
const QUIET_MS = 400
const TERMINAL_QUIET_MS = 10_000

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

/** A local port nothing listens on (connect: ECONNREFUSED, a 408 connectionLost). */
async function closedPort () {
  const s = createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address()
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** Every onStateChange event from now on; `of(id, type?)` filters them. */
function recordEvents () {
  const events = []
  const unsubscribe = onStateChange((e) => events.push(e))
  return {
    events,
    of: (id, type) => events.filter((e) => e.sessionId === id && (type === undefined || e.type === type)),
    stop: unsubscribe
  }
}

describe('superviseSession: arguments', () => {
  test('bad arguments throw with a stable code and supervise nothing', () => {
    const codeOf = (f) => { try { f() } catch (e) { return e.code } return 'no throw' }
    let calls = 0
    const make = () => { calls++; return {} }
    assert.equal(codeOf(() => superviseSession('', make)), 'ERR_INVALID_SESSION_ID')
    assert.equal(codeOf(() => superviseSession(5, make)), 'ERR_INVALID_SESSION_ID')
    assert.equal(codeOf(() => superviseSession('a', 'no')), 'ERR_INVALID_FACTORY')
    assert.equal(codeOf(() => superviseSession('a', make, 5)), 'ERR_INVALID_OPTIONS')
    for (const policy of [
      { maxAttempt: 3 }, { maxAttempts: 0 }, { maxAttempts: NaN }, { maxAttempts: -Infinity }, { backoff: { baseMs: 0 } },
      { backoff: { factor: 0.5 } }, { backoff: { baseMs: 100, maxMs: 10 } }, { backoff: { jitter: 'some' } },
      { stableAfterMs: -1 }, { reasons: { loggedout: 'stop' } }, { reasons: { loggedOut: 'retry' } }
    ]) {
      assert.equal(codeOf(() => superviseSession('a', make, policy)), 'ERR_INVALID_OPTIONS', JSON.stringify(policy))
    }
    assert.equal(calls, 0)
    assert.equal(getSessionState('a'), null)
    // The caller's own exception (a throwing getter) passes through as it is.
    const own = new Error('mine')
    assert.throws(() => superviseSession('a', make, { get maxAttempts () { throw own } }), (e) => e === own)
    assert.equal(calls, 0)
  })

  test('a policy JSON cannot carry is ERR_INVALID_OPTIONS, never an error without a code', () => {
    // Found by the fuzz test: JSON.stringify's own TypeError or RangeError used to escape.
    let calls = 0
    const make = () => { calls++; return {} }
    const circular = { backoff: {} }
    circular.backoff.self = circular
    let deep = { baseMs: 10 }
    for (let i = 0; i < 100000; i++) deep = { deep }
    const sparse = []
    sparse.length = 2 ** 32 - 1
    const holes = []
    holes.length = 2 ** 24
    for (const [what, policy] of [
      ['a bigint', { maxAttempts: 3n }],
      ['a bigint from toJSON', { backoff: { toJSON: () => ({ baseMs: 10n }) } }],
      ['a cycle', circular],
      ['a nesting that overflows the stack', { backoff: deep }],
      ['an array of 2^32 - 1 holes', { reasons: sparse }],
      ['an array of 2^24 holes', { backoff: holes }]
    ]) {
      let error
      try {
        superviseSession('a', make, policy)
      } catch (e) {
        error = e
      }
      assert.ok(error instanceof TypeError, `${what}: ${error}`)
      assert.equal(error.code, 'ERR_INVALID_OPTIONS', `${what}: ${error.message}`)
      assert.match(error.message, /^superviseSession\(sessionId, makeSocket, policy\): policy /, what)
    }
    assert.equal(calls, 0)
    assert.equal(getSessionState('a'), null)
    // Shared (not circular) objects and Infinity are still a policy.
    const rule = { baseMs: 10, maxMs: 10 }
    const h = superviseSession('a', () => { calls++; throw new Error('no socket') }, { maxAttempts: Infinity, reasons: { timedOut: rule, connectionLost: rule } })
    assert.equal(calls, 1)
    assert.equal(h.stop(), true)
  })

  test('stop() or restart() from the end() that restart() runs: no makeSocket after stop, never two live sockets', async () => {
    // Stand-in sockets whose end() calls back into the registry (found by the fuzz test): a
    // real Baileys socket's end() does not, but a bot may wrap it.
    let onEnd = null
    const made = []
    const live = () => made.filter((s) => !s.ended).length
    let liveAtMake = []
    const make = () => {
      liveAtMake.push(live())
      const listeners = []
      const s = {
        ev: { on (e, f) { listeners.push(f) }, off () {} },
        end () {
          s.ended = true
          const f = onEnd
          onEnd = null
          if (f) f()
        }
      }
      made.push(s)
      return s
    }
    const policy = { backoff: { baseMs: 10, jitter: 'none' } }

    // stop() from there: restart() makes nothing, and says it did not restart.
    const h = superviseSession('end-stops', make, policy)
    onEnd = () => assert.equal(h.stop(), true)
    assert.equal(h.restart(), false)
    assert.equal(made.length, 1, 'makeSocket was not called after stop()')
    assert.equal(made[0].ended, true)
    assert.equal(hasSocket('end-stops'), false)
    assert.equal(h.supervision.state, 'stopped')
    assert.equal(h.supervision.reason, 'stop')

    // restart() from there: one fresh socket, made once the old one ended.
    made.length = 0
    liveAtMake = []
    const r = superviseSession('end-restarts', make, policy)
    onEnd = () => assert.equal(r.restart(), true)
    assert.equal(r.restart(), true)
    assert.deepEqual(liveAtMake, [0, 0], 'each socket made while no other was live')
    assert.equal(made.length, 2)
    assert.equal(getSocket('end-restarts'), made[1])
    assert.equal(made[1].ended, undefined)
    assert.equal(r.supervision.state, 'running')
    await sleep(50)
    assert.equal(made.length, 2, 'no further socket later')
    assert.equal(r.stop(), true)
    assert.equal(made[1].ended, true)
  })

  test('a socket whose events cannot be followed is a failed attempt', async () => {
    // Stand-in objects without `ev`: a real Baileys socket always has one.
    const made = []
    const handle = superviseSession('no-ev', () => { const s = { end () { s.ended = true } }; made.push(s); return s },
      { backoff: { baseMs: 10, jitter: 'none' }, maxAttempts: 2 })
    await until(() => handle.supervision.state === 'gaveUp', () => `gaveUp (now ${JSON.stringify(handle.supervision)})`)
    assert.equal(made.length, 2)
    assert.equal(handle.supervision.reason, 'makeSocketFailed')
    assert.match(handle.supervision.error, /cannot follow this socket's events/)
    assert.equal(made[0].ended, true, 'the first one was let go when the second took its place')
    assert.equal(getSocket('no-ev'), made[1])
    assert.equal(handle.stop(), true)
    assert.equal(made[1].ended, true)
    assert.equal(hasSocket('no-ev'), false)
  })
})

for (const build of BUILDS) {
  describe(`Baileys ${build.key}`, () => {
    let baileys
    let server
    let refusedPort
    /** Live connections per id, counted on the server: the most ever seen at once, per id. */
    const live = new Map()
    const peak = new Map()
    const handles = []

    before(async () => {
      baileys = await loadBaileys(build.key)
      server = await startWaServer({ baileys })
      refusedPort = await closedPort()
      server.on('connect', (c) => {
        const n = (live.get(c.id) ?? 0) + 1
        live.set(c.id, n)
        peak.set(c.id, Math.max(peak.get(c.id) ?? 0, n))
      })
      server.on('disconnect', (c) => live.set(c.id, live.get(c.id) - 1))
    })

    afterEach(async () => {
      for (const h of handles.splice(0)) h.stop()
      clearAll()
      await until(() => server.connections === 0, () => `the server to lose every connection (${server.connections} left)`)
      for (const [id, n] of peak) assert.ok(n <= 1, `${id}: ${n} live connections at once on the server`)
    })

    after(async () => {
      await server?.close()
      assert.deepEqual(server.errors, [], 'the loopback server saw no errors')
    })

    const url = (mode, id, opts = {}) => server.url(mode, { id, ...opts })

    /**
     * Supervises `id`; `urlOf(attempt, call)` says where each socket connects. Returns the
     * handle and every makeSocket call's context (with the socket it made, its `ws` WebSocket,
     * and how many earlier sockets still had a websocket that was not closed).
     */
    function supervise (id, urlOf, policy, { registered = true, options } = {}) {
      const creds = makeCreds(baileys, { registered })
      const calls = []
      const handle = superviseSession(id, (context) => {
        const stillOpen = calls.filter((c) => c.raw.readyState !== c.raw.CLOSED).length
        const sock = makeTestSocket({ baileys, url: urlOf(context.attempt, calls.length + 1), creds, ...SOCKET_OPTIONS, ...options })
        calls.push({ ...context, at: Date.now(), sock, raw: sock.ws.socket, stillOpen })
        return sock
      }, policy)
      handles.push(handle)
      return { handle, calls }
    }

    test('restartRequired (515): a new socket at once, each one counted, until maxAttempts', async () => {
      const rec = recordEvents()
      try {
        const { handle, calls } = supervise('r515', () => url('restart515', 'r515'), { maxAttempts: 3 })
        await until(() => handle.supervision.state === 'gaveUp', () => `gaveUp (now ${JSON.stringify(handle.supervision)})`)
        await sleep(QUIET_MS)
        assert.equal(calls.length, 3)
        assert.deepEqual(calls.map((c) => c.attempt), [1, 2, 3])
        assert.equal(calls[1].lastDisconnect.error.output.statusCode, 515, 'makeSocket hears the last close')
        await until(() => rec.of('r515', 'gaveUp').length === 1, 'the gaveUp event')
        assert.deepEqual(rec.of('r515', 'reconnecting').map((e) => [e.attempt, e.delayMs, e.reason]),
          [[2, 0, 'restartRequired'], [3, 0, 'restartRequired']])
        const state = getSessionState('r515')
        assert.equal(state.status, 'restartRequired')
        assert.deepEqual(state.supervision, { state: 'gaveUp', attempt: 3, nextAttemptAt: null, reason: 'restartRequired', error: state.lastDisconnect.message })
        assert.ok(hasSocket('r515'), 'the last socket stays registered, closed')
      } finally {
        rec.stop()
      }
    })

    const BACKOFF_ROWS = [
      ['connectionClosed', 428, (id) => url('accept-close', id)],
      ['connectionLost', 408, () => `ws://127.0.0.1:${refusedPort}/ws/chat`],
      ['timedOut', 408, (id) => url('silent', id), { connectTimeoutMs: 150 }],
      ['unavailableService', 503, (id) => url('fail', id, { code: 503 })],
      ['badSession', 500, (id) => url('fail', id, { code: 500 })],
      ['unknown', null, (id) => url('junk', id)]
    ]

    for (const [reason, code, where, options] of BACKOFF_ROWS) {
      test(`${reason} (${code ?? 'no code'}): exponential backoff, then give up after maxAttempts`, async () => {
        const id = `b_${reason}`
        const rec = recordEvents()
        try {
          const { handle, calls } = supervise(id, () => where(id), { backoff: FAST, maxAttempts: 3 }, { options })
          await until(() => handle.supervision.state === 'gaveUp', () => `gaveUp (now ${JSON.stringify(handle.supervision)})`)
          await sleep(QUIET_MS)
          assert.equal(calls.length, 3, 'exactly maxAttempts sockets')
          assert.deepEqual(calls.map((c) => c.attempt), [1, 2, 3])
          await until(() => rec.of(id, 'gaveUp').length === 1, 'the gaveUp event')
          const reconnecting = rec.of(id, 'reconnecting')
          assert.deepEqual(reconnecting.map((e) => [e.attempt, e.delayMs, e.reason]), [[2, 20, reason], [3, 40, reason]])
          // Each socket came no sooner than its delay after the close before it.
          const closes = rec.of(id, 'status').filter((e) => e.current.status !== 'connecting' && e.current.status !== 'open')
          assert.equal(closes.length, 3)
          for (let i = 1; i < 3; i++) {
            const closedAt = closes[i - 1].current.lastDisconnect.at
            assert.ok(calls[i].at >= closedAt + reconnecting[i - 1].delayMs - 1, `socket ${i + 1} after its delay (${calls[i].at - closedAt} ms)`)
          }
          const [gaveUp] = rec.of(id, 'gaveUp')
          assert.equal(gaveUp.attempt, 3)
          assert.equal(gaveUp.reason, reason)
          assert.equal(gaveUp.delayMs, null)
          const state = getSessionState(id)
          assert.equal(state.lastDisconnect.code, code)
          assert.deepEqual(state.supervision, { state: 'gaveUp', attempt: 3, nextAttemptAt: null, reason, error: state.lastDisconnect.message })
        } finally {
          rec.stop()
        }
      })
    }

    test('a waiting session shows its next attempt in getSessionState', async () => {
      const { handle, calls } = supervise('wait', () => url('accept-close', 'wait'), { backoff: { baseMs: 800, jitter: 'none' } })
      const state = await until(() => { const s = getSessionState('wait'); return s?.supervision?.state === 'waiting' ? s : null }, 'waiting')
      assert.equal(state.supervision.attempt, 2)
      assert.equal(state.supervision.reason, 'connectionClosed')
      const wait = state.supervision.nextAttemptAt - state.lastDisconnect.at
      assert.ok(wait >= 795 && wait <= 805, `next attempt 800 ms after the close (${wait})`)
      assert.deepEqual(handle.supervision, state.supervision)
      assert.equal(calls.length, 1)
    })

    test('401, 403, 411 and 440 stop for good: no further socket within 10 s', async () => {
      const rec = recordEvents()
      try {
        const rows = [
          ['t401', 'loggedOut', 'loggedOut', () => url('fail401', 't401')],
          ['t403', 'forbidden', 'closed', () => url('fail', 't403', { code: 403 })],
          ['t411', 'multideviceMismatch', 'closed', () => url('fail', 't411', { code: 411 })],
          ['t440', 'connectionReplaced', 'replaced', () => url('open', 't440')]
        ]
        const connects = new Map()
        const onConnect = (c) => connects.set(c.id, (connects.get(c.id) ?? 0) + 1)
        server.on('connect', onConnect)
        try {
          const made = rows.map(([id, , , where]) => supervise(id, where, { backoff: FAST, maxAttempts: 5 }))
          await untilStatus('t440', 'open')
          assert.equal(server.replace('t440'), 1)
          for (const [id, reason, status] of rows) {
            await untilStatus(id, status)
            await until(() => rec.of(id, 'stopped').length === 1, `${id}: the stopped event`)
            const [stopped] = rec.of(id, 'stopped')
            assert.equal(stopped.reason, reason)
            assert.equal(stopped.attempt, 1)
          }
          await sleep(TERMINAL_QUIET_MS)
          rows.forEach(([id, reason, status], i) => {
            assert.equal(made[i].calls.length, 1, `${id}: one socket only`)
            assert.equal(connects.get(id), 1, `${id}: the server saw one connection`)
            assert.equal(rec.of(id, 'reconnecting').length, 0)
            const state = getSessionState(id)
            assert.equal(state.status, status)
            assert.equal(state.supervision.state, 'stopped')
            assert.equal(state.supervision.reason, reason)
            assert.equal(made[i].handle.supervision.state, 'stopped')
          })
        } finally {
          server.off('connect', onConnect)
        }
      } finally {
        rec.stop()
      }
    })

    test('440 with its own backoff reconnects once, after its delay', async () => {
      const policy = { backoff: FAST, reasons: { connectionReplaced: { baseMs: 150, jitter: 'none' } } }
      const rec = recordEvents()
      try {
        const { calls } = supervise('r440', () => url('open', 'r440'), policy)
        await untilStatus('r440', 'open')
        server.replace('r440')
        await untilStatus('r440', 'replaced')
        await until(() => calls.length === 2, 'a second socket')
        await untilStatus('r440', 'open')
        await sleep(QUIET_MS)
        assert.equal(calls.length, 2)
        assert.deepEqual(rec.of('r440', 'reconnecting').map((e) => [e.attempt, e.delayMs, e.reason]), [[2, 150, 'connectionReplaced']])
        assert.equal(getSessionState('r440').supervision.state, 'running')
      } finally {
        rec.stop()
      }
    })

    test('pairing: QR, then 515, then open, with exactly one extra socket', async () => {
      // The first socket pairs (unregistered creds, QR); after the scan WhatsApp sends 515 and
      // the next socket logs in with the same (now registered) creds.
      const unpaired = makeCreds(baileys, { registered: false })
      const paired = makeCreds(baileys, { registered: true })
      const calls = []
      const raws = []
      const handle = superviseSession('pair', (context) => {
        calls.push({ ...context, stillOpen: raws.filter((r) => r.readyState !== r.CLOSED).length })
        const first = context.attempt === 1
        const sock = makeTestSocket({ baileys, url: url(first ? 'qr' : 'open', 'pair'), creds: first ? unpaired : paired, ...SOCKET_OPTIONS })
        raws.push(sock.ws.socket)
        return sock
      })
      handles.push(handle)
      const qr = await untilStatus('pair', 'qr')
      assert.equal(qr.hasQr, true)
      assert.equal(server.sendNode('pair', { tag: 'stream:error', attrs: { code: '515' } }), 1)
      const open = await untilStatus('pair', 'open')
      await sleep(QUIET_MS)
      assert.equal(calls.length, 2, 'exactly one extra socket')
      assert.deepEqual(calls.map((c) => c.attempt), [1, 2])
      assert.equal(calls[1].lastDisconnect.error.output.statusCode, 515)
      assert.equal(open.supervision.state, 'running')
      assert.equal(open.supervision.reason, 'restartRequired')
      assert.equal(calls[1].stillOpen, 0, 'the first socket\'s websocket had closed when the second was made')
      assert.equal(peak.get('pair'), 1, 'never two live connections for the id (counted on the server)')
    })

    test('a socket open for stableAfterMs resets the count when it closes', async () => {
      const rec = recordEvents()
      try {
        const { calls } = supervise('stable', (attempt, call) => url(call === 1 ? 'open' : 'accept-close', 'stable'),
          { backoff: FAST, maxAttempts: 2, stableAfterMs: 100 })
        await untilStatus('stable', 'open')
        await sleep(200)
        server.drop('stable')
        await until(() => rec.of('stable', 'gaveUp').length === 1, 'gaveUp')
        await sleep(QUIET_MS)
        // The stable socket's close started a fresh run of 2 attempts.
        assert.equal(calls.length, 3)
        assert.deepEqual(calls.map((c) => c.attempt), [1, 1, 2])
        assert.deepEqual(rec.of('stable', 'reconnecting').map((e) => [e.attempt, e.delayMs]), [[1, 20], [2, 20]])
      } finally {
        rec.stop()
      }
    })

    test('stop() during a backoff wait: no further socket, the session removed, idempotent', async () => {
      const rec = recordEvents()
      try {
        const { handle, calls } = supervise('swait', () => url('accept-close', 'swait'), { backoff: { baseMs: 300, jitter: 'none' } })
        await until(() => handle.supervision.state === 'waiting', 'waiting')
        assert.equal(handle.stop(), true)
        assert.equal(handle.stop(), false)
        assert.equal(handle.restart(), false)
        assert.equal(hasSocket('swait'), false)
        assert.equal(getSessionState('swait'), null)
        assert.deepEqual(handle.supervision, { state: 'stopped', attempt: 2, nextAttemptAt: null, reason: 'stop', error: 'Connection Terminated' })
        await sleep(500)
        assert.equal(calls.length, 1)
        await until(() => rec.of('swait', 'stopped').length === 1, 'the stopped event')
        assert.equal(rec.of('swait', 'stopped')[0].reason, 'stop')
        // Supervised again after stop(): a new supervisor.
        const again = supervise('swait', () => url('open', 'swait'))
        await untilStatus('swait', 'open')
        assert.equal(again.calls.length, 1)
      } finally {
        rec.stop()
      }
    })

    test('stop() during a connect ends the socket silently', async () => {
      const { handle, calls } = supervise('sconn', () => url('silent', 'sconn'))
      await until(() => server.clients('sconn').length === 1, 'the server to see the connection')
      const sock = calls[0].sock
      assert.equal(getSocket('sconn'), sock)
      let heardClose = false
      sock.ev.on('connection.update', (u) => { if (u.connection === 'close') heardClose = true })
      assert.equal(handle.stop(), true)
      assert.equal(hasSocket('sconn'), false)
      await until(() => server.clients('sconn').length === 0, 'the server to lose the connection')
      await sleep(QUIET_MS)
      assert.equal(calls.length, 1)
      assert.equal(heardClose, false, 'let go silently')
      assert.ok(wsClosed(sock))
    })

    test('stop() while makeSocket is pending: its socket is ended, never registered', async () => {
      const made = []
      const creds = makeCreds(baileys)
      const handle = superviseSession('spend', () => new Promise((resolve) => setTimeout(() => {
        const sock = makeTestSocket({ baileys, url: url('open', 'spend'), creds, ...SOCKET_OPTIONS })
        made.push(sock)
        resolve(sock)
      }, 100)))
      handles.push(handle)
      assert.equal(handle.stop(), true)
      await until(() => made.length === 1, 'makeSocket to settle')
      await sleep(50)
      assert.equal(hasSocket('spend'), false)
      assert.equal(getSessionState('spend'), null)
      await until(() => wsClosed(made[0]), 'the late socket to be ended')
      await until(() => server.clients('spend').length === 0, 'no connection left')
    })

    test('makeSocket throwing, rejecting or giving no socket is a failed attempt', async () => {
      const unhandled = []
      const onUnhandled = (e) => unhandled.push(e)
      process.on('unhandledRejection', onUnhandled)
      const rec = recordEvents()
      try {
        const creds = makeCreds(baileys)
        const calls = []
        const handle = superviseSession('mk', (context) => {
          calls.push(context.attempt)
          if (context.attempt === 1) throw new Error('no creds yet')
          if (context.attempt === 2) return Promise.reject(new Error('store down'))
          if (context.attempt === 3) return 42
          return Promise.resolve(makeTestSocket({ baileys, url: url('open', 'mk'), creds, ...SOCKET_OPTIONS }))
        }, { backoff: FAST })
        handles.push(handle)
        await untilStatus('mk', 'open')
        assert.deepEqual(calls, [1, 2, 3, 4])
        await until(() => rec.of('mk', 'reconnecting').length === 3, 'three reconnecting events')
        assert.deepEqual(rec.of('mk', 'reconnecting').map((e) => [e.attempt, e.delayMs, e.reason, e.error]), [
          [2, 20, 'makeSocketFailed', 'no creds yet'],
          [3, 40, 'makeSocketFailed', 'store down'],
          [4, 80, 'makeSocketFailed', 'makeSocket returned a number, not a socket']
        ])
        // A supervisor whose makeSocket always fails gives up, with the error recorded.
        const failing = superviseSession('mk2', async () => { throw new TypeError('broken') }, { backoff: FAST, maxAttempts: 2 })
        handles.push(failing)
        await until(() => failing.supervision.state === 'gaveUp', 'gaveUp')
        assert.deepEqual(failing.supervision, { state: 'gaveUp', attempt: 2, nextAttemptAt: null, reason: 'makeSocketFailed', error: 'broken' })
        assert.equal(getSessionState('mk2'), null, 'no socket, no session')
        await sleep(50)
        assert.deepEqual(unhandled, [])
      } finally {
        process.off('unhandledRejection', onUnhandled)
        rec.stop()
      }
    })

    test('restart(): one fresh socket now, the old one let go first', async () => {
      const { handle, calls } = supervise('rs', () => url('open', 'rs'), { backoff: FAST })
      await untilStatus('rs', 'open')
      const first = calls[0].sock
      let heardClose = false
      first.ev.on('connection.update', (u) => { if (u.connection === 'close') heardClose = true })
      assert.equal(handle.restart(), true)
      // The old socket was let go at once; the new one comes once its websocket has closed.
      assert.ok(wsClosed(first), 'the old socket was ended at once')
      await until(() => calls.length === 2, 'the fresh socket')
      assert.equal(getSocket('rs'), calls[1].sock)
      await untilStatus('rs', 'open')
      // Twice in a row: the second restart() comes before the first one's socket exists.
      assert.equal(handle.restart(), true)
      assert.equal(handle.restart(), true)
      await until(() => calls.length === 3, 'one more fresh socket')
      await untilStatus('rs', 'open')
      await until(() => server.clients('rs').length === 1, 'one connection on the server')
      await sleep(QUIET_MS)
      assert.equal(calls.length, 3)
      for (let i = 0; i < 2; i++) assert.ok(wsClosed(calls[i].sock), `socket ${i + 1} ended`)
      assert.equal(heardClose, false)
      assert.deepEqual(calls.map((c) => c.attempt), [1, 1, 1])
      assert.deepEqual(calls.map((c) => c.stillOpen), [0, 0, 0], 'no socket was made while an earlier websocket was open')
      assert.equal(peak.get('rs'), 1, 'never two live connections for the id (counted on the server)')
      // From a terminal stop, restart() starts supervising again.
      server.replace('rs')
      await until(() => handle.supervision.state === 'stopped', 'stopped by 440')
      assert.equal(handle.restart(), true)
      await untilStatus('rs', 'open')
      assert.equal(calls.length, 4)
      assert.equal(handle.supervision.state, 'running')
    })

    test('a supervised id belongs to its supervisor: registerSocket refuses, unregisterSocket and clearAll stop it', async () => {
      const rec = recordEvents()
      try {
        const { handle, calls } = supervise('own', () => url('open', 'own'))
        await untilStatus('own', 'open')
        const other = makeTestSocket({ baileys, url: url('open', 'own-other'), ...SOCKET_OPTIONS })
        assert.throws(() => registerSocket('own', other), { code: 'ERR_SESSION_SUPERVISED' })
        const wrapper = createSocketWrapper(() => other)
        assert.throws(() => wrapper({ sessionId: 'own' }), { code: 'ERR_SESSION_SUPERVISED' })
        assert.throws(() => superviseSession('own', () => other), { code: 'ERR_SESSION_SUPERVISED' })
        registerSocket('own-other', other)
        assert.equal(getSocket('own'), calls[0].sock)
        assert.equal(unregisterSocket('own'), true)
        assert.equal(handle.supervision.state, 'stopped')
        assert.equal(handle.supervision.reason, 'unregistered')
        assert.equal(handle.stop(), false)
        await until(() => rec.of('own', 'stopped').length === 1, 'stopped')
        // clearAll stops every supervisor of the thread, waiting or not.
        const a = supervise('ca', () => url('open', 'ca'))
        const b = supervise('cb', () => url('accept-close', 'cb'), { backoff: { baseMs: 300, jitter: 'none' } })
        await untilStatus('ca', 'open')
        await until(() => b.handle.supervision.state === 'waiting', 'cb waiting')
        clearAll()
        assert.equal(a.handle.supervision.reason, 'clearAll')
        assert.equal(b.handle.supervision.reason, 'clearAll')
        await sleep(500)
        assert.equal(a.calls.length, 1)
        assert.equal(b.calls.length, 1)
        assert.equal(hasSocket('ca'), false)
      } finally {
        rec.stop()
      }
    })

    test('a takeover by a worker thread stops the supervisor', async () => {
      const rec = recordEvents()
      try {
        const { handle, calls } = supervise('tk', () => url('open', 'tk'))
        await untilStatus('tk', 'open')
        // The worker's socket is a stand-in object: what is tested is this thread's supervisor.
        const worker = new Worker(`
          const { parentPort } = require('node:worker_threads')
          const r = require(${JSON.stringify(fileURLToPath(new URL('..', import.meta.url)))})
          r.registerSocket('tk', { ev: { on () {}, off () {} }, end () {} }, { takeover: true })
          parentPort.postMessage('taken')
          parentPort.once('message', () => { r.clearAll(); process.exit(0) })
        `, { eval: true })
        try {
          await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject) })
          await until(() => handle.supervision.state === 'stopped', () => `stopped (now ${JSON.stringify(handle.supervision)})`)
          assert.equal(handle.supervision.reason, 'takeover')
          assert.equal(hasSocket('tk'), false)
          await until(() => server.clients('tk').length === 0, 'the socket let go')
          await sleep(QUIET_MS)
          assert.equal(calls.length, 1)
          await until(() => rec.of('tk', 'stopped').length === 1, 'the stopped event')
          // Supervising an id another thread owns: the first socket cannot be registered, it is
          // ended, and the supervisor stops.
          const again = supervise('tk', () => url('open', 'tk'))
          assert.equal(again.handle.supervision.state, 'stopped')
          assert.equal(again.handle.supervision.reason, 'ownedByOtherThread')
          assert.equal(again.calls.length, 1)
          assert.ok(wsClosed(again.calls[0].sock))
          assert.equal(getSessionState('tk').threadId, worker.threadId)
        } finally {
          worker.postMessage('done')
          await new Promise((resolve) => worker.once('exit', resolve))
        }
      } finally {
        rec.stop()
      }
    })
  })
}

test('after stop() and clearAll() no supervision timer keeps the process alive', async () => {
  // A child whose supervisors wait 20 s to reconnect: stop() ends one, clearAll() the others;
  // the child then has nothing left and exits at once.
  const child = spawn(process.execPath, [fixture('supervise-exit.mjs')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => { out += d })
  child.stderr.on('data', (d) => { err += d })
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(signal ?? c)))
  clearTimeout(killer)
  assert.equal(code, 0, `child exited with ${code}: ${err}`)
  const report = JSON.parse(out.trim().split('\n').pop())
  assert.deepEqual(report.states, ['stopped', 'stopped', 'stopped'])
  assert.ok(report.waiting, 'the supervisors were waiting when stopped')
  assert.ok(report.exitAfterMs < 5000, `exited ${report.exitAfterMs} ms after clearAll (the timers were 20 s)`)
})
